"""A full disk and a read-only disk under the queue: stop cleanly, lose nothing.

The queue lives on a small tmpfs that this root process mounts. Filling it
makes the journal's writes fail with ENOSPC part-way, and remounting it
read-only makes every write fail with EROFS. The run must stop with a
message that names the problem, no traceback, and reopening the queue
once the disk is usable again must keep everything acknowledged before.
Where mounting is not permitted these tests skip, and the seam test at the
end covers the full disk alone.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from survival_helpers import (
    Acknowledged,
    check_acknowledged,
    check_finished_queue,
    child_command,
    make_source,
    recovered_state,
    run_child,
)

from journalq import StorageQueue, durable
from journalq.errors import JournalError
from journalq.store import JOURNAL_DIR

#: Size of the tmpfs: room for the queue of a few rounds, and small enough
#: to fill at once.
DISK_BYTES = 4 * 1024 * 1024
#: Free bytes left beside the filler file: the queue's files of the first
#: open fit, the journal of a round's copies does not.
FREE_BYTES = 48 * 1024
TREE_FILES = 300


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("survival-disk")
    return make_source(root / "source", TREE_FILES)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of :data:`DISK_BYTES` mounted under ``tmp_path``."""
    mount = tmp_path / "disk"
    mount.mkdir()
    options = f"size={DISK_BYTES},mode=0700"
    mounted = _mount("-t", "tmpfs", "-o", options, "tmpfs", str(mount))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _mount(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mount", *arguments], capture_output=True, text=True, check=False
    )


def _fill(disk: Path, leave: int) -> Path:
    """Write a filler file so that about ``leave`` bytes stay free."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    filler = disk / "filler"
    filler.write_bytes(bytes(max(0, free - leave)))
    return filler


def _journalq(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "journalq", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _finish(source: Path, tmp_path: Path, queue: Path, acknowledged: Acknowledged):
    destination = tmp_path / "destination"
    final = run_child(child_command(source, destination, queue, 5))
    acknowledged.read(final.stdout)
    assert final.returncode == 0, final.stderr
    check_finished_queue(destination, queue, acknowledged)


def test_full_disk_loses_nothing(
    source: Path, small_disk: Path, tmp_path: Path
) -> None:
    queue = small_disk / "queue"
    destination = tmp_path / "destination"
    acknowledged = Acknowledged()
    first = run_child(child_command(source, destination, queue, 0))
    acknowledged.read(first.stdout)
    filler = _fill(small_disk, FREE_BYTES)

    full = run_child(child_command(source, destination, queue, 1))
    acknowledged.read(full.stdout)
    state = recovered_state(queue)

    assert full.returncode == 1
    assert "No space left on device" in full.stderr
    assert state is not None
    check_acknowledged(state, acknowledged)
    filler.unlink()
    _finish(source, tmp_path, queue, acknowledged)


def test_full_disk_message(source: Path, small_disk: Path, tmp_path: Path) -> None:
    queue = small_disk / "queue"
    filler = _fill(small_disk, FREE_BYTES)

    full = _journalq("sync", str(source), str(tmp_path / "out"), "--queue", str(queue))
    filler.unlink()
    resumed = _journalq("run", "--queue", str(queue))

    assert full.returncode != 0
    assert "No space left on device" in full.stderr
    assert "open the queue again to recover" in full.stderr
    assert "Traceback" not in full.stderr
    assert resumed.returncode == 0, resumed.stderr


def test_read_only_disk(source: Path, small_disk: Path, tmp_path: Path) -> None:
    queue = small_disk / "queue"
    acknowledged = Acknowledged()
    command = child_command(source, tmp_path / "destination", queue, 0)
    crashed = run_child(command, env={"JOURNALQ_CRASH_AT": "journal.after_sync:12"})
    acknowledged.read(crashed.stdout)
    assert crashed.returncode == -9, crashed.stderr

    remounted = _mount("-o", "remount,ro", str(small_disk))
    assert remounted.returncode == 0, remounted.stderr
    rejected = _journalq("run", "--queue", str(queue))
    _mount("-o", "remount,rw", str(small_disk))

    assert rejected.returncode != 0
    assert "read-only file system" in rejected.stderr.lower()
    assert "Traceback" not in rejected.stderr
    _finish(source, tmp_path, queue, acknowledged)


class _FullDisk(durable.FileOps):
    """Real operations until ``budget`` bytes went to files under
    ``directory``, then ENOSPC for those files.

    A stand-in for a full disk where mounting a small one is not permitted.
    The write that crosses the budget writes its first part and then fails,
    so it also cuts a journal frame in the middle, as a short write does.
    """

    def __init__(self, directory: Path, budget: int) -> None:
        self.directory = str(directory)
        self.budget = budget
        self._counted: set[int] = set()

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        fd = super().open(path, flags, mode)
        if os.path.abspath(path).startswith(self.directory + os.sep):
            self._counted.add(fd)
        return fd

    def close(self, fd: int) -> None:
        self._counted.discard(fd)
        super().close(fd)

    def write_all(self, fd: int, data: bytes | memoryview) -> None:
        if fd not in self._counted or len(data) <= self.budget:
            self.budget -= len(data) if fd in self._counted else 0
            super().write_all(fd, data)
            return
        super().write_all(fd, memoryview(data)[: self.budget])
        self.budget = 0
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_through_seam(source: Path, tmp_path: Path) -> None:
    destination, queue = tmp_path / "destination", tmp_path / "queue"
    with StorageQueue(str(source), str(destination), name=str(queue)) as first:
        first.copy_file("extra/0-0.bin", "extra/0-0.bin")
        first.run()
    acknowledged = Acknowledged()

    with pytest.MonkeyPatch.context() as patch:
        full_disk = _FullDisk(queue / JOURNAL_DIR, budget=40_000)
        patch.setattr(durable, "ops", full_disk)
        opened = StorageQueue(name=str(queue))
        try:
            acknowledged.adds.add(opened.copy_tree("tree", "tree"))
            with pytest.raises((JournalError, OSError)):
                opened.run()
            assert full_disk.budget == 0
        finally:
            with pytest.raises((JournalError, OSError)):
                opened.close()

    _finish(source, tmp_path, queue, acknowledged)
