"""Segment files on disk: create, seal, cut a torn tail, copy aside.

Every write, sync, rename and unlink goes through :data:`journalq.durable.ops`
so that tests can replace it, and every sync through a :class:`Syncer`, which
counts them and skips them all under ``sync="none"``. Namespace changes
(create, rename, unlink) are followed by a sync of the directory, because a
file's sync does not make its directory entry durable.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from journalq import durable, faults
from journalq.records import FORMAT_MAJOR, FORMAT_MINOR

from . import format as fmt
from .reader import SegmentInfo, TornTail

__all__ = [
    "NONCE_SIZE",
    "OpenSegment",
    "Syncer",
    "create_segment",
    "cut_torn_tail",
    "ensure_directory",
    "remove_segment",
    "remove_temporaries",
    "seal_frame",
    "seal_segment",
    "truncate_file",
    "write_file",
]

logger = logging.getLogger(__name__)

NONCE_SIZE = 8
#: A sync slower than this is logged as a warning. The sync of a batch took
#: 0.2-0.5 ms on the development VM's disk (benchmarks/journal_bench.py), so
#: a full second means a failing or overloaded device.
SLOW_SYNC_SECONDS = 1.0


class Syncer:
    """Issue the syncs of one journal and count them.

    With ``enabled`` False (``sync="none"``) nothing is synced or counted.
    """

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """Number of fsync, fdatasync and directory syncs issued."""
        return self._count

    def fsync(self, fd: int) -> None:
        """Sync data and metadata: for new files and headers."""
        self._timed(durable.ops.fsync, fd)

    def fdatasync(self, fd: int) -> None:
        """Sync appended data, which suffices for frames because the new file
        size is synced too."""
        self._timed(durable.ops.fdatasync, fd)

    def fsync_dir(self, path: str) -> None:
        """Make creates, renames and unlinks in directory ``path`` durable."""
        self._timed(durable.ops.fsync_dir, path)

    def _timed(self, sync: Callable[[Any], None], target: int | str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._count += 1
        started = time.monotonic()
        sync(target)
        elapsed = time.monotonic() - started
        if elapsed > SLOW_SYNC_SECONDS:
            logger.warning("%s took %.1f s", sync.__name__, elapsed)


class OpenSegment(msgspec.Struct):
    """The active segment: an ``O_APPEND`` descriptor and its running state."""

    fd: int
    path: str
    number: int
    first_lsn: int
    nonce: bytes
    size: int
    crc: int
    """Unmasked CRC32C of every byte written so far, for the SEAL frame."""

    @property
    def seed(self) -> int:
        """The CRC state every frame checksum of this segment starts from."""
        return fmt.nonce_seed(self.nonce)

    def append(self, frame: bytes, syncer: Syncer) -> None:
        """Write one frame and sync it; the crash points bracket both steps."""
        faults.point("journal.before_write")
        durable.ops.write_all(self.fd, frame)
        self.size += len(frame)
        self.crc = fmt.running_crc(frame, self.crc)
        faults.point("journal.after_write")
        syncer.fdatasync(self.fd)

    def seal(self, next_lsn: int, syncer: Syncer) -> SegmentInfo:
        """Append the SEAL frame, sync it and close the descriptor."""
        frame = seal_frame(self.seed, next_lsn, self.crc)
        durable.ops.write_all(self.fd, frame)
        self.size += len(frame)
        syncer.fsync(self.fd)
        self.close()
        logger.debug("sealed segment %s at LSN %d", self.path, next_lsn - 1)
        return SegmentInfo(
            self.path,
            self.number,
            self.first_lsn,
            next_lsn - 1,
            sealed=True,
            size=self.size,
            nonce=self.nonce,
        )

    def close(self) -> None:
        """Close the descriptor; closing twice does nothing."""
        if self.fd >= 0:
            durable.ops.close(self.fd)
            self.fd = -1

    def discard(self, syncer: Syncer) -> None:
        """Close the descriptor and delete the file, which must contain no frame.

        A crash before the deletion is durable leaves an unsealed segment
        with a header only, which the next open seals like any other.
        """
        self.close()
        durable.ops.unlink(self.path)
        syncer.fsync_dir(os.path.dirname(self.path))
        logger.debug("deleted empty segment %s", self.path)


def create_segment(
    directory: str, number: int, first_lsn: int, queue_id: bytes, syncer: Syncer
) -> OpenSegment:
    """Create segment ``number`` so that it is visible only with a full header.

    The header goes to ``<name>.tmp``, which is synced, renamed to its final
    name, and followed by a sync of the directory.
    """
    header = fmt.SegmentHeader(
        major=FORMAT_MAJOR,
        minor=FORMAT_MINOR,
        flags=0,
        number=number,
        first_lsn=first_lsn,
        queue_id=queue_id,
        nonce=os.urandom(NONCE_SIZE),
        checksum=fmt.CHECKSUM_CRC32C,
    )
    encoded = fmt.encode_header(header)
    path = os.path.join(directory, fmt.segment_name(number, first_lsn))
    temporary = path.removesuffix(fmt.SUFFIX) + fmt.TEMPORARY_SUFFIX

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
    fd = durable.ops.open(temporary, flags, 0o600)
    try:
        durable.ops.write_all(fd, encoded)
        syncer.fsync(fd)
        faults.point("journal.before_segment_rename")
        durable.ops.replace(temporary, path)
    except BaseException:
        durable.ops.close(fd)
        raise
    syncer.fsync_dir(directory)
    faults.point("journal.segment_created")

    logger.debug("created segment %s", path)
    crc = fmt.running_crc(encoded)
    return OpenSegment(fd, path, number, first_lsn, header.nonce, len(encoded), crc)


def seal_frame(seed: int, next_lsn: int, segment_crc: int) -> bytes:
    """Encode the SEAL frame of a segment whose bytes so far have ``segment_crc``."""
    payload = fmt.encode_seal(next_lsn - 1, segment_crc)
    return fmt.encode_frame(seed, fmt.FRAME_SEAL, next_lsn, 0, payload)


def seal_segment(info: SegmentInfo, syncer: Syncer) -> None:
    """Append a SEAL frame to a closed segment whose frames all validated."""
    if info.nonce is None:
        raise ValueError(f"{info.path}: a segment without a header cannot be sealed")
    with open(info.path, "rb") as file:
        crc = fmt.running_crc(file.read())
    frame = seal_frame(fmt.nonce_seed(info.nonce), info.last_lsn + 1, crc)

    faults.point("journal.before_seal")
    fd = durable.ops.open(info.path, os.O_WRONLY | os.O_APPEND)
    try:
        durable.ops.write_all(fd, frame)
        syncer.fsync(fd)
    finally:
        durable.ops.close(fd)
    logger.debug("sealed segment %s at LSN %d", info.path, info.last_lsn)


def cut_torn_tail(tail: TornTail, quarantine_dir: str, syncer: Syncer) -> str:
    """Copy a torn tail to ``quarantine_dir``, then cut it off the segment.

    A segment cut inside its header is removed. Returns the quarantine path.
    """
    with open(tail.path, "rb") as file:
        file.seek(tail.valid_end)
        cut = file.read()
    ensure_directory(quarantine_dir, syncer)
    name = f"{os.path.basename(tail.path)}.{tail.valid_end}.torn"
    copy = os.path.join(quarantine_dir, name)
    write_file(copy, cut, syncer)
    faults.point("journal.tail_saved")

    if tail.valid_end < fmt.HEADER_SIZE:
        durable.ops.unlink(tail.path)
        syncer.fsync_dir(os.path.dirname(tail.path))
    else:
        truncate_file(tail.path, tail.valid_end, syncer)

    logger.warning(
        "journal %s: cut a torn tail of %d bytes at byte %d (the end of a write "
        "that a crash interrupted); the bytes were saved to %s",
        tail.path,
        len(cut),
        tail.valid_end,
        copy,
    )
    return copy


def truncate_file(path: str, length: int, syncer: Syncer) -> None:
    """Cut file ``path`` to ``length`` bytes and sync it."""
    fd = durable.ops.open(path, os.O_WRONLY)
    try:
        durable.ops.truncate(fd, length)
        syncer.fsync(fd)
    finally:
        durable.ops.close(fd)


def write_file(path: str, data: bytes, syncer: Syncer) -> None:
    """Write a new file ``path`` durably: data, file sync, directory sync."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = durable.ops.open(path, flags, 0o600)
    try:
        durable.ops.write_all(fd, data)
        syncer.fsync(fd)
    finally:
        durable.ops.close(fd)
    syncer.fsync_dir(os.path.dirname(path))


def ensure_directory(path: str, syncer: Syncer) -> None:
    """Create ``path`` and its missing parents, syncing each new entry."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(os.path.abspath(path))
    ensure_directory(parent, syncer)
    try:
        durable.ops.mkdir(path)
    except FileExistsError:
        return
    syncer.fsync_dir(parent)


def remove_segment(path: str) -> None:
    """Unlink a segment; the caller syncs the directory afterwards."""
    faults.point("journal.before_delete")
    durable.ops.unlink(path)
    faults.point("journal.after_delete")


def remove_temporaries(directory: str, syncer: Syncer) -> list[str]:
    """Remove segments left half-created (``*.jq.tmp``) by a crash."""
    removed = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(fmt.TEMPORARY_SUFFIX):
            path = os.path.join(directory, name)
            durable.ops.unlink(path)
            removed.append(path)
    if removed:
        syncer.fsync_dir(directory)
        logger.debug("removed half-created segments %s", removed)
    return removed
