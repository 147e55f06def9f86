"""Copying one file so that a destination is never left half-written.

A copy streams the source through a :class:`Sink` opened on the
destination, hashing the bytes on the way (one pass), and then commits::

    with open_sink(fs, "dst/a.txt", action_id=action_id, attempt=2) as sink:
        result = copy_file(source_fs, "src/a.txt", sink)
        sink.commit(source_info.mtime_ns)

Until :meth:`Sink.commit` returns, a destination file that existed before
keeps its old content, and leaving the ``with`` block without a commit
(an exception, :class:`CopyInterrupted`) removes what was written.

Local destinations write a temporary file next to the destination, named
by :func:`temp_path`, then fsync it, set its mtime, rename it over the
destination and fsync the directory. A process killed before the rename
leaves that temporary file behind, and :func:`sweep_temporaries` removes it
when the queue is opened again and before the action is attempted again.
A copy handed to a helper (a copy process, a Dask worker) adds a random
nonce to the name (:func:`new_nonce`), so two executions of one hand-out
never write the same temporary file. Other filesystems get a sink that
buffers the content and makes the final object appear in one call.
Backends register their own sinks with :func:`register_sink`.
"""

from __future__ import annotations

import abc
import contextlib
import datetime
import errno
import io
import logging
import os
import re
import secrets
import stat as stat_module
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Final, Self, cast

import fsspec
import msgspec
from fsspec.callbacks import Callback
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem

from journalq import digest, durable, faults, retry
from journalq.errors import JournalqError

__all__ = [
    "BufferedSink",
    "CopyInterrupted",
    "CopyResult",
    "LocalSink",
    "MemorySink",
    "Sink",
    "copy_file",
    "destination_error",
    "keeps_mtime",
    "make_directories",
    "new_nonce",
    "open_sink",
    "register_sink",
    "sweep_directory",
    "sweep_temporaries",
    "sync_filesystem",
    "temp_path",
    "temporaries_by_directory",
]

logger = logging.getLogger(__name__)

#: Maximum file name length, in bytes, on ext4, XFS, btrfs and APFS. NTFS
#: counts 255 UTF-16 units, so the limit is conservative there.
NAME_MAX: Final = 255

#: Permission bits of a new file or directory before the umask applies,
#: the same as ``cp`` and ``mkdir`` use.
FILE_MODE: Final = 0o666
DIRECTORY_MODE: Final = 0o777

#: Size from which a new file that waits for its group's filesystem sync
#: is sent to disk as soon as it is written (see :meth:`LocalSink.commit`).
#: 200 files of 1 MiB then copied in 446 ms against 482 ms, and in 472 ms
#: against 600 ms, in two sets of 15 interleaved runs (medians). Doing it
#: for each of 10,000 files of 4 KiB made that copy 30% slower. Measured on
#: the 2-core development VM, ext4.
WRITEBACK_BYTES: Final = 512 * 1024

#: ``posix_fadvise``, which Linux has and macOS lacks. Advising that a
#: file's pages are not needed starts the writeback of its dirty pages, as
#: the shorter group syncs measured above show (an observation, not a
#: documented promise).
_fadvise = getattr(os, "posix_fadvise", None)


class CopyInterrupted(JournalqError):
    """A copy stopped between chunks because ``should_stop()`` returned true.

    This is a stop request, not a failure: :func:`journalq.retry.classify`
    calls it transient, and the action is attempted again on the next run.
    """

    def __init__(self, path: str, bytes_copied: int) -> None:
        self.path = path
        self.bytes_copied = bytes_copied
        self.message = (
            f"copy of {path} stopped after {bytes_copied} bytes because a stop "
            "was requested; the destination was left unchanged"
        )
        super().__init__(self.message)


retry.register_transient(lambda exc: isinstance(exc, CopyInterrupted))


class CopyResult(msgspec.Struct, frozen=True):
    """Bytes written to the sink and their digest string."""

    bytes: int
    digest: str


# Temporary names --------------------------------------------------------------


