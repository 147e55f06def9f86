"""A file-operations layer that simulates a power cut, for tests.

It follows LevelDB's fault-injection environment (track what each file
and directory had when it was last synced, then drop the rest) and SQLite's
crash VFS (an unsynced write may be lost, kept, or turned into garbage).
Installed as :data:`journalq.durable.ops`, it performs every operation for
real and records what each sync made durable under ``root``:

* ``fsync`` or ``fdatasync`` of a descriptor: the file's content then.
* ``fsync_dir``: the directory's entries then (creates, renames, unlinks),
  entries made outside the seam included.
* ``syncfs``: every file and directory under ``root``.

Syncs are counted in the order they are issued, of every kind. The power
fails at the ``cut_at``-th one, before it takes effect: that call raises
:class:`PowerCut`, and so does every later call except ``close``, so nothing
more becomes durable. Once the workload has stopped, :meth:`PowerLoss.restore`
rewrites ``root`` from what was durable: an entry that was not synced in its
directory is gone, and each file's unsynced part is handled as ``tail``
selects (see :data:`TAIL_MODES`).

A write that bypasses :data:`journalq.durable.ops` still happens on disk,
but a sync that bypasses it is invisible here, so data made durable only
that way is lost at the cut. That is how the tests find such writes.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from journalq import durable

__all__ = ["TAIL_MODES", "PowerCut", "PowerLoss"]

#: What becomes of the bytes of a file written after its last sync.
#: ``drop`` loses them and ``keep`` keeps them, as if the kernel wrote them
#: back in time. ``garbage`` replaces them by random bytes of the same
#: length, and ``mixed`` picks one of the three per file.
TAIL_MODES: Final = ("drop", "keep", "garbage", "mixed")


class PowerCut(Exception):
    """The simulated power failed; nothing written from now on is durable."""


@dataclass(eq=False)
class _File:
    """One file (an inode) and the content its last sync made durable."""

    inode: int
    durable: bytes = b""
    #: Content when the file lost its last name, for the ``keep`` mode.
    removed: bytes | None = None


#: A directory entry: a file, a subdirectory (None) or a symlink's target.
_Entry = _File | None | str


class PowerLoss(durable.FileOps):
    """Real file operations that remember what was synced, and cut power."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        cut_at: int | None = None,
        tail: str = "drop",
        seed: int = 0,
    ) -> None:
        if tail not in TAIL_MODES:
            raise ValueError(f"tail must be one of {TAIL_MODES}, got {tail!r}")
        self.root = os.path.realpath(root)
        self.cut_at = cut_at
        self.tail = tail
        self.syncs = 0
        self.cut = False
        self._rng = random.Random(seed)
        self._guard = threading.RLock()
        self._live: dict[str, _File] = {}
        self._descriptors: dict[int, _File] = {}
        self._directories: dict[str, dict[str, _Entry]] = {}
        self._sync_tree()

    # Operations ----------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        self._check_power()
        fd = super().open(path, flags, mode)
        absolute = os.path.abspath(path)
        if self._tracked(absolute):
            with self._guard:
                self._descriptors[fd] = self._file_at(absolute, os.fstat(fd).st_ino)
        return fd

    def write_all(self, fd: int, data: bytes | memoryview) -> None:
        self._check_power()
        super().write_all(fd, data)

    def truncate(self, fd: int, length: int) -> None:
        self._check_power()
        super().truncate(fd, length)

    def close(self, fd: int) -> None:
        # Closing makes nothing durable, so it works after the cut too and
        # the workload leaks no descriptors.
        with self._guard:
            self._descriptors.pop(fd, None)
        super().close(fd)

    def replace(self, source: str, target: str) -> None:
        self._check_power()
        source, target = os.path.abspath(source), os.path.abspath(target)
        with self._guard:
            self._note_removal(target)
            super().replace(source, target)
            moved = self._live.pop(source, None)
            if moved is not None and self._tracked(target):
                self._live[target] = moved

    def unlink(self, path: str) -> None:
        self._check_power()
        absolute = os.path.abspath(path)
        with self._guard:
            self._note_removal(absolute)
            super().unlink(path)
            self._live.pop(absolute, None)

    def mkdir(self, path: str, mode: int = 0o700) -> None:
        self._check_power()
        super().mkdir(path, mode)

    def fsync(self, fd: int) -> None:
        self._sync_descriptor(fd, super().fsync)

    def fdatasync(self, fd: int) -> None:
        self._sync_descriptor(fd, super().fdatasync)

    def fsync_dir(self, path: str) -> None:
        with self._guard:
            self._count_sync()
            super().fsync_dir(path)
            absolute = os.path.abspath(path)
            if self._tracked(absolute):
                self._directories[absolute] = self._listing(absolute)

    def syncfs(self, path: str) -> None:
        with self._guard:
            self._count_sync()
            super().syncfs(path)
            self._sync_tree()

    # The power cut -------------------------------------------------------------

    def restore(self) -> None:
        """Rewrite ``root`` as the power cut left it; call it once all stopped."""
        with self._guard:
            latest = {id(file): path for path, file in self._live.items()}
            plan = self._plan(self.root, latest)
            for name in os.listdir(self.root):
                _remove(os.path.join(self.root, name))
            _build(self.root, plan)

    def _plan(self, directory: str, latest: dict[int, str]) -> dict[str, object]:
        """Return what ``directory`` contains after the cut: name -> bytes,
        nested dict (a directory) or str (a symlink's target)."""
        planned: dict[str, object] = {}
        for name, entry in self._directories.get(directory, {}).items():
            path = os.path.join(directory, name)
            if entry is None:
                planned[name] = self._plan(path, latest)
            elif isinstance(entry, str):
                planned[name] = entry
            else:
                planned[name] = self._content_after_cut(entry, latest.get(id(entry)))
        return planned

    def _content_after_cut(self, file: _File, path: str | None) -> bytes:
        newest = file.removed if path is None else _read(path)
        if newest is None:
            newest = file.durable
        mode = self.tail
        if mode == "mixed":
            mode = self._rng.choice(("drop", "keep", "garbage"))
        if mode == "keep":
            return newest
        unsynced = len(newest) - len(file.durable)
        if mode == "garbage" and unsynced > 0:
            return file.durable + self._rng.randbytes(unsynced)
        return file.durable

    # Bookkeeping ---------------------------------------------------------------

    def _check_power(self) -> None:
        if self.cut:
            raise PowerCut(f"the power failed at sync {self.cut_at}")

    def _count_sync(self) -> None:
        self._check_power()
        self.syncs += 1
        if self.cut_at is not None and self.syncs >= self.cut_at:
            self.cut = True
            raise PowerCut(f"the power failed at sync {self.cut_at}")

    def _sync_descriptor(self, fd: int, sync: Callable[[int], None]) -> None:
        with self._guard:
            self._count_sync()
            sync(fd)
            file = self._descriptors.get(fd)
            if file is not None:
                file.durable = _read_descriptor(fd)

    def _tracked(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + os.sep)

    def _file_at(self, path: str, inode: int) -> _File:
        """Return the file now at ``path``, new if the inode changed."""
        file = self._live.get(path)
        if file is None or file.inode != inode:
            file = _File(inode)
            self._live[path] = file
        return file

    def _note_removal(self, path: str) -> None:
        file = self._live.get(path)
        if file is not None:
            file.removed = _read(path)

    def _listing(self, directory: str) -> dict[str, _Entry]:
        listing: dict[str, _Entry] = {}
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_symlink():
                    listing[entry.name] = os.readlink(entry.path)
                elif entry.is_dir():
                    listing[entry.name] = None
                else:
                    listing[entry.name] = self._file_at(entry.path, entry.inode())
        return listing

    def _sync_tree(self) -> None:
        """Make everything under ``root`` durable, as a filesystem sync does."""
        for directory, _, _ in os.walk(self.root):
            listing = self._listing(directory)
            self._directories[directory] = listing
            for name, entry in listing.items():
                if isinstance(entry, _File):
                    entry.durable = _read(os.path.join(directory, name)) or b""


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None


def _read_descriptor(fd: int) -> bytes:
    # Journal segments are open write-only, so the content is read through
    # a second descriptor of the same inode. Linux only, like the tests.
    with open(f"/proc/self/fd/{fd}", "rb") as file:
        return file.read()


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _build(directory: str, plan: dict[str, object]) -> None:
    for name, content in plan.items():
        path = os.path.join(directory, name)
        if isinstance(content, dict):
            os.mkdir(path, 0o700)
            _build(path, content)
        elif isinstance(content, str):
            os.symlink(content, path)
        else:
            assert isinstance(content, bytes)
            Path(path).write_bytes(content)
            os.chmod(path, 0o600)
