"""Permission errors, as journalq meets them when it runs as a plain user.

Each command runs as a subprocess without CAP_DAC_OVERRIDE (see
``permission_helpers``), so a directory of mode 000 cannot be listed and
one of mode 555 cannot be written to, even on a machine that runs the
tests as root.
"""

from __future__ import annotations

import json
from pathlib import Path

from permission_helpers import journalq_unprivileged, mode
from tree_helpers import read_tree, write_tree

from journalq.cli.exits import ExitCode


def _error_lines(stderr: str) -> list[str]:
    """Return the errors a summary lists: its lines indented by two spaces.

    The advice after an error is cut off: a dry run's queue is gone when
    it ends, so its advice names no command to drop the action.
    """
    lines = [line for line in stderr.splitlines() if line.startswith("  ")]
    return [line.split("; restore")[0] for line in lines]


def test_dry_run_predicts_unlisted_folder(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "src", {"open/a.txt": b"a", "locked/s.txt": b"s"})
    destination = tmp_path / "dst"

    with mode(source / "locked", 0):
        dry = journalq_unprivileged("sync", str(source), str(destination), "-n")
        real = journalq_unprivileged("sync", str(source), str(destination))

    assert real.returncode == ExitCode.FAILED, real.stderr
    assert dry.returncode == real.returncode, dry.stderr
    assert "failed 1," in dry.stderr
    assert "1 action would fail, and so would the tree that holds it:" in dry.stderr
    assert _error_lines(dry.stderr) == _error_lines(real.stderr)
    assert f"cannot list the source directory {source / 'locked'}" in dry.stderr


def test_dry_run_lists_failures_like_real(tmp_path: Path) -> None:
    """A dry run names the same errors as the real run that follows it."""
    source = write_tree(
        tmp_path / "src", {"a.txt": b"a", "locked/s.txt": b"s", "shut/t.txt": b"t"}
    )
    (source / "gone.txt").symlink_to(tmp_path / "nowhere")
    destination = tmp_path / "dst"

    with mode(source / "locked", 0), mode(source / "shut", 0):
        dry = journalq_unprivileged("copy", f"{source}/", str(destination), "-n")
        real = journalq_unprivileged("copy", f"{source}/", str(destination))

    assert real.returncode == ExitCode.FAILED, real.stderr
    assert dry.returncode == real.returncode, dry.stderr
    assert "failed 3," in dry.stderr
    assert "failed 3," in real.stderr
    assert _error_lines(dry.stderr) == _error_lines(real.stderr)
    assert "journalq-dry-run" not in dry.stderr
    assert "list them" not in dry.stderr


def _failed_actions(queue: str) -> list[dict]:
    listed = journalq_unprivileged(
        "actions", "--status", "failed", "--queue", queue, "--json"
    )
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


def test_unlisted_folder_fails_on_source(tmp_path: Path) -> None:
    """The failed item is a list of the source directory, not a mkdir."""
    source = write_tree(tmp_path / "src", {"open/a.txt": b"a", "locked/s.txt": b"s"})
    destination = tmp_path / "dst"

    with mode(source / "locked", 0):
        copied = journalq_unprivileged(
            "copy", f"{source}/", f"{destination}/", "--queue", "q"
        )
        failed = _failed_actions("q")
    item = next(action for action in failed if action["parent"] is not None)

    assert copied.returncode == ExitCode.FAILED, copied.stderr
    assert len(failed) == 2
    assert item["kind"] == "list"
    assert item["service"] == "source"
    assert item["source"] == str(source / "locked")
    assert item["destination"] is None
    assert "Permission denied" in item["last_error"]
    assert f"cannot list the source directory {source / 'locked'}" in copied.stderr
    assert "mkdir" not in item["last_error"]
    assert read_tree(destination) == {"open/a.txt": b"a"}
    assert not (destination / "locked").exists()

    retried = journalq_unprivileged("retry", "--queue", "q")
    ran = journalq_unprivileged("run", "--queue", "q")

    assert retried.returncode == 0, retried.stderr
    assert "listed again as new actions, replacing 2 failed actions" in (retried.stdout)
    assert ran.returncode == 0, ran.stderr
    assert _failed_actions("q") == []
    assert read_tree(destination) == read_tree(source)


def test_cancel_failed_file_keeps_attempts(tmp_path: Path) -> None:
    """The tree completes with the attempt count its run gave it."""
    source = write_tree(tmp_path / "src", {"a.txt": b"a", "s.txt": b"s"})

    with mode(source / "s.txt", 0):
        copied = journalq_unprivileged(
            "copy", f"{source}/", str(tmp_path / "dst"), "--queue", "q"
        )
        failed = _failed_actions("q")
    tree = next(action for action in failed if action["parent"] is None)
    item = next(action for action in failed if action["parent"] is not None)
    canceled = journalq_unprivileged("cancel", item["id"], "--queue", "q")
    shown = journalq_unprivileged("show", tree["id"], "--queue", "q", "--json")
    after = json.loads(shown.stdout)

    assert copied.returncode == ExitCode.FAILED, copied.stderr
    assert tree["attempts"] == 1
    assert canceled.returncode == 0, canceled.stderr
    assert shown.returncode == 0, shown.stderr
    assert after["status"] == "completed"
    assert after["attempts"] == 1


def test_read_only_folder_names_destination(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "src", {"d2/b1": b"b1", "d1/a": b"a"})
    destination = tmp_path / "dst"
    (destination / "d2").mkdir(parents=True)

    with mode(destination / "d2", 0o555):
        result = journalq_unprivileged("copy", f"{source}/", str(destination))

    assert result.returncode == ExitCode.FAILED, result.stderr
    expected = destination / "d2" / "b1"
    denied = f"Permission denied: '{expected}' (temporary file .b1.jq-"
    assert denied in result.stderr
    assert f"'{expected.parent}/.b1.jq-" not in result.stderr
    assert (destination / "d1" / "a").read_bytes() == b"a"


def test_read_only_folder_names_large_file(tmp_path: Path) -> None:
    """A file copied in journaled parts writes a parts file, not named either."""
    source = write_tree(tmp_path / "src", {"big.bin": bytes(300_000)})
    destination = tmp_path / "dst"
    destination.mkdir()

    with mode(destination, 0o555):
        result = journalq_unprivileged(
            "copy", str(source / "big.bin"), f"{destination}/",
            "--part-threshold", "100K",
        )  # fmt: skip

    assert result.returncode == ExitCode.FAILED, result.stderr
    assert f"Permission denied: '{destination / 'big.bin'}'" in result.stderr
    assert "(temporary file .big.bin.jq-" in result.stderr
