"""Large copies in parts, each part journaled once it is durable.

A copy of a file of :data:`PART_THRESHOLD` bytes or more goes in parts to a
:class:`PartTarget`, which keeps the parts until the copy completes: a
temporary file beside a local destination, an object store's multipart
upload, an upload session. The executor journals ``parts planned``
(durably) before the first part and ``part written`` after each part is
durable at the destination. When an attempt dies, the next one checks with
the target which journaled parts are still intact, sends only the others,
and completes. Among the others, a part that the dead attempt stored whole
but did not journal is found by the target and journaled without being
sent again. The local and SFTP targets read such a part back and compare
it with the source's bytes, S3 lists it with the ETag of its MD5, and a
GCS session has persisted it. So a resumed copy of a large file sends
again at most the parts whose writes were cut off when the attempt died.

The parts are read and written :data:`PARTS_IN_FLIGHT` at a time but taken
in order. The file's digest is combined from the digests the parts journal
(:func:`journalq.digest.combine_parts`), the part-wise digest that a read
of the whole file gives too. So a journaled part that the target still
has is neither sent nor read again: a copy killed at 90% reads and sends
the last 10%. The local target checks that the part lies inside its parts
file, S3 lists it with its ETag, a GCS session reports it persisted, and
an SFTP target reads it back and compares it with the journaled digest.

A plan names the source as it was (size, mtime, ETag or digest). When the
source no longer matches, the copy starts over with a new plan; the source
is checked again after the last part, so a file replaced during the copy
is copied again instead of mixing two versions.
"""

from __future__ import annotations

import abc
import collections
import concurrent.futures
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Final

import fsspec
from fsspec.implementations.local import LocalFileSystem

from journalq import compare, digest, durable, faults, transfer
from journalq.records import Identity, Part

__all__ = [
    "PARTS_IN_FLIGHT",
    "PART_THRESHOLD",
    "PartTarget",
    "SourceChangedError",
    "UploadGoneError",
    "copy_in_parts",
    "note_failed_sync",
    "open_target",
    "register_part_target",
    "source_identity",
    "sync_failed",
]

logger = logging.getLogger(__name__)

#: Files from this size on are copied in parts. Below it a copy that dies
#: is cheap to redo: 64 MiB take well under a second on a local disk and
#: a few seconds over a 100 Mbit/s link.
PART_THRESHOLD: Final = 64 * 1024 * 1024
#: Parts read and written at the same time. Four keep a network link busy
#: while one part's round trip is pending. Memory is bounded by twice this
#: many parts, because each may have one part waiting for its turn.
PARTS_IN_FLIGHT: Final = 4
#: Bytes of a local parts file read back and compared at a time, when a
#: resumed copy checks whether a part is there already.
_READ_BACK_CHUNK: Final = 1024 * 1024


class PartTarget(abc.ABC):
    """The store of one large copy's parts until the copy completes."""

    #: The journal's name for the parts: a temporary path, an upload id,
    #: a session URI.
    upload: str
    #: Whether :meth:`complete` gives the file the mtime it is passed.
    keeps_mtime: bool = False
    #: The ETag (S3) or generation (GCS) of the completed object, when
    #: :meth:`complete` learned it; ``None`` otherwise.
    etag: str | None = None

    @abc.abstractmethod
    def recover(self, part: Part) -> bool:
        """Return whether the journaled ``part`` is still at the destination.

        False means it must be sent again.
        """

    @abc.abstractmethod
    def write(self, number: int, offset: int, data: bytes, checksum: str) -> Part:
        """Store one part durably and return its record."""

    @abc.abstractmethod
    def complete(
        self, parts: list[Part], mtime_ns: int | None, digest_string: str | None = None
    ) -> None:
        """Make the parts, in order, the destination file.

        ``digest_string`` is the whole file's digest, for a target that
        stores it with the file.
        """

    @abc.abstractmethod
    def abort(self) -> None:
        """Discard the parts; safe to call more than once."""

    def release(self) -> None:  # noqa: B027 (most targets hold nothing open)
        """Let go of open handles and keep the parts for the next attempt."""

    def interrupt(self) -> None:  # noqa: B027 (most targets never make parts wait)
        """Make parts that wait for their turn fail at once; a part failed."""


