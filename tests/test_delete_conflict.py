"""A sync's delete checks that the file is still the one its listing found.

The run that plans a sync with delete is killed with SIGKILL at the crash
point just before the delete (``JOURNALQ_CRASH_AT``), the destination file
is then changed or left alone, and the resumed run in this process must
delete only a file that is unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tree_helpers import read_tree, write_tree

from journalq import StorageQueue
from journalq.executor import CONFLICT
from journalq.records import Kind
from journalq.replay import Status

KILLED = -9

#: Adds a sync with delete and runs it; the crash point kills the run.
PLAN_AND_RUN = textwrap.dedent(
    """
    import sys
    from journalq import StorageQueue
    source, destination, queue = sys.argv[1:]
    with StorageQueue(source, destination, name=queue) as q:
        q.sync(source, destination, delete=True)
        q.run()
    """
)


def crash_before_delete(source: Path, destination: Path, queue_dir: Path) -> None:
    """Plan a sync with delete and kill its run just before the delete."""
    environment = dict(os.environ, JOURNALQ_CRASH_AT="executor.before_delete")
    arguments = [str(source), str(destination), str(queue_dir)]
    completed = subprocess.run(
        [sys.executable, "-c", PLAN_AND_RUN, *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == KILLED, completed.stderr


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A source, a destination with one extra file, and a queue crashed before
    deleting that file."""
    source = write_tree(tmp_path / "src", {"keep.txt": b"keep"})
    destination = write_tree(
        tmp_path / "dst", {"keep.txt": b"keep", "stale.txt": b"stale"}
    )
    queue_dir = tmp_path / "queue"
    crash_before_delete(source, destination, queue_dir)
    assert (destination / "stale.txt").read_bytes() == b"stale"
    return source, destination, queue_dir


def resume(queue_dir: Path):
    with StorageQueue(name=str(queue_dir)) as queue:
        summary = queue.run()
        deletes = [
            action
            for action in queue.state.actions.values()
            if action.kind is Kind.DELETE
        ]
    assert len(deletes) == 1
    return summary, deletes[0]


def test_resumed_delete_removes_unchanged_file(trees):
    _, destination, queue_dir = trees

    summary, delete = resume(queue_dir)

    assert summary.failed == 0
    assert delete.status is Status.COMPLETED
    assert read_tree(destination) == {"keep.txt": b"keep"}


def replace_content(path: Path) -> None:
    path.write_bytes(b"new content of another size")


def replace_same_size(path: Path) -> None:
    stat = path.stat()
    path.write_bytes(b"STALE")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def replace_by_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inner.txt").write_bytes(b"inner")


@pytest.mark.parametrize(
    "change", [replace_content, replace_same_size, replace_by_directory]
)
def test_resumed_delete_keeps_changed_file(trees, change):
    _, destination, queue_dir = trees
    change(destination / "stale.txt")
    before = read_tree(destination)

    summary, delete = resume(queue_dir)

    assert summary.failed == 1
    assert delete.status is Status.FAILED
    assert delete.error is not None
    assert delete.error.reason == CONFLICT
    assert delete.error.error == "DeleteConflictError"
    assert delete.error.retryable is False
    assert f"conflict: {destination / 'stale.txt'} changed since" in (
        delete.error.message
    )
    assert "5 bytes" in delete.error.message
    assert read_tree(destination) == before


def test_resumed_delete_of_gone_file_completes(trees):
    _, destination, queue_dir = trees
    (destination / "stale.txt").unlink()

    summary, delete = resume(queue_dir)

    assert summary.failed == 0
    assert delete.status is Status.COMPLETED


def test_conflict_spares_directory_of_file(tmp_path):
    source = write_tree(tmp_path / "src", {"keep.txt": b"keep"})
    destination = write_tree(
        tmp_path / "dst", {"keep.txt": b"keep", "old/stale.txt": b"stale"}
    )
    queue_dir = tmp_path / "queue"
    crash_before_delete(source, destination, queue_dir)
    (destination / "old" / "stale.txt").write_bytes(b"changed after the listing")

    with StorageQueue(name=str(queue_dir)) as queue:
        summary = queue.run()

    # The directory's own delete fails too, because the file stays in it.
    assert summary.failed == 2
    assert (destination / "old" / "stale.txt").exists()
