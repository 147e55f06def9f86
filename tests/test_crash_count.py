"""Which crashes count against an action on its way to ``CrashLoop``.

A crash counts against every action in progress at the time. An action
that was in progress at a crash runs again on its own footing: its copy is
synced alone and journaled at once, rather than waiting for the sync of a
group of copies. So a later crash counts against it only when it lands
during the copy itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from journalq import StorageQueue, durable
from journalq.records import Kind, Started
from journalq.replay import Status


class _RecordingOps(durable.FileOps):
    """The real file operations, noting which directories were synced."""

    def __init__(self) -> None:
        self.synced_directories: list[str] = []
        self.synced_files: list[str] = []

    def fsync_dir(self, path: str) -> None:
        self.synced_directories.append(str(Path(path)))
        super().fsync_dir(path)

    def fsync(self, fd: int) -> None:
        self.synced_files.append(os.readlink(f"/proc/self/fd/{fd}"))
        super().fsync(fd)


def _left_in_progress(
    tmp_path: Path, add: Callable[[StorageQueue], str]
) -> tuple[Path, Path, str]:
    """Add an action and journal its start without an end, as a kill leaves it."""
    source = tmp_path / "source"
    destination = tmp_path / "destination"
    source.mkdir()
    destination.mkdir()
    (source / "a.txt").write_bytes(b"payload " * 100)
    queue_dir = tmp_path / "queue"
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        action_id = add(queue)
        store = queue._store
        assert store is not None
        assert store.start(action_id, Started(action_id, 1, time.time_ns()))
        store.flush()
    return destination, queue_dir, action_id


def _run_again(
    queue_dir: Path, action_id: str, monkeypatch: pytest.MonkeyPatch
) -> _RecordingOps:
    ops = _RecordingOps()
    monkeypatch.setattr(durable, "ops", ops)
    with StorageQueue(name=str(queue_dir)) as queue:
        assert queue.state.actions[action_id].crashes == 1
        summary = queue.run()
        assert queue.state.actions[action_id].status is Status.COMPLETED
    assert summary.failed == 0
    return ops


def test_copy_after_a_crash_is_synced_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    destination, queue_dir, action_id = _left_in_progress(
        tmp_path, lambda queue: queue.copy_file("a.txt", "a.txt")
    )
    ops = _run_again(queue_dir, action_id, monkeypatch)

    # Synced alone: its directory entry, not the whole filesystem.
    assert str(destination) in ops.synced_directories
    assert (destination / "a.txt").read_bytes() == b"payload " * 100


@pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="names descriptors via /proc"
)
def test_skip_after_a_crash_syncs_the_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The killed attempt may have written the file the next one finds identical."""
    destination, queue_dir, action_id = _left_in_progress(
        tmp_path, lambda queue: queue.copy_file("a.txt", "a.txt")
    )
    (destination / "a.txt").write_bytes(b"payload " * 100)
    ops = _run_again(queue_dir, action_id, monkeypatch)

    assert str(destination / "a.txt") in ops.synced_files


def test_mkdir_after_a_crash_syncs_its_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    destination, queue_dir, action_id = _left_in_progress(
        tmp_path, lambda queue: queue.mkdir("destination", "made/deeper")
    )
    ops = _run_again(queue_dir, action_id, monkeypatch)

    assert (destination / "made" / "deeper").is_dir()
    # The new directory's entry, and that of the parent the mkdir created.
    assert str(destination / "made") in ops.synced_directories
    assert str(destination) in ops.synced_directories


def test_tree_mkdir_after_a_crash_syncs_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def add_tree_and_pick_its_mkdir(queue: StorageQueue) -> str:
        (tmp_path / "source" / "sub").mkdir()
        (tmp_path / "source" / "sub" / "b.txt").write_bytes(b"b")
        tree = queue.copy_tree("", "copied")
        (mkdir,) = (
            action.action_id
            for action in queue.state.actions.values()
            if action.added.parent == tree and action.kind is Kind.MKDIR
        )
        return mkdir

    destination, queue_dir, action_id = _left_in_progress(
        tmp_path, add_tree_and_pick_its_mkdir
    )
    ops = _run_again(queue_dir, action_id, monkeypatch)

    assert (destination / "copied" / "sub").is_dir()
    assert str(destination / "copied") in ops.synced_directories