#: Opens the target of a copy to ``path``: the one ``upload`` names, or a
#: new one when it is ``None``. Returns ``None`` when the filesystem cannot
#: take parts, and the copy goes in one piece.
TargetFactory = Callable[
    [fsspec.AbstractFileSystem, str, str, "str | None", int], "PartTarget | None"
]

_factories: dict[type, TargetFactory] = {}


def register_part_target(fs_type: type, factory: TargetFactory) -> None:
    """Let copies to ``fs_type`` and its subclasses go in parts."""
    _factories[fs_type] = factory


def open_target(
    fs: fsspec.AbstractFileSystem,
    path: str,
    action_id: str,
    upload: str | None,
    part_size: int,
) -> PartTarget | None:
    """Open the part target for a copy to ``path`` on ``fs``, if it has one."""
    for fs_type in type(fs).__mro__:
        factory = _factories.get(fs_type)
        if factory is not None:
            return factory(fs, path, action_id, upload, part_size)
    return None


def source_identity(info: compare.FileInfo) -> Identity:
    """Return what a plan records of its source, to notice a change."""
    return Identity(
        info.size,
        info.mtime_ns,
        info.digests[0] if info.digests else None,
        info.etag,
    )


class SourceChangedError(OSError):
    """The source changed during a copy in parts (retried from the start)."""


class UploadGoneError(OSError):
    """The destination no longer has the parts a plan names.

    An object store aborted the upload, or a lifecycle rule removed it; the
    copy starts over with a new plan.
    """


