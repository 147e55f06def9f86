"""``journalq drop``: what it deletes, what it rejects, and a kill during it.

The drop of a queue that another process has locked is in
test_cli_processes.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_helpers import (
    SAMPLE,
    invoke,
    json_lines,
    read_tree,
    run_journalq_killed_at,
    write_large_file,
    write_tree,
)

from journalq.cli.exits import ExitCode
from journalq.drop import drop_queue
from journalq.errors import QueueError
from journalq.replay import QueueState
from journalq.store import read_state

#: MiB of a file of three 16 MiB parts, the last one short.
LARGE_MIB = 40
KILLED = -9


def _only_queue(queue_home: Path) -> str:
    (name,) = os.listdir(queue_home / "queues")
    return name


@pytest.fixture
def synced(sample: Path, tmp_path: Path, queue_home: Path) -> str:
    """A finished `journalq sync` of the sample tree; returns its queue's name."""
    result = invoke("sync", str(sample), str(tmp_path / "mirror"))
    assert result.exit_code == ExitCode.OK, result.output
    return _only_queue(queue_home)


def test_drop_deletes_finished_queue(
    synced: str, sample: Path, tmp_path: Path, queue_home: Path
) -> None:
    assert len(os.listdir(queue_home / "runs")) == 1

    result = invoke("drop", synced)

    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout == f"dropped queue {queue_home / 'queues' / synced}\n"
    assert result.stderr == ""
    assert os.listdir(queue_home / "queues") == []
    assert os.listdir(queue_home / "runs") == []
    assert invoke("queues", "--json").stdout == ""
    assert read_tree(sample) == SAMPLE
    assert read_tree(tmp_path / "mirror") == SAMPLE


def test_drop_quiet_prints_nothing(synced: str, queue_home: Path) -> None:
    result = invoke("-q", "drop", synced)

    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout == ""
    assert not (queue_home / "queues" / synced).exists()


def test_drop_takes_queue_option(synced: str, queue_home: Path) -> None:
    result = invoke("drop", "--queue", synced)

    assert result.exit_code == ExitCode.OK, result.output
    assert os.listdir(queue_home / "queues") == []


def test_drop_waiting_actions_need_force(sample: Path, tmp_path: Path) -> None:
    queue = tmp_path / "q"
    out = tmp_path / "out.txt"
    invoke("add", "copy", str(sample / "a.txt"), str(out), "--queue", str(queue))

    rejected = invoke("drop", str(queue))
    kept_after_rejection = (queue / "FORMAT").exists()
    forced = invoke("drop", str(queue), "--force")

    assert rejected.exit_code == ExitCode.FAILED, rejected.output
    assert "1 action waits" in rejected.stderr
    assert f"journalq drop --force {queue}" in rejected.stderr
    assert kept_after_rejection
    assert forced.exit_code == ExitCode.OK, forced.output
    assert "not run: 1 waiting and 0 in-progress actions\n" in forced.stdout
    assert "temporary file" not in forced.stdout
    assert not queue.exists()
    assert not out.exists()


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"keep.txt": b"mine"}, "no FORMAT file"),
        ({"FORMAT": b"version 3\n"}, "may not be a journalq queue"),
    ],
    ids=["without-format", "foreign-format"],
)
def test_drop_rejects_other_directory(
    files: dict[str, bytes], reason: str, tmp_path: Path
) -> None:
    other = write_tree(tmp_path / "other", files)

    result = invoke("drop", str(other), "--force")

    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"queue {other}:" in result.stderr
    assert reason in result.stderr
    assert read_tree(other) == files


def test_drop_rejects_queue_with_other_files(sample: Path, tmp_path: Path) -> None:
    queue = tmp_path / "q"
    invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", str(queue))
    (queue / "notes.txt").write_bytes(b"mine")

    result = invoke("drop", str(queue), "--force")

    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"queue {queue}:" in result.stderr
    assert "also contains notes.txt" in result.stderr
    assert (queue / "notes.txt").read_bytes() == b"mine"
    assert (queue / "FORMAT").exists()