def temp_path(
    destination_path: str, action_id: str, attempt: int, nonce: str | None = None
) -> str:
    """Return the temporary path an attempt writes before renaming.

    The name is ``.<name>.jq-<first 8 of action_id>-<attempt>.tmp`` in the
    destination's directory, or ``...-<attempt>-<nonce>.tmp`` with a
    ``nonce``. When that would exceed :data:`NAME_MAX` bytes, ``<name>``
    is shortened from its end.
    """
    directory, _, name = destination_path.rpartition("/")
    tag = f"{attempt}-{nonce}" if nonce else str(attempt)
    suffix = f".jq-{action_id[:8]}-{tag}.tmp"
    while len(os.fsencode(f".{name}{suffix}")) > NAME_MAX:
        name = name[:-1]
    temporary = f".{name}{suffix}"
    return f"{directory}/{temporary}" if directory else temporary


def destination_error(exc: OSError, path: str, temporary: str) -> OSError:
    """Return ``exc`` reworded to name ``path``, if it names ``temporary``.

    A copy writes a hidden temporary file beside the destination, so the
    error of a read-only destination directory would name that file, which
    the user never asked for. The temporary name follows in parentheses,
    because a name only it makes too long (ENAMETOOLONG) is its own fault.
    The exception type and errno stay, so :func:`journalq.retry.classify`
    decides as before.
    """
    if exc.filename != temporary or exc.strerror is None:
        return exc
    name = temporary.rpartition("/")[2]
    return type(exc)(exc.errno, f"{exc.strerror}: {path!r} (temporary file {name})")


def new_nonce() -> str:
    """Return a random tag for the temporary name of one copy's execution.

    48 random bits: two executions of the same hand-out (a Dask task run
    again, a worker that outlived its coordinator) pick the same tag with
    a probability of about 1 in 2.8e14.
    """
    return secrets.token_hex(6)


#: A temporary name of :func:`temp_path`: the destination's name (perhaps
#: shortened) as ``stem`` and the first 8 hex digits of its action id.
_TEMPORARY = re.compile(
    r"\.(?P<stem>.+)\.jq-(?P<id>[0-9a-f]{1,8})-\d+(?:-[0-9a-f]+)?\.tmp", re.DOTALL
)


def sweep_temporaries(
    fs: fsspec.AbstractFileSystem, destination_path: str, action_id: str
) -> int:
    """Remove temporary files of ``action_id`` beside a path.

    Every attempt's and every nonce's name counts; the parts file of a copy
    in parts (``-parts.tmp``) does not, because a later attempt resumes it.
    Returns how many were removed. A missing directory removes nothing.
    """
    [(directory, names)] = temporaries_by_directory(
        fs, [(destination_path, action_id)]
    ).items()
    return len(sweep_directory(fs, directory, names))


def temporaries_by_directory(
    fs: fsspec.AbstractFileSystem, targets: Iterable[tuple[str, str]]
) -> dict[str, list[tuple[str, str]]]:
    """Group (destination path, action id) pairs by their directory.

    Each directory maps to the (name, action id) pairs whose temporary
    files :func:`sweep_directory` looks for there.
    """
    groups: dict[str, list[tuple[str, str]]] = {}
    local = isinstance(fs, LocalFileSystem)
    for destination_path, action_id in targets:
        path = digest.local_path(destination_path) if local else destination_path
        directory, _, name = path.rpartition("/")
        groups.setdefault(directory or ".", []).append((name, action_id))
    return groups


