"""The commands on a queue whose storage options contain secrets.

The queue journals the names of secret options (``key``, ``secret``) but
never their values. Every command that opens the queue with its lock
(``run``, ``retry``, ``cancel``, ``compact``) opens its filesystems, so it
needs them again. The read-only reports (``status``, ``actions``,
``show``, ``result``, ``queues``), ``fsck`` and ``drop`` do without them.
The destination is the session's moto S3 server, and the session's sshd
for an option name that sshfs cannot check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import fsspec
import pytest
import servers
from cli_helpers import SAMPLE, invoke, run_journalq
from click.testing import Result

from journalq.cli.exits import ExitCode


def _flags(options: dict[str, Any]) -> list[str]:
    flags = []
    for key, value in options.items():
        flags += ["--destination-option", f"{key}={value}"]
    return flags


def _json_flags(options: dict[str, Any]) -> list[str]:
    """Return ``--destination-option`` flags with JSON values (lists, null)."""
    return _flags({key: json.dumps(value) for key, value in options.items()})


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


def test_failed_dry_run_names_no_options(
    sample: Path, tmp_path: Path, s3_options: dict[str, Any], bucket: str
) -> None:
    """A dry run prints no command, so no note about what to add to one."""
    os.symlink(tmp_path / "later.txt", sample / "dangling.txt")

    result = invoke(
        "copy", f"{sample}/", f"s3://{bucket}/out", "-n", *_flags(s3_options)
    )

    assert result.exit_code == ExitCode.FAILED, result.output
    assert "1 action would fail" in result.stderr
    assert "--destination-option" not in result.stderr


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


@pytest.mark.parametrize("command", ["run", "resume"])
def test_run_names_misspelled_secret(
    sample: Path,
    tmp_path: Path,
    s3_options: dict[str, Any],
    bucket: str,
    command: str,
) -> None:
    """``secert`` for ``secret``: the error names the misspelling, not only
    the missing secret, and the run changes nothing."""
    queue = str(tmp_path / "q")
    added = invoke(
        "add", "copy", f"{sample}/", f"s3://{bucket}/out", "--queue", queue,
        *_flags(s3_options),
    )  # fmt: skip
    assert added.exit_code == ExitCode.OK, added.output
    misspelled = {
        "key": s3_options["key"],
        "secert": s3_options["secret"],
        "endpoint_url": s3_options["endpoint_url"],
    }

    result = run_journalq(command, "--queue", queue, *_flags(misspelled))
    status = invoke("status", "--queue", queue, "--json")

    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "takes no storage option 'secert' (did you mean 'secret'?)" in (
        result.stderr
    )
    assert "needs the secret destination option 'secret' again" in result.stderr
    assert "--destination-option secret=..." in result.stderr
    assert s3_options["secret"] not in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(status.stdout)["completed"] == 0


def test_run_names_unchecked_misspelling(
    sample: Path,
    tmp_path: Path,
    sftp_server: tuple[servers.Server, Path],
    sftp_options: dict[str, Any],
) -> None:
    """sshfs passes options on to asyncssh, so their names cannot be checked
    before it connects; a name close to the missing secret is named."""
    server, key = sftp_server
    queue = str(tmp_path / "q")
    url = f"sftp://root@{servers.HOST}:{server.port}{tmp_path}/out"
    added = invoke(
        "add", "copy", f"{sample}/", url, "--queue", queue,
        *_json_flags(sftp_options),
    )  # fmt: skip
    assert added.exit_code == ExitCode.OK, added.output
    misspelled = {"client_key": [str(key)], "known_hosts": None}

    result = run_journalq("run", "--queue", queue, *_json_flags(misspelled))

    assert result.returncode == ExitCode.USAGE, result.stderr
    assert (
        "the option 'client_key' given now is not one the queue was created "
        "with (did you mean 'client_keys'?)"
    ) in result.stderr
    assert "--destination-option client_keys=..." in result.stderr
    assert not (tmp_path / "out").exists()


def _journalq_with_env(
    *arguments: str, env: dict[str, str]
) -> subprocess.CompletedProcess:
    """Run journalq in a process whose environment has ``env`` added.

    fsspec reads its ``FSSPEC_*`` variables when it is imported, so they
    must be set before the process starts.
    """
    return subprocess.run(
        [sys.executable, "-m", "journalq", *arguments],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _fsspec_variables(options: dict[str, Any], *names: str) -> dict[str, str]:
    return {f"FSSPEC_S3_{name.upper()}": str(options[name]) for name in names}


def test_fsspec_variables_give_secrets_again(
    failed_s3_copy: str, tmp_path: Path, s3_options: dict[str, Any], bucket: str
) -> None:
    """The queue was created with key and secret as options; a run with
    ``FSSPEC_S3_KEY`` and ``FSSPEC_S3_SECRET`` in their place needs no flags."""
    env = _fsspec_variables(s3_options, "key", "secret", "endpoint_url")
    (tmp_path / "later.txt").write_bytes(b"now it exists")

    retried = _journalq_with_env("retry", "--queue", failed_s3_copy, "-v", env=env)
    ran = _journalq_with_env("run", "--queue", failed_s3_copy, env=env)

    assert retried.returncode == ExitCode.OK, retried.stderr
    assert "secret destination option(s) key, secret from fsspec's" in retried.stderr
    assert "--destination-option" not in retried.stdout
    assert ran.returncode == ExitCode.OK, ran.stderr
    s3 = fsspec.filesystem("s3", **s3_options)
    assert s3.cat_file(f"{bucket}/out/dangling.txt") == b"now it exists"


def test_fsspec_variable_gives_only_its_option(
    failed_s3_copy: str, s3_options: dict[str, Any]
) -> None:
    """``FSSPEC_S3_KEY`` gives ``key``. ``FSSPEC_S3_PASSWORD``, which s3fs
    takes as the secret, is not the option ``secret`` the queue was created
    with, so that one is still missing."""
    env = _fsspec_variables(s3_options, "key", "endpoint_url")
    env["FSSPEC_S3_PASSWORD"] = str(s3_options["secret"])

    result = _journalq_with_env("run", "--queue", failed_s3_copy, env=env)

    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "secrets in the destination option(s) secret," in result.stderr
    assert "--destination-option secret=..." in result.stderr
    assert "--destination-option key=..." not in result.stderr
