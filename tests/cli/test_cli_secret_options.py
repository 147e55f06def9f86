"""The commands on a queue whose storage options contain secrets.

The queue journals the names of secret options (``key``, ``secret``) but
never their values. Every command that opens the queue with its lock
(``run``, ``retry``, ``cancel``, ``compact``) opens its filesystems, so it
needs them again. The read-only reports (``status``, ``actions``,
``show``, ``result``, ``queues``), ``fsck`` and ``drop`` do without them.
The destination is the session's moto S3 server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec
import pytest
from cli_helpers import SAMPLE, invoke
from click.testing import Result

from journalq.cli.exits import ExitCode


def _flags(options: dict[str, Any]) -> list[str]:
    flags = []
    for key, value in options.items():
        flags += ["--destination-option", f"{key}={value}"]
    return flags


def _copy_with_dangling_link(
    sample: Path, tmp_path: Path, s3_options: dict[str, Any], bucket: str
) -> tuple[str, Result]:
    """Copy ``sample`` to S3 with one dangling symlink, which fails."""
    os.symlink(tmp_path / "later.txt", sample / "dangling.txt")
    queue = str(tmp_path / "q")
    copied = invoke(
        "copy", f"{sample}/", f"s3://{bucket}/out", "--queue", queue,
        *_flags(s3_options),
    )  # fmt: skip
    return queue, copied


@pytest.fixture
def failed_s3_copy(
    sample: Path, tmp_path: Path, s3_options: dict[str, Any], bucket: str
) -> str:
    """Return the queue of a copy to S3 whose one dangling symlink failed."""
    queue, copied = _copy_with_dangling_link(sample, tmp_path, s3_options, bucket)
    assert copied.exit_code == ExitCode.FAILED, copied.output
    return queue


def test_failed_run_names_secret_options(
    sample: Path, tmp_path: Path, s3_options: dict[str, Any], bucket: str
) -> None:
    _, copied = _copy_with_dangling_link(sample, tmp_path, s3_options, bucket)

    assert copied.exit_code == ExitCode.FAILED, copied.output
    assert "retry them: journalq retry" in copied.stderr
    assert "--destination-option key=..." in copied.stderr
    assert "--destination-option secret=..." in copied.stderr


@pytest.mark.parametrize(
    "command", [["retry"], ["cancel", "--all"], ["compact"]], ids=lambda c: c[0]
)
def test_locking_command_needs_secrets(failed_s3_copy: str, command: list[str]) -> None:
    result = invoke(*command, "--queue", failed_s3_copy)

    assert result.exit_code == ExitCode.USAGE, result.output
    assert "--destination-option secret=..." in result.stderr


def test_retry_cancel_compact_with_secrets(
    failed_s3_copy: str, tmp_path: Path, s3_options: dict[str, Any], bucket: str
) -> None:
    flags = _flags(s3_options)
    (tmp_path / "later.txt").write_bytes(b"now it exists")

    canceled = invoke("cancel", "--all", "--queue", failed_s3_copy, *flags)
    retried = invoke("retry", "--queue", failed_s3_copy, *flags)
    compacted = invoke("compact", "--queue", failed_s3_copy, *flags)
    result = invoke("run", "--queue", failed_s3_copy, *flags)

    assert canceled.exit_code == ExitCode.OK, canceled.output
    assert retried.exit_code == ExitCode.OK, retried.output
    assert "1 failed action waits again" in retried.stdout
    assert "--destination-option secret=..." in retried.stdout
    assert compacted.exit_code == ExitCode.OK, compacted.output
    assert result.exit_code == ExitCode.OK, result.output
    s3 = fsspec.filesystem("s3", **s3_options)
    assert s3.cat_file(f"{bucket}/out/dangling.txt") == b"now it exists"
    assert s3.cat_file(f"{bucket}/out/a.txt") == SAMPLE["a.txt"]


def test_reports_need_no_secrets(
    failed_s3_copy: str, s3_options: dict[str, Any], bucket: str
) -> None:
    listed = invoke(
        "add", "list", f"s3://{bucket}/out", "--service", "destination",
        "--queue", failed_s3_copy, *_flags(s3_options),
    )  # fmt: skip
    assert listed.exit_code == ExitCode.OK, listed.output
    list_id = listed.stdout.strip()
    ran = invoke("run", "--queue", failed_s3_copy, *_flags(s3_options))
    assert ran.exit_code == ExitCode.OK, ran.output

    for command in [
        ["status"],
        ["actions"],
        ["show", list_id],
        ["result", list_id],
        ["queues"],
        ["fsck"],
        ["drop", "--force"],
    ]:
        result = invoke(*command, "--queue", failed_s3_copy)
        assert result.exit_code == ExitCode.OK, (command, result.output)
