"""Error messages, run summaries, storage options and the ``--json`` stream."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from cli_helpers import SAMPLE, invoke, json_lines

from journalq.cli.context import MAX_FAILURE_WARNINGS
from journalq.cli.exits import ExitCode
from journalq.cli.messages import describe
from journalq.cli.queues import parse_location
from journalq.store import read_state


def test_unknown_protocol_is_usage_error(tmp_path: Path) -> None:
    result = invoke("copy", "s4://bucket/x", str(tmp_path / "o"))

    assert result.exit_code == ExitCode.USAGE
    assert "unknown filesystem protocol 's4'" in result.stderr
    assert "Traceback" not in result.output


def test_traceback_only_at_vv(tmp_path: Path) -> None:
    plain = invoke("run", "--queue", str(tmp_path / "none" / "q"))
    traced = invoke("copy", "s4://bucket/x", str(tmp_path / "o"), "-vv")

    assert "Traceback" not in plain.stderr
    assert "Traceback (most recent call last)" in traced.stderr
    assert "unknown filesystem protocol" in traced.stderr


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "/a/b"),
            "/a/b: no such file or directory; check the path",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/etc/x"),
            "/etc/x: permission denied; check its permissions",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/mnt/full"),
            "/mnt/full: no space left on device; free some space, then run "
            "the same command again to resume",
        ),
        (OSError("plain message"), "plain message"),
        (ValueError("bad value"), "ValueError: bad value"),
    ],
)
def test_describe_errors(error: BaseException, expected: str) -> None:
    assert describe(error) == expected


def test_host_protocols_keep_host_in_filesystem() -> None:
    location = parse_location("sftp://backup@example.invalid:2222/srv/data/")

    assert location.filesystem == "sftp://backup@example.invalid:2222"
    assert location.path == "/srv/data/"


def test_bucket_protocols_keep_bucket_in_path() -> None:
    location = parse_location("s3://bucket/prefix/key")

    assert location.filesystem == "s3://"
    assert location.path == "bucket/prefix/key"


def test_many_failures_print_limited_warnings(tmp_path: Path) -> None:
    files = [f"f{index:03d}.txt" for index in range(MAX_FAILURE_WARNINGS + 15)]
    source = tmp_path / "src"
    source.mkdir()
    for name in files:
        os.symlink(tmp_path / "gone" / name, source / name)

    result = invoke("copy", f"{source}/", str(tmp_path / "out"))

    assert result.exit_code == ExitCode.FAILED
    warnings = [
        line for line in result.stderr.splitlines() if line.startswith("WARNING")
    ]
    assert len(warnings) == MAX_FAILURE_WARNINGS + 1
    assert "more failures are not shown" in warnings[-1]
    assert "journalq actions" not in warnings[-1]
    heading = f"{len(files)} actions failed, and so did the tree that holds them:"
    assert heading in result.stderr
    assert f"  {len(files)} x FileNotFoundError, such as " in result.stderr
    assert "list them: journalq actions --status failed --queue " in result.stderr


def test_verbose_prints_every_failure(tmp_path: Path) -> None:
    files = [f"f{index:03d}.txt" for index in range(MAX_FAILURE_WARNINGS + 5)]
    source = tmp_path / "src"
    source.mkdir()
    for name in files:
        os.symlink(tmp_path / "gone" / name, source / name)

    result = invoke("copy", f"{source}/", str(tmp_path / "out"), "-v")

    failures = [
        line for line in result.stderr.splitlines() if "failed copy_file" in line
    ]
    assert len(failures) == len(files)


def test_json_stream_starts_and_ends(sample: Path, tmp_path: Path) -> None:
    result = invoke("sync", str(sample), str(tmp_path / "m"), "--json")

    events = json_lines(result.stdout)
    first, last = events[0], events[-1]
    assert first["event"] == "run"
    copies = [
        event
        for event in events
        if event["event"] == "completed" and event["kind"] == "copy_file"
    ]
    assert first["files"] == len(copies) == len(SAMPLE)
    assert first["bytes"] == sum(len(content) for content in SAMPLE.values())
    assert first["done_earlier"] == 0
    assert first["dry_run"] is False
    assert last["event"] == "summary"
    assert last["resume"] is None
    assert last["rate"] >= 0
    kinds = {event["event"] for event in events[1:-1]}
    assert kinds <= {"started", "progress", "completed", "skipped", "failed", "retried"}
    assert "completed" in kinds


def test_json_dry_run_has_no_resume(sample: Path, tmp_path: Path) -> None:
    queue = str(tmp_path / "q")
    invoke("add", "copy", f"{sample}/", str(tmp_path / "o"), "--queue", queue)
    invoke(
        "add", "copy", str(tmp_path / "missing"), str(tmp_path / "p"), "--queue", queue
    )

    result = invoke("run", "--queue", queue, "--json", "--dry-run")

    assert json_lines(result.stdout)[-1]["resume"] is None


def test_destination_option_reaches_queue(sample: Path, tmp_path: Path) -> None:
    queue = str(tmp_path / "q")

    result = invoke(
        "copy",
        f"{sample}/",
        str(tmp_path / "out"),
        "--queue",
        queue,
        "--destination-option",
        "auto_mkdir=true",
    )

    assert result.exit_code == ExitCode.OK, result.output
    created = read_state(queue).created
    assert created is not None
    assert created.destination.options == {"auto_mkdir": "true"}
    assert created.source.options == {}


@pytest.mark.parametrize("option", ["foo=bar", "password=hunter2"])
def test_local_unknown_option_rejected(
    sample: Path, tmp_path: Path, option: str
) -> None:
    """The local filesystem takes **kwargs and ignores names it does not know."""
    queue = tmp_path / "q"

    result = invoke(
        "copy",
        f"{sample}/",
        str(tmp_path / "out"),
        "--queue",
        str(queue),
        "--source-option",
        option,
    )

    name, _, value = option.partition("=")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert (
        f"LocalFileSystem (file://) takes no storage option {name!r}" in result.stderr
    )
    assert "correct the --source-option value" in result.stderr
    assert value not in result.stderr
    assert not queue.exists()
    assert not (tmp_path / "out").exists()


def test_bad_storage_option_hides_value(tmp_path: Path) -> None:
    result = invoke("copy", "a", str(tmp_path / "b"), "--source-option", "s3cr3t-value")

    assert result.exit_code == ExitCode.USAGE
    assert "expected KEY=VALUE" in result.stderr
    assert "s3cr3t-value" not in result.stderr
