"""Forked processes that copy new files between local disks.

Under the GIL one Python process copies a few thousand small files a second:
each file costs a dozen system calls and as much Python again, and threads
only take turns. For a stage with many new files between local disks, the
executor forks :class:`CopyProcess` helpers, so the copies run on every core
while the coordinating process journals the results.

A helper gets batches of :class:`Task` over a pipe. It copies each file into
its temporary name and renames it over the destination without syncing. For each task it
returns the byte count and digest, or ``None`` when the copy failed. The
coordinator then runs that action itself, through the usual failure
handling, so errors are classified and worded in one place. The
coordinator keeps everything else: the lock, the journal, the filesystem
sync that makes a group of files durable (``syncfs`` covers files written by
any process), retries and events.

A helper holds no lock and writes no journal. It closes every descriptor it
inherited but its two pipe ends, and it ignores Ctrl-C, because the
coordinator decides how a run stops. It dies with the thread that forked
it, so a coordinator killed with SIGKILL leaves no helper renaming files
behind the next run.

Before each file, a helper checks the mtime of the queue's inbox directory,
which changes when another process posts a request (a cancel, an add) and
when the coordinator reads one. When it differs from the mtime at the
coordinator's last read of the inbox before the batch was handed out, the
helper returns the files it has not started as :class:`HandedBack`. The
coordinator then reads the inbox, so a cancel ends those files, and hands
the others out again. A cancel therefore reaches every file not yet
started, even while the coordinator waits for a batch or is stopped, at
the cost of one ``stat`` per file.

NOTE: a request that lands within the clock tick of the directory's last
change may leave its mtime as it was, on filesystems with coarse
timestamps. The helper then copies its batch as if no request had come.

The same tasks and outcomes serve other helpers (see :class:`Helper`), for
example workers on a cluster, through :func:`copy_tasks`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import signal
import stat
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol, TypeVar

import fsspec
import msgspec
from fsspec.implementations.local import LocalFileSystem

from journalq import compare, digest, durable, faults, transfer
from journalq.backends import is_local

__all__ = [
    "Copied",
    "CopyProcess",
    "HandedBack",
    "Helper",
    "Identical",
    "Outcome",
    "Stamp",
    "Task",
    "available",
    "copy_tasks",
    "inbox_mtime",
    "split_batches",
]

T = TypeVar("T")

#: Length prefix of a message on a helper's pipes.
_LENGTH: Final = struct.Struct("<I")
#: ``prctl`` option that sends the child a signal when its parent exits.
_PR_SET_PDEATHSIG: Final = 1
#: Flags of every file a helper opens for reading.
_READ: Final = os.O_RDONLY | os.O_CLOEXEC


#: A local file's ctime in nanoseconds and its inode number, which the
#: digest cache compares besides size and mtime.
Stamp = tuple[int, int]


class Task(msgspec.Struct, array_like=True, frozen=True):
    """One file for a helper: which action, where from, where to, what size.

    A file listed moments ago comes with its size and mtime, and the helper
    copies it only if they still hold. A file known only from the journal
    (in a resumed run) has ``size`` -1, and the helper takes the size and
    mtime it finds.

    An existing destination file needs comparing first. With ``compare``
    true, a helper between local disks hashes both files and reports
    :class:`Identical` when they match; every other helper, and every other
    existing destination, is left to the coordinator, which decides and
    replaces the file with the care that replacing needs.
    """

    action_id: str
    source: str
    destination: str
    size: int
    mtime_ns: int | None
    compare: bool = False


class Identical(msgspec.Struct, array_like=True, frozen=True, tag=2):
    """A task whose destination already contains the source's bytes.

    Both files were read and hashed; ``digest`` is the digest they share.
    Each side's mtime and :data:`Stamp` come from an ``fstat`` made before
    its content was read, as the digest cache requires.
    """

    size: int
    digest: str
    source_mtime_ns: int
    source_stamp: Stamp
    destination_mtime_ns: int
    destination_stamp: Stamp


class Copied(msgspec.Struct, array_like=True, frozen=True, tag=1):
    """A finished copy, with what the coordinator journals about both files."""

    bytes: int
    digest: str
    #: The source's mtime, read before its content.
    mtime_ns: int | None
    #: Whether the destination got that mtime.
    mtime_set: bool
    #: The source's :data:`Stamp` when it is a local file, read before its
    #: content.
    source_stamp: Stamp | None
    #: The destination's :data:`Stamp` after the rename, when the helper
    #: wrote a local file; ``None`` leaves the stat to the coordinator.
    destination_stamp: Stamp | None = None
    #: The ETag or generation the object store returned for the new
    #: object (see :attr:`journalq.transfer.Sink.etag`).
    etag: str | None = None


class HandedBack(msgspec.Struct, array_like=True, frozen=True, tag=3):
    """A task the helper did not start, because the queue's inbox changed."""