def test_drop_unknown_name_exits_two(queue_home: Path) -> None:
    result = invoke("drop", "nightly")

    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"queue {queue_home / 'queues' / 'nightly'}: not found" in result.stderr


def test_drop_needs_one_name(synced: str) -> None:
    neither = invoke("drop")
    both = invoke("drop", synced, "--queue", "other")

    assert neither.exit_code == ExitCode.USAGE
    assert "name the queue to drop" in neither.stderr
    assert both.exit_code == ExitCode.USAGE
    assert "differ" in both.stderr


def test_drop_killed_midway_leaves_no_queue(
    synced: str, sample: Path, tmp_path: Path, queue_home: Path
) -> None:
    """A drop killed after hiding the queue leaves no queue under its name."""
    killed = run_journalq_killed_at("drop.hidden", "drop", synced)
    listed = json_lines(invoke("queues", "--json").stdout)
    (hidden,) = os.listdir(queue_home / "queues")
    again = invoke("sync", str(sample), str(tmp_path / "mirror"), "--json")

    assert killed.returncode == KILLED, killed.stderr
    assert listed == []
    assert hidden.startswith(f".{synced}.dropped-")
    assert not (queue_home / "queues" / hidden / "FORMAT").exists()
    assert again.exit_code == ExitCode.OK, again.output
    assert json_lines(again.stdout)[-1]["skipped"] == len(SAMPLE)
    assert (queue_home / "queues" / synced / "FORMAT").exists()


@pytest.mark.parametrize("point", ["drop.renamed", "drop.hidden"])
def test_drop_again_finishes_killed_drop(
    synced: str, queue_home: Path, point: str
) -> None:
    """Killed after the rename, with FORMAT still there or gone."""
    killed = run_journalq_killed_at(point, "drop", synced)
    again = invoke("drop", synced)

    assert killed.returncode == KILLED, killed.stderr
    assert again.exit_code == ExitCode.OK, again.output
    assert "finished an interrupted drop" in again.stdout
    assert os.listdir(queue_home / "queues") == []


def _killed_large_copy(tmp_path: Path) -> tuple[Path, str]:
    """Kill a `journalq copy` of a large file after two of its three parts.

    Returns the destination directory and the queue directory.
    """
    source = tmp_path / "src" / "big.bin"
    write_large_file(source, LARGE_MIB)
    destination = tmp_path / "dst"
    queue = str(tmp_path / "q")
    killed = run_journalq_killed_at(
        "parts.before_record:3",
        *("copy", str(source), f"{destination}/"),
        *("--queue", queue, "--part-threshold", "1M"),
    )
    assert killed.returncode == KILLED, killed.stderr
    return destination, queue


def test_drop_force_names_unfinished_upload(tmp_path: Path) -> None:
    destination, queue = _killed_large_copy(tmp_path)
    (upload,) = os.listdir(destination)

    rejected = invoke("drop", queue)
    forced = invoke("drop", queue, "--force")

    assert rejected.exit_code == ExitCode.FAILED, rejected.output
    assert "1 action is in progress" in rejected.stderr
    assert forced.exit_code == ExitCode.OK, forced.output
    assert f"left at the destination: {destination / upload}" in forced.stdout
    assert os.listdir(destination) == [upload]
    assert not Path(queue).exists()


def test_drop_only_if_checks_state(synced: str, queue_home: Path) -> None:
    """The library's condition gets the state under the lock and can keep the queue."""
    directory = queue_home / "queues" / synced
    length = read_state(directory).length
    seen: list[int] = []

    def no_actions(state: QueueState) -> bool:
        seen.append(len(state.actions))
        return not state.actions

    with pytest.raises(
        QueueError, match="only_if condition of the drop returned False"
    ):
        drop_queue(directory, only_if=no_actions)
    kept = directory.is_dir()
    dropped = drop_queue(directory, only_if=lambda state: bool(state.actions))

    assert length > 0
    assert seen == [length]
    assert kept
    assert dropped.directory == directory
    assert not directory.exists()
