"""The file operations that make data durable, in one place.

Every write that journalq relies on after a crash (journal segments,
snapshots, the format file, temporary copies) goes through :data:`ops`. The
rules it encodes:

* ``fsync`` of a file does not make its directory entry durable, so every
  create, rename and unlink that matters is followed by :func:`fsync_dir`.
* A buffered writer may split a frame across system calls, so journal bytes
  are written with :meth:`FileOps.write_all` on a raw descriptor.
* On macOS plain ``fsync`` does not flush the drive's cache, so
  ``F_FULLFSYNC`` is used there.
* An ``fsync`` error is never retried: the kernel may already have dropped
  the pages, and a second call could succeed without them.

Tests replace :data:`ops` with a layer that records what was synced and
simulates a power cut (see ``tests/survival/powerloss.py``). A sync that
does not go through :data:`ops` is invisible to that layer, so a file made
durable that way counts as lost there.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import sys
from collections.abc import Callable

from journalq import faults

__all__ = [
    "FileOps",
    "atomic_write",
    "fsync_dir",
    "fsync_file",
    "ops",
    "remove_temporaries",
]

_FULLFSYNC = getattr(__import__("fcntl"), "F_FULLFSYNC", None)


class FileOps:
    """Raw POSIX file operations; the seam that tests replace."""

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags | os.O_CLOEXEC, mode)

    def write_all(self, fd: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def fsync(self, fd: int) -> None:
        if sys.platform == "darwin" and _FULLFSYNC is not None:
            import fcntl

            fcntl.fcntl(fd, _FULLFSYNC)
        else:
            os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        if hasattr(os, "fdatasync") and sys.platform != "darwin":
            os.fdatasync(fd)
        else:
            self.fsync(fd)

    def truncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def mkdir(self, path: str, mode: int = 0o700) -> None:
        os.mkdir(path, mode)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def syncfs(self, path: str) -> None:
        """Flush every file and directory of the filesystem holding ``path``.

        Linux's ``syncfs(2)`` reports write-back errors since Linux 5.8.
        Elsewhere ``sync(2)`` flushes every filesystem and reports none.
        """
        syncfs = _libc_syncfs()
        if syncfs is None:
            os.sync()
            return
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if syncfs(fd) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"syncfs of {path} failed", path)
        finally:
            os.close(fd)


@functools.cache
def _libc_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    return getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)


#: The ending of :func:`atomic_write`'s temporaries: ``<name>.<pid>.tmp``.
_TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY_NAME = re.compile(r".+\.\d+\.tmp")

#: The operations in use. Replaced only by tests.
ops: FileOps = FileOps()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the entries of directory ``path`` (creates, renames) durable."""
    ops.fsync_dir(os.fspath(path))


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Make the content of the file at ``path`` durable."""
    fd = ops.open(os.fspath(path), os.O_RDONLY | os.O_CLOEXEC)
    try:
        ops.fsync(fd)
    finally:
        ops.close(fd)


def atomic_write(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600
) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old or new file.

    The bytes go to a temporary file in the same directory (``os.replace``
    is atomic only within one filesystem), which is synced, renamed over
    ``path``, and followed by a sync of the directory.
    """
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    temporary = f"{target}.{os.getpid()}{_TEMPORARY_SUFFIX}"
    fd = ops.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        ops.write_all(fd, data)
        ops.fsync(fd)
    finally:
        ops.close(fd)
    faults.point("durable.before_replace")
    ops.replace(temporary, target)
    faults.point("durable.after_replace")
    ops.fsync_dir(directory)


def remove_temporaries(directory: str | os.PathLike[str]) -> list[str]:
    """Delete what :func:`atomic_write` left in ``directory`` when killed.

    Only the process that owns the directory's files may call it, because
    a temporary of a write in progress looks the same. Returns the names.
    """
    root = os.fspath(directory)
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    leftovers = [name for name in names if _TEMPORARY_NAME.fullmatch(name)]
    for name in leftovers:
        ops.unlink(os.path.join(root, name))
    if leftovers:
        ops.fsync_dir(root)
    return leftovers