#: The result of one task: :data:`Copied`, :class:`Identical` for a
#: compared destination that matched, :class:`HandedBack` for a task not
#: started, or ``None`` when the coordinator must handle the file.
Outcome = Copied | Identical | HandedBack | None


class _Batch(msgspec.Struct, array_like=True, frozen=True):
    """The message that hands a copy process its tasks."""

    tasks: list[Task]
    #: The inbox directory's mtime when the coordinator handed the batch
    #: out; ``None`` when there was no inbox directory.
    inbox_mtime_ns: int | None


class Helper(Protocol):
    """Copies batches of tasks somewhere else; outcomes come back in order."""

    #: Set once the helper failed; the coordinator then copies alone.
    broken: bool
    #: The largest file the helper takes, in bytes; ``None`` for any size.
    max_bytes: int | None
    #: Whether the coordinator journals a ``started`` record per action
    #: handed out, and ends a copy that came back undone as a failed
    #: attempt. True for helpers whose copies may go on after the
    #: coordinator dies (Dask workers). False for copy processes, whose
    #: batch gets one ``handed out`` record and whose undone copies wait
    #: again.
    journals_start: bool

    def send(self, tasks: Sequence[Task], inbox_mtime_ns: int | None) -> None:
        """Hand ``tasks`` over; raises ``OSError`` when the helper is gone.

        ``inbox_mtime_ns`` is the mtime of the queue's inbox directory at the
        coordinator's last read of the inbox, before it reserved the tasks. A
        helper that checks it hands back the tasks it has not started once
        the inbox changes, and others ignore it.
        """

    def receive(self) -> list[Outcome]:
        """Return the outcomes of the oldest batch sent; ``OSError`` if lost."""

    def close(self) -> None:
        """Release the helper once no batch is out."""


_encode_batch = msgspec.msgpack.Encoder().encode
_decode_batch = msgspec.msgpack.Decoder(_Batch).decode
_encode_outcomes = msgspec.msgpack.Encoder().encode
_decode_outcomes = msgspec.msgpack.Decoder(list[Outcome]).decode


def available() -> bool:
    """Return whether helpers can be forked here.

    Only on Linux, where a forked child of a threaded process is safe for
    plain system calls and ``PR_SET_PDEATHSIG`` exists. Not while a test
    replaces the file operations or arms a crash point: their effects must
    happen in the process that observes them.
    """
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and type(durable.ops) is durable.FileOps
        and faults._hook is None
    )


def split_batches(
    items: Sequence[T],
    size_of: Callable[[T], int],
    max_bytes: int,
    max_items: int | None = None,
) -> list[list[T]]:
    """Split ``items`` in order into batches for helpers.

    A batch ends before the item that would take its sizes past
    ``max_bytes`` or its length past ``max_items``. An item larger than
    ``max_bytes`` is a batch of its own.
    """
    batches: list[list[T]] = []
    batch: list[T] = []
    total = 0
    for item in items:
        size = size_of(item)
        if batch and (total + size > max_bytes or len(batch) == max_items):
            batches.append(batch)
            batch, total = [], 0
        batch.append(item)
        total += size
    if batch:
        batches.append(batch)
    return batches


def inbox_mtime(inbox_dir: str) -> int | None:
    """Return the mtime of the inbox directory; ``None`` when it does not exist."""
    try:
        return os.stat(inbox_dir).st_mtime_ns
    except FileNotFoundError:
        return None


def copy_tasks(
    tasks: Sequence[Task],
    source_fs: fsspec.AbstractFileSystem,
    destination_fs: fsspec.AbstractFileSystem,
    *,
    durable: bool,
    unique: bool = False,
    proceed: Callable[[], bool] | None = None,
) -> list[Outcome]:
    """Copy each task's file and return the outcomes, in order.

    With ``durable`` false, local copies are not synced: the caller syncs
    the filesystem before it records them. With ``unique`` true, each
    copy's temporary file gets a random nonce in its name
    (:func:`journalq.transfer.new_nonce`), so copies of the same task that
    run at the same time elsewhere never write into one file. ``proceed``
    is asked before each task; once it returns False, that task and the
    rest are :class:`HandedBack` without being started.
    """
    nonce = transfer.new_nonce if unique else _no_nonce
    local = is_local(source_fs) and is_local(destination_fs)
    outcomes: list[Outcome] = []
    for task in tasks:
        if proceed is not None and not proceed():
            outcomes += [_HANDED_BACK] * (len(tasks) - len(outcomes))
            break
        if local:
            outcomes.append(_copy_local(task, durable, nonce()))
        else:
            outcomes.append(
                _copy_any(task, source_fs, destination_fs, durable, nonce())
            )
    return outcomes