def copy_in_parts(
    source_fs: fsspec.AbstractFileSystem,
    source_path: str,
    source: compare.FileInfo,
    target: PartTarget,
    part_size: int,
    written: dict[int, Part],
    *,
    on_part: Callable[[Part], None],
    on_bytes: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_recovered: Callable[[Part], None] | None = None,
) -> tuple[list[Part], str]:
    """Send the parts of ``source_path`` that ``target`` lacks.

    ``written`` are the parts the journal has for this plan. ``on_part`` is
    called, in order, with each part newly durable at the destination, and
    ``on_bytes`` with its size once it is. ``on_recovered`` is called with
    each part of ``written`` that the target still has, which is not sent.
    Returns every part in order and the whole file's digest string; the
    caller completes the target. Raises ``InterruptedError`` when
    ``should_stop`` returns true between parts, and :class:`SourceChangedError`
    when the source changed.
    """
    reader = _Reader(source_fs, source_path)
    count = -(-source.size // part_size)
    parts: list[Part] = []
    with reader, concurrent.futures.ThreadPoolExecutor(PARTS_IN_FLIGHT) as pool:

        def submit(number: int) -> concurrent.futures.Future[tuple[Part, bool]]:
            offset = number * part_size
            length = min(part_size, source.size - offset)
            known = written.get(number)
            return pool.submit(_part, reader, target, number, offset, length, known)

        pending = collections.deque(
            submit(n) for n in range(min(count, 2 * PARTS_IN_FLIGHT))
        )
        following = len(pending)
        while pending:
            try:
                part, sent = pending.popleft().result()
            except BaseException:
                for future in pending:
                    future.cancel()
                target.interrupt()
                raise
            if following < count:
                pending.append(submit(following))
                following += 1
            parts.append(part)
            if sent:
                faults.point("parts.before_record")
                on_part(part)
                if on_bytes is not None:
                    on_bytes(part.size)
            elif on_recovered is not None:
                on_recovered(part)
            if should_stop is not None and should_stop() and pending:
                for future in pending:
                    future.cancel()
                raise InterruptedError(
                    f"stopped after part {part.number + 1} of {count}: {source_path}"
                )
    _check_unchanged(source_fs, source_path, source)
    return parts, digest.combine_parts([part.checksum for part in parts], part_size)


def _part(
    reader: _Reader,
    target: PartTarget,
    number: int,
    offset: int,
    length: int,
    known: Part | None,
) -> tuple[Part, bool]:
    """Return one part's record, and whether it was sent now.

    A journaled part that the target still has is neither read nor sent.
    """
    fits = known is not None and known.offset == offset and known.size == length
    if fits and target.recover(known):
        return known, False
    data = reader.read(offset, length)
    if len(data) != length:
        raise SourceChangedError(
            f"source file changed during the copy: {reader.path} (part "
            f"{number + 1} has {len(data)} bytes, expected {length}); it will be "
            "copied again"
        )
    checksum = digest.new_hasher()
    checksum.update(data)
    return target.write(number, offset, data, checksum.digest_string()), True


def _check_unchanged(
    fs: fsspec.AbstractFileSystem, path: str, expected: compare.FileInfo
) -> None:
    now = compare.stat(fs, path)
    if now is None or source_identity(now) != source_identity(expected):
        raise SourceChangedError(
            f"source file changed during the copy: {path}; it will be copied again"
        )


class _Reader:
    """Reads ranges of the source: ``pread`` on a local file, else ranged reads."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        self.fs = fs
        self.path = path
        self._fd: int | None = None
        if isinstance(fs, LocalFileSystem):
            self._fd = digest.open_local(digest.local_path(path))

    def read(self, offset: int, length: int) -> bytes:
        if self._fd is not None:
            return os.pread(self._fd, length, offset)
        return self.fs.cat_file(self.path, start=offset, end=offset + length)

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# A local destination -----------------------------------------------------------


class LocalPartTarget(PartTarget):
    """A temporary file beside the destination, written at each part's offset.

    Its name does not depend on the attempt, so the next attempt finds it:
    ``.<name>.jq-<first 8 of action id>-parts.tmp``. Each part is synced
    before it is reported durable; the last step renames the file over the
    destination and syncs the directory.

    A resumed attempt reads back each part the journal lacks that lies
    inside the file as it found it, and writes the part only when the bytes
    there differ from the source's. A part found whole is synced all the
    same before it is reported durable, because the attempt that wrote it
    may have died before its sync.
    """

    keeps_mtime = True

    def __init__(self, path: str, action_id: str, upload: str | None) -> None:
        self.path = digest.local_path(path)
        directory, _, name = self.path.rpartition("/")
        self.upload = upload or f"{directory}/.{name}.jq-{action_id[:8]}-parts.tmp"
        self._directory = directory or "."
        flags = os.O_RDWR | os.O_CREAT
        if upload is None:
            # A new plan: whatever an older plan left there is not ours.
            flags |= os.O_TRUNC
        os.makedirs(self._directory, exist_ok=True)
        try:
            self._fd: int | None = durable.ops.open(self.upload, flags, 0o644)
        except OSError as exc:
            raise transfer.destination_error(exc, self.path, self.upload) from exc
        #: Size of the file as this attempt found it: the parts that lie
        #: inside it may have been written by an earlier attempt. Nothing is
        #: read back from a file whose sync failed (see :meth:`_sync`).
        self._resumed_size = 0
        if upload is not None and not sync_failed(self.upload):
            self._resumed_size = os.fstat(self._fd).st_size

    def recover(self, part: Part) -> bool:
        # A part is journaled only once it is synced, so a part inside the
        # file is intact: reading it back would cost a read of the whole
        # journaled part of a large file at every resume.
        # NOTE: a part overwritten in the parts file by another program
        # between two runs goes unnoticed.
        size = os.fstat(self._require_open()).st_size
        if part.offset + part.size <= size:
            return True
        logger.info(
            "part %d of %s is missing from %s; sending it again",
            part.number,
            self.path,
            self.upload,
        )
        return False

    def write(self, number: int, offset: int, data: bytes, checksum: str) -> Part:
        fd = self._require_open()
        if self._written_before(fd, offset, data):
            logger.debug(
                "part %d of %s is already in %s, so it is synced without being written",
                number,
                self.path,
                self.upload,
            )
        else:
            _write_at(fd, offset, data)
        # A part found whole may be in the page cache only, so it is synced too.
        self._sync(fd)
        return Part(number, offset, len(data), checksum)

    def complete(
        self, parts: list[Part], mtime_ns: int | None, digest_string: str | None = None
    ) -> None:
        fd = self._require_open()
        size = sum(part.size for part in parts)
        durable.ops.truncate(fd, size)
        if mtime_ns is not None:
            os.utime(fd, ns=(time.time_ns(), mtime_ns))
        durable.ops.fsync(fd)
        self._close()
        faults.point("parts.before_rename")
        durable.ops.replace(self.upload, self.path)
        durable.ops.fsync_dir(self._directory)

    def abort(self) -> None:
        self._close()
        with contextlib.suppress(FileNotFoundError):
            durable.ops.unlink(self.upload)

    def release(self) -> None:
        self._close()

    def _require_open(self) -> int:
        if self._fd is None:
            raise ValueError(
                f"the parts of {self.path} are already completed or aborted"
            )
        return self._fd

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            durable.ops.close(fd)

    def _sync(self, fd: int) -> None:
        """Sync the parts written so far, and delete the file if the sync fails.

        After a failed writeback Linux marks the pages clean but keeps
        their bytes in the page cache, and a descriptor opened after the
        error was reported syncs without an error.
        A later attempt would read the part back intact from the cache and
        journal bytes that never reached the disk. With the parts file deleted,
        every later attempt, in this process or the next one, sends every
        part again. The parts journaled before were synced and are lost too,
        because a failed sync is rare and the copy must stay correct. When
        the deletion fails too, only this process remembers the failure.
        """
        try:
            durable.ops.fdatasync(fd)
        except OSError:
            note_failed_sync(self.upload)
            self._discard()
            raise

    def _discard(self) -> None:
        """Delete the parts file after a failed sync; warn if that fails."""
        try:
            durable.ops.unlink(self.upload)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning(
                "could not remove %s after its sync failed: %s. A later run may "
                "keep parts that are not on the disk, so delete it before the "
                "next run",
                self.upload,
                exc,
            )

    def _written_before(self, fd: int, offset: int, data: bytes) -> bool:
        """Return whether the file contains ``data`` at ``offset`` already.

        That is a part an earlier attempt wrote but died before journaling.
        Only parts inside the file as this attempt found it are read back,
        so the parts of a new plan are written without a read.
        """
        if offset + len(data) > self._resumed_size:
            return False
        view = memoryview(data)
        for start in range(0, len(view), _READ_BACK_CHUNK):
            expected = view[start : start + _READ_BACK_CHUNK]
            if os.pread(fd, len(expected), offset + start) != expected:
                return False
        return True


#: Parts files of this process whose sync failed once. Such a file is
#: deleted as well, and this set covers a deletion that failed.
_failed_syncs: set[str] = set()


def note_failed_sync(upload: str) -> None:
    """Remember that a sync of the parts file ``upload`` failed.

    After a failed writeback Linux keeps the bytes in the page cache, so a
    later attempt in this process would read such a part back intact. Every
    target that reads parts back calls :func:`sync_failed` first.
    """
    _failed_syncs.add(upload)


def sync_failed(upload: str) -> bool:
    """Return whether a sync of the parts file ``upload`` failed in this process."""
    return upload in _failed_syncs


def _write_at(fd: int, offset: int, data: bytes) -> None:
    view = memoryview(data)
    position = offset
    while view:
        written = os.pwrite(fd, view, position)
        view = view[written:]
        position += written


def _open_local_target(
    fs: fsspec.AbstractFileSystem,
    path: str,
    action_id: str,
    upload: str | None,
    part_size: int,
) -> PartTarget:
    return LocalPartTarget(path, action_id, upload)


register_part_target(LocalFileSystem, _open_local_target)