def sweep_directory(
    fs: fsspec.AbstractFileSystem, directory: str, names: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Remove the temporary files in ``directory`` of each (name, action id).

    One listing serves every pair, so sweeping after a crash costs a
    listing per directory rather than one per action. Returns the
    (removed path, action id) pairs.
    """
    by_prefix: dict[str, list[tuple[str, str]]] = {}
    for name, action_id in names:
        by_prefix.setdefault(action_id[:8], []).append((name, action_id))
    removed: list[tuple[str, str]] = []
    for entry in _list_names(fs, directory):
        match = _TEMPORARY.fullmatch(entry.rpartition("/")[2])
        if match is None:
            continue
        for name, action_id in by_prefix.get(match["id"], ()):
            if name.startswith(match["stem"]):
                logger.debug(
                    "removing temporary file %s of action %s", entry, action_id
                )
                # Another process may have removed it since the listing.
                with contextlib.suppress(FileNotFoundError):
                    if isinstance(fs, LocalFileSystem):
                        durable.ops.unlink(entry)
                    else:
                        fs.rm_file(entry)
                    removed.append((entry, action_id))
                break
    return removed


def _list_names(fs: fsspec.AbstractFileSystem, directory: str) -> list[str]:
    try:
        if isinstance(fs, LocalFileSystem):
            with os.scandir(directory) as entries:
                return [entry.path for entry in entries]
        return fs.ls(directory, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []


# Sinks ------------------------------------------------------------------------


class Sink(abc.ABC):
    """Destination of one copy, invisible at ``path`` until :meth:`commit`.

    A sink is a context manager. Leaving the block without a commit aborts.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.committed = False
        #: The ETag (S3) or generation (GCS) of the committed object, when
        #: the store returned it with the commit; ``None`` otherwise.
        self.etag: str | None = None

    @abc.abstractmethod
    def write(self, data: bytes | memoryview) -> None:
        """Append ``data``; the caller may reuse its buffer once this returns."""

    @abc.abstractmethod
    def commit(self, mtime_ns: int | None = None) -> None:
        """Make the written bytes the file at ``path``, with ``mtime_ns`` if set.

        A failed commit leaves the previous file at ``path`` in place.
        """

    @abc.abstractmethod
    def abort(self) -> None:
        """Discard what was written; safe to call more than once."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.committed:
            self.abort()


class LocalSink(Sink):
    """A temporary file beside the destination, renamed over it on commit.

    With ``fsync`` false, the data and the rename are not synced, so the
    caller must make them durable before recording the copy as done, for
    example with one :func:`sync_filesystem` call for a batch of files.
    """

    def __init__(self, path: str, temporary: str, *, fsync: bool = True) -> None:
        super().__init__(path)
        self.temporary = temporary
        self.fsync = fsync
        self._written = 0
        self._directory = os.path.dirname(path) or "."
        try:
            self._fd: int | None = self._open_temporary()
        except OSError as exc:
            raise destination_error(exc, path, temporary) from exc

    def _open_temporary(self) -> int:
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
        try:
            return durable.ops.open(self.temporary, flags, FILE_MODE)
        except FileNotFoundError:
            # The directory is missing. Creating it only now, instead of
            # checking for it first, saves a stat per file in a tree whose
            # directories were made by its mkdir actions.
            make_directories(self._directory, fsync=self.fsync)
            return durable.ops.open(self.temporary, flags, FILE_MODE)
        except FileExistsError:
            # Left by a process killed during this same attempt, before its
            # ``started`` record reached the journal. Only the process that
            # holds the queue's lock writes these names, so it is stale.
            logger.debug("removing stale temporary file %s", self.temporary)
            durable.ops.unlink(self.temporary)
            return durable.ops.open(self.temporary, flags, FILE_MODE)

    def write(self, data: bytes | memoryview) -> None:
        durable.ops.write_all(self._require_open(), data)
        self._written += len(data)

    def commit(self, mtime_ns: int | None = None) -> None:
        fd = self._require_open()
        try:
            # The mtime is set before the fsync, so the fsync covers it.
            if mtime_ns is not None:
                os.utime(fd, ns=(time.time_ns(), mtime_ns))
            if self.fsync:
                durable.ops.fsync(fd)
            elif self._written >= WRITEBACK_BYTES and _fadvise is not None:
                # Start writing the file to disk now, without waiting: the
                # group's filesystem sync then finds less left to write.
                _fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            self._close()
            faults.point("transfer.before_rename")
            durable.ops.replace(self.temporary, self.path)
        except OSError as exc:
            self.abort()
            raise destination_error(exc, self.path, self.temporary) from exc
        except BaseException:
            self.abort()
            raise
        self.committed = True
        faults.point("transfer.after_rename")

        # The rename is durable only once the directory entry is synced.
        if self.fsync:
            durable.ops.fsync_dir(self._directory)
        logger.debug("committed %s", self.path)

    def abort(self) -> None:
        self._close()
        if self.committed:
            return
        with contextlib.suppress(FileNotFoundError):
            durable.ops.unlink(self.temporary)

    def _require_open(self) -> int:
        if self._fd is None:
            raise ValueError(
                f"the sink for {self.path} is already committed or aborted"
            )
        return self._fd

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            durable.ops.close(fd)


def make_directories(directory: str, *, fsync: bool) -> None:
    """Create ``directory`` and its missing parents, syncing each new entry."""
    if os.path.isdir(directory):
        return
    parent = os.path.dirname(directory)
    if parent and parent != directory:
        make_directories(parent, fsync=fsync)
    try:
        durable.ops.mkdir(directory, DIRECTORY_MODE)
    except FileExistsError:
        # Another worker created it first, or it is a file and the next
        # open fails with NotADirectoryError naming it.
        return
    if fsync:
        durable.ops.fsync_dir(parent or ".")


class BufferedSink(Sink):
    """Collects the content in memory and writes it with one ``pipe_file``.

    Object stores make an object visible only when its upload completes, so
    no reader sees a partial file and a failure before the call leaves the
    old object in place.
    NOTE: the whole file is held in memory until commit. A filesystem that
    shows a file while it is written (SFTP) needs its own sink. Object stores
    want a streaming one, a multipart upload completed on commit. Both are
    registered with :func:`register_sink`.
    The mtime is not set, because fsspec has no call to set it, so
    ``size+mtime`` finds such a destination different on the next run.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        super().__init__(path)
        self.fs = fs
        self._buffer: io.BytesIO | None = io.BytesIO()

    def write(self, data: bytes | memoryview) -> None:
        self._require_open().write(data)

    def commit(self, mtime_ns: int | None = None) -> None:
        buffer = self._require_open()
        parent = self.fs._parent(self.path)
        if parent:
            self.fs.makedirs(parent, exist_ok=True)

        faults.point("transfer.before_rename")
        self._publish(buffer, mtime_ns)
        self._buffer = None
        self.committed = True
        faults.point("transfer.after_rename")
        logger.debug("committed %s", self.path)

    def abort(self) -> None:
        self._buffer = None

    def _publish(self, buffer: io.BytesIO, mtime_ns: int | None) -> None:
        self.fs.pipe_file(self.path, buffer.getvalue())

    def _require_open(self) -> io.BytesIO:
        if self._buffer is None:
            raise ValueError(
                f"the sink for {self.path} is already committed or aborted"
            )
        return self._buffer


class MemorySink(BufferedSink):
    """A sink for fsspec's memory filesystem that also sets the mtime.

    The content goes into a ``MemoryFile`` outside the store, and commit
    puts it into the store in one assignment, without copying it.
    """

    def __init__(self, fs: MemoryFileSystem, path: str) -> None:
        super().__init__(fs, fs._strip_protocol(path))
        self._buffer = MemoryFile(fs, self.path)

    def _publish(self, buffer: io.BytesIO, mtime_ns: int | None) -> None:
        file = cast(MemoryFile, buffer)
        file.commit()
        if mtime_ns is not None:
            file.modified = _datetime_from_ns(mtime_ns)


def _datetime_from_ns(value_ns: int) -> datetime.datetime:
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return epoch + datetime.timedelta(microseconds=value_ns // 1000)


SinkFactory = Callable[..., Sink]

_sink_factories: dict[type, SinkFactory] = {}


def register_sink(fs_type: type, factory: SinkFactory) -> None:
    """Open sinks on ``fs_type`` and its subclasses with ``factory``.

    ``factory(fs, path, action_id=..., attempt=..., fsync=..., nonce=...)``
    returns a :class:`Sink`. A factory whose sink writes a temporary file
    names it with :func:`temp_path`, passing ``nonce`` on.
    """
    _sink_factories[fs_type] = factory


def open_sink(
    fs: fsspec.AbstractFileSystem,
    path: str,
    *,
    action_id: str,
    attempt: int,
    fsync: bool = True,
    nonce: str | None = None,
) -> Sink:
    """Open a sink that writes the file at ``path`` on ``fs``.

    ``fsync`` applies to filesystems where journalq syncs data itself (local
    disks); see :class:`LocalSink` for what false requires of the caller.
    ``nonce`` (from :func:`new_nonce`) goes into the temporary file's name,
    for copies that run outside the process holding the queue's lock.
    """
    for fs_type in type(fs).__mro__:
        factory = _sink_factories.get(fs_type)
        if factory is not None:
            return factory(
                fs,
                path,
                action_id=action_id,
                attempt=attempt,
                fsync=fsync,
                nonce=nonce,
            )
    return BufferedSink(fs, path)


def _open_local_sink(
    fs: fsspec.AbstractFileSystem,
    path: str,
    *,
    action_id: str,
    attempt: int,
    fsync: bool,
    nonce: str | None = None,
) -> Sink:
    path = digest.local_path(path)
    return LocalSink(path, temp_path(path, action_id, attempt, nonce), fsync=fsync)


def _open_memory_sink(
    fs: fsspec.AbstractFileSystem,
    path: str,
    *,
    action_id: str,
    attempt: int,
    fsync: bool,
    nonce: str | None = None,
) -> Sink:
    return MemorySink(cast(MemoryFileSystem, fs), path)


register_sink(LocalFileSystem, _open_local_sink)
register_sink(MemoryFileSystem, _open_memory_sink)


def keeps_mtime(sink: Sink) -> bool:
    """Return whether ``sink``'s commit gives the file the mtime it is passed.

    Only then does a digest cached for the destination match its next stat.
    """
    return isinstance(sink, LocalSink | MemorySink)


# Copying ----------------------------------------------------------------------


class _Stream:
    """The state one copy threads through its chunks."""

    def __init__(
        self,
        path: str,
        sink: Sink,
        hasher: digest.Hasher,
        callback: Callback | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.path = path
        self.sink = sink
        self.hasher = hasher
        self.callback = callback
        self.should_stop = should_stop
        self.copied = 0

    def set_size(self, size: int | None) -> None:
        if self.callback is not None and size is not None:
            self.callback.set_size(size)

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise CopyInterrupted(self.path, self.copied)

    def push(self, chunk: bytes | memoryview) -> None:
        self.hasher.update(chunk)
        self.sink.write(chunk)
        self.copied += len(chunk)
        if self.callback is not None:
            self.callback.relative_update(len(chunk))


def copy_file(
    src_fs: fsspec.AbstractFileSystem,
    src_path: str,
    sink: Sink,
    *,
    algorithm: str = digest.DEFAULT_ALGORITHM,
    chunk_size: int = digest.CHUNK,
    callback: Callback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CopyResult:
    """Stream the file at ``src_path`` into ``sink`` and return its digest.

    The sink is not committed. On any exception, :class:`CopyInterrupted`
    included, the sink is aborted before the exception propagates.
    ``should_stop`` is called before each chunk is read.
    """
    stream = _Stream(src_path, sink, digest.Hasher(algorithm), callback, should_stop)
    try:
        if isinstance(src_fs, LocalFileSystem):
            _copy_local(digest.local_path(src_path), stream, chunk_size)
        else:
            _copy_stream(src_fs, src_path, stream, chunk_size)
    except BaseException:
        sink.abort()
        raise
    return CopyResult(bytes=stream.copied, digest=stream.hasher.digest_string())


def _copy_local(path: str, stream: _Stream, chunk_size: int) -> None:
    fd = digest.open_local(path)
    try:
        size = _regular_file_size(fd, path)
        stream.set_size(size)

        # A file smaller than a chunk is copied with one read: asking for one
        # byte more than its size shows it did not grow since the fstat.
        if size < chunk_size:
            stream.check_stop()
            data = os.read(fd, size + 1)
            stream.push(data)
            if len(data) == size:
                return

        buffer = bytearray(chunk_size)
        view = memoryview(buffer)
        while True:
            stream.check_stop()
            count = os.readv(fd, [buffer])
            if count == 0:
                return
            stream.push(view[:count])
    finally:
        os.close(fd)


def _regular_file_size(fd: int, path: str) -> int:
    result = os.fstat(fd)
    if stat_module.S_ISDIR(result.st_mode):
        raise IsADirectoryError(errno.EISDIR, "source is a directory, not a file", path)
    return result.st_size


def _copy_stream(
    fs: fsspec.AbstractFileSystem, path: str, stream: _Stream, chunk_size: int
) -> None:
    with digest.open_for_reading(fs, path) as file:
        stream.set_size(getattr(file, "size", None))
        while True:
            stream.check_stop()
            chunk = file.read(chunk_size)
            if not chunk:
                return
            stream.push(chunk)


# Batch durability -------------------------------------------------------------


def sync_filesystem(path: str) -> None:
    """Flush every written file on the filesystem holding ``path`` to disk.

    Goes through :data:`journalq.durable.ops`, so the power-loss tests see
    what the sync made durable.
    """
    durable.ops.syncfs(path)