_HANDED_BACK: Final = HandedBack()


def _no_nonce() -> None:
    return None


class CopyProcess:
    """One forked helper and the coordinator's ends of its two pipes.

    ``inbox_dir`` is the queue's inbox directory, whose mtime the helper
    checks before each file (see the module's description).
    """

    def __init__(self, max_bytes: int, inbox_dir: str) -> None:
        self.broken = False
        self.max_bytes: int | None = max_bytes
        # It dies with the coordinator (PR_SET_PDEATHSIG), so no copy of it
        # outlives the lock. Its temporary names, those of attempt 1 without
        # a nonce, are left over only by a copy that died. The next open
        # sweeps those of a crashed run's hand-outs, and the next copy of
        # the file to the same name removes such a file too.
        self.journals_start = False
        task_read, self._task_write = os.pipe()
        self._outcome_read, outcome_write = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:
            _child(task_read, outcome_write, inbox_dir)
        os.close(task_read)
        os.close(outcome_write)

    def send(self, tasks: Sequence[Task], inbox_mtime_ns: int | None) -> None:
        """Hand ``tasks`` to the helper; their outcomes come in order.

        Raises ``BrokenPipeError`` when the helper died.
        """
        try:
            _send(self._task_write, _encode_batch(_Batch(list(tasks), inbox_mtime_ns)))
        except OSError:
            self.broken = True
            raise

    def receive(self) -> list[Outcome]:
        """Wait for the outcomes of the oldest batch sent.

        Raises ``ChildProcessError`` when the helper died: the coordinator
        then copies the batch itself.
        """
        message = _receive(self._outcome_read)
        if message is None:
            self.broken = True
            raise ChildProcessError(f"copy process {self._pid} ended unexpectedly")
        return _decode_outcomes(message)

    def close(self) -> None:
        """End the helper: it exits when its task pipe closes."""
        os.close(self._task_write)
        os.close(self._outcome_read)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)


def _child(task_read: int, outcome_write: int, inbox_dir: str) -> None:
    """Serve batches until the task pipe closes; never return."""
    status = 0
    try:
        _prepare_child(task_read, outcome_write)
        local = LocalFileSystem()
        while (message := _receive(task_read)) is not None:
            batch = _decode_batch(message)
            unchanged = functools.partial(
                _inbox_unchanged, inbox_dir, batch.inbox_mtime_ns
            )
            outcomes = copy_tasks(
                batch.tasks, local, local, durable=False, proceed=unchanged
            )
            _send(outcome_write, _encode_outcomes(outcomes))
    except BaseException:
        status = 1
    finally:
        os._exit(status)


def _inbox_unchanged(inbox_dir: str, mtime_ns: int | None) -> bool:
    return inbox_mtime(inbox_dir) == mtime_ns


def _prepare_child(task_read: int, outcome_write: int) -> None:
    # Collections would walk, and so copy, every page of the parent's heap.
    gc.disable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    low, high = sorted((task_read, outcome_write))
    os.closerange(3, low)
    os.closerange(low + 1, high)
    os.closerange(high + 1, os.sysconf("SC_OPEN_MAX"))


def _copy_local(task: Task, durable: bool, nonce: str | None) -> Outcome:
    try:
        # A task listed with no destination file is copied without looking
        # again: one system call less per new file.
        if (task.size < 0 or task.compare) and os.path.lexists(task.destination):
            return _compare_local(task) if task.compare else None
        fd = os.open(task.source, _READ)
        try:
            return _copy_open(fd, task, durable, nonce)
        finally:
            os.close(fd)
    except Exception:
        return None


def _compare_local(task: Task) -> Identical | None:
    """Hash both files of ``task``; return :class:`Identical` when they match.

    ``None`` for anything else: different sizes or bytes, a file that is
    not a regular file, a source changed since it was listed, or one that
    changed during the read.
    """
    source_fd = os.open(task.source, _READ)
    try:
        source = os.fstat(source_fd)
        if not _unchanged(source, task):
            return None
        destination_fd = os.open(task.destination, _READ)
        try:
            destination = os.fstat(destination_fd)
            if (
                not stat.S_ISREG(destination.st_mode)
                or destination.st_size != source.st_size
            ):
                return None
            algorithm = digest.default_algorithm(source.st_size)
            source_digest, source_read = digest.hash_open_file(source_fd, algorithm)
            destination_digest, destination_read = digest.hash_open_file(
                destination_fd, algorithm
            )
        finally:
            os.close(destination_fd)
    finally:
        os.close(source_fd)
    read_whole = source_read == destination_read == source.st_size
    if source_digest != destination_digest or not read_whole:
        return None
    if not compare.mtimes_match(source.st_mtime_ns, destination.st_mtime_ns):
        # As rsync -a and rclone do: the skipped copy gets the source's
        # mtime, so a later size+mtime comparison skips it too.
        os.utime(task.destination, ns=(time.time_ns(), source.st_mtime_ns))
        destination = os.stat(task.destination)
    return Identical(
        source.st_size,
        source_digest,
        source.st_mtime_ns,
        (source.st_ctime_ns, source.st_ino),
        destination.st_mtime_ns,
        (destination.st_ctime_ns, destination.st_ino),
    )


def _unchanged(info: os.stat_result, task: Task) -> bool:
    """Return whether ``info`` is a regular file as ``task`` listed it."""
    if not stat.S_ISREG(info.st_mode):
        return False
    return task.size < 0 or (info.st_size, info.st_mtime_ns) == (
        task.size,
        task.mtime_ns,
    )


def _copy_open(fd: int, task: Task, durable: bool, nonce: str | None) -> Outcome:
    info = os.fstat(fd)
    if not _unchanged(info, task):
        # Changed since it was listed: the coordinator looks again.
        return None
    hasher = digest.new_hasher(digest.default_algorithm(info.st_size))
    copied = 0
    temporary = transfer.temp_path(task.destination, task.action_id, 1, nonce)
    with transfer.LocalSink(task.destination, temporary, fsync=durable) as sink:
        while data := os.read(fd, digest.CHUNK):
            hasher.update(data)
            sink.write(data)
            copied += len(data)
        if task.size >= 0 and copied != task.size:
            return None
        sink.commit(info.st_mtime_ns)
    # The rename gave the destination a new ctime. Reading it here, in the
    # helper, spares the coordinator a system call per file.
    written = os.stat(task.destination)
    return Copied(
        copied,
        hasher.digest_string(),
        info.st_mtime_ns,
        True,
        (info.st_ctime_ns, info.st_ino),
        (written.st_ctime_ns, written.st_ino),
    )


def _copy_any(
    task: Task,
    source_fs: fsspec.AbstractFileSystem,
    destination_fs: fsspec.AbstractFileSystem,
    durable: bool,
    nonce: str | None,
) -> Outcome:
    """Copy between any two filesystems, through their sinks."""
    try:
        size, mtime_ns, stamp = task.size, task.mtime_ns, None
        if (size < 0 or task.compare) and compare.stat(
            destination_fs, task.destination
        ) is not None:
            return None
        if size < 0 or is_local(source_fs):
            info = compare.stat(source_fs, task.source)
            if info is None:
                return None
            if size >= 0 and (info.size, info.mtime_ns) != (size, mtime_ns):
                # Changed since it was listed: the coordinator looks again.
                return None
            size, mtime_ns = info.size, info.mtime_ns
            if info.ctime_ns is not None and info.inode is not None:
                stamp = (info.ctime_ns, info.inode)
        sink = transfer.open_sink(
            destination_fs,
            task.destination,
            action_id=task.action_id,
            attempt=1,
            fsync=durable,
            nonce=nonce,
        )
        with sink:
            result = transfer.copy_file(
                source_fs,
                task.source,
                sink,
                algorithm=digest.default_algorithm(size),
            )
            if result.bytes != size:
                return None
            sink.commit(mtime_ns)
    except Exception:
        return None
    return Copied(
        result.bytes,
        result.digest,
        mtime_ns,
        transfer.keeps_mtime(sink),
        stamp,
        etag=sink.etag,
    )


def _send(fd: int, payload: bytes) -> None:
    durable.ops.write_all(fd, _LENGTH.pack(len(payload)) + payload)


def _receive(fd: int) -> bytes | None:
    header = _read_exactly(fd, _LENGTH.size)
    if header is None:
        return None
    (length,) = _LENGTH.unpack(header)
    return _read_exactly(fd, length)


def _read_exactly(fd: int, count: int) -> bytes | None:
    parts: list[bytes] = []
    while count:
        part = os.read(fd, min(count, 1 << 20))
        if not part:
            return None
        parts.append(part)
        count -= len(part)
    return b"".join(parts)
