"""Snapshots: the folded queue state at one LSN, in a self-validating file.

A snapshot lets recovery start from the state after LSN ``X`` instead of
replaying the whole journal, and lets journal segments at or below ``X`` be
deleted. The payload is opaque bytes that the caller encodes.

File name: ``snap-<last_lsn as 16 hex digits>.jqs``, so names sort by LSN.
Layout (little-endian)::

    0   8 bytes  magic b"JQSNAP\\r\\n"
    8   u16      format version (FORMAT_VERSION)
    10  u16      reserved, 0
    12  16 bytes queue id (the UUID of the queue that wrote it)
    28  u64      last LSN folded into the payload
    36  u64      payload length
    44  ...      payload
    end u32      masked CRC32C of every byte before it

Every format version keeps the magic at the start and the CRC in the last
four bytes. The CRC is CRC32C masked as LevelDB does (rotate right by 15 bits,
add 0xa282ead8), so a CRC computed over bytes that contain CRCs is not
trivially related to them.

Writing goes ``.tmp`` -> fsync -> ``os.replace`` -> fsync of the directory,
so a crash leaves the previous snapshot or the new one, never a torn file
under a final name. Loading tries snapshots from newest to oldest: a damaged
one is renamed ``*.broken`` and the previous one is tried. A snapshot of
another queue, or of a newer format, stops the load instead, because falling
back past it could pair the state of one queue with the journal of another.

If every snapshot is damaged :func:`load_latest` returns ``None``. The caller
must then check that the journal still starts at LSN 1, because segments
behind a snapshot may already be deleted. Only the lock holder may call
these functions: loading deletes leftover ``*.tmp`` files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
from collections.abc import Iterable
from typing import Protocol

import crc32c
import msgspec

from journalq import durable, faults
from journalq.errors import CorruptionError, FormatVersionError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "QUEUE_ID_SIZE",
    "SNAPSHOT_DIR",
    "Payload",
    "SnapshotInfo",
    "load_latest",
    "prune",
    "snapshot_name",
    "write_snapshot",
]

logger = logging.getLogger(__name__)

#: The snapshot directory inside a queue directory.
SNAPSHOT_DIR = "snapshots"
MAGIC = b"JQSNAP\r\n"
#: The highest snapshot format version this module reads and the one it writes.
FORMAT_VERSION = 1
#: Length of a queue id: the 16 bytes of a UUID.
QUEUE_ID_SIZE = 16

_HEADER = struct.Struct("<8sHH16sQQ")
_FOOTER = struct.Struct("<I")
_QUEUE_ID_OFFSET = 12
_MINIMUM_SIZE = _HEADER.size + _FOOTER.size
_MAX_LSN = 2**64 - 1
_NAME = re.compile(r"^snap-([0-9a-f]{16})\.jqs$")
_CRC_MASK_DELTA = 0xA282EAD8


class SnapshotInfo(msgspec.Struct, frozen=True):
    """A snapshot file and the facts that identify it."""

    path: str
    name: str
    last_lsn: int
    #: The masked CRC32C stored in the file's footer.
    crc: int


class _DamagedSnapshotError(Exception):
    """A snapshot fails validation; the message is the reason."""


def snapshot_name(last_lsn: int) -> str:
    """Return the file name of the snapshot at ``last_lsn``."""
    return f"snap-{last_lsn:016x}.jqs"


class Payload(Protocol):
    """A payload written piece by piece, such as :class:`journalq.replay.StateImage`."""

    @property
    def size(self) -> int:
        """Return the payload's length in bytes."""

    def pieces(self) -> Iterable[bytes]:
        """Yield the payload's bytes in order."""


def write_snapshot(
    directory: str | os.PathLike[str],
    queue_id: bytes,
    last_lsn: int,
    payload: bytes | Payload,
) -> SnapshotInfo:
    """Write the snapshot at ``last_lsn`` durably and atomically.

    ``directory`` is the snapshot directory, created if missing. When
    this returns, the snapshot survives a power cut under its final name.
    An existing snapshot at the same LSN is replaced.
    """
    _check_queue_id(queue_id)
    if not 0 <= last_lsn <= _MAX_LSN:
        raise ValueError(f"last_lsn {last_lsn} is outside 0..2**64-1")
    root = os.fspath(directory)
    _ensure_directory(root)

    name = snapshot_name(last_lsn)
    path = os.path.join(root, name)
    if isinstance(payload, bytes):
        size, pieces = len(payload), (payload,)
    else:
        size, pieces = payload.size, payload.pieces()
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, queue_id, last_lsn, size)
    crc = _write_synced(f"{path}.tmp", header, pieces)

    faults.point("snapshot.before_replace")
    durable.ops.replace(f"{path}.tmp", path)
    faults.point("snapshot.after_replace")
    durable.ops.fsync_dir(root)

    logger.info("wrote snapshot %s (%d payload bytes)", path, size)
    return SnapshotInfo(path=path, name=name, last_lsn=last_lsn, crc=crc)


def load_latest(
    directory: str | os.PathLike[str], queue_id: bytes, *, tidy: bool = True
) -> tuple[SnapshotInfo, bytes] | None:
    """Load the newest valid snapshot of queue ``queue_id``.

    Returns its info and payload, or ``None`` when no snapshot validates.
    With ``tidy`` (the lock holder's open) it renames damaged snapshots to
    ``*.broken`` and deletes leftover ``*.tmp`` files. A reader without the
    lock passes ``tidy=False`` and changes nothing, because a ``*.tmp`` may
    be the snapshot the holder is writing. Raises :class:`CorruptionError`
    for a snapshot of another queue and :class:`FormatVersionError` for one
    written by a newer format.
    """
    _check_queue_id(queue_id)
    root = os.fspath(directory)
    if not os.path.isdir(root):
        return None
    if tidy:
        _remove_temporaries(root)

    for name, last_lsn in reversed(_snapshots(root)):
        path = os.path.join(root, name)
        try:
            loaded = _load(path, name, last_lsn, queue_id)
        except _DamagedSnapshotError as damage:
            if tidy:
                _set_aside(root, path, str(damage))
            else:
                logger.warning("skipped damaged snapshot %s: %s", path, damage)
            continue
        logger.info("loaded snapshot %s at LSN %d", path, last_lsn)
        return loaded
    return None


def prune(directory: str | os.PathLike[str], keep: int = 2) -> list[str]:
    """Delete all but the ``keep`` newest snapshots and return the deleted names.

    Two are kept by default, so a newest snapshot found damaged at the next
    load still has a previous one to fall back to.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    root = os.fspath(directory)
    if not os.path.isdir(root):
        return []
    doomed = [name for name, _ in _snapshots(root)[:-keep]]
    for name in doomed:
        durable.ops.unlink(os.path.join(root, name))
        logger.debug("deleted snapshot %s", os.path.join(root, name))
    if doomed:
        durable.ops.fsync_dir(root)
    return doomed


def _load(
    path: str, name: str, last_lsn: int, queue_id: bytes
) -> tuple[SnapshotInfo, bytes]:
    with open(path, "rb") as file:
        data = file.read()
    _check_frame(path, data)

    _, _, _, found_id, found_lsn, length = _HEADER.unpack_from(data)
    if found_id != queue_id:
        raise CorruptionError(
            path,
            _QUEUE_ID_OFFSET,
            f"the snapshot belongs to queue {found_id.hex()}, not to this queue "
            f"({queue_id.hex()}); move the file out of the queue directory",
        )
    if length != len(data) - _MINIMUM_SIZE:
        raise _DamagedSnapshotError(
            f"payload length {length} does not match the file size {len(data)}"
        )
    if found_lsn != last_lsn:
        raise _DamagedSnapshotError(
            f"header LSN {found_lsn} does not match LSN {last_lsn} in the file name"
        )

    crc = _FOOTER.unpack_from(data, len(data) - _FOOTER.size)[0]
    info = SnapshotInfo(path=path, name=name, last_lsn=last_lsn, crc=crc)
    return info, data[_HEADER.size : -_FOOTER.size]


def _check_frame(path: str, data: bytes) -> None:
    # Magic and version come before the CRC: a newer format may checksum
    # differently, and must stop the load rather than be renamed as broken.
    # NOTE: a bit flip that raises the version also stops the load, with an
    # "upgrade journalq" message; moving that file aside lets the queue open.
    if len(data) < _MINIMUM_SIZE:
        raise _DamagedSnapshotError(
            f"the file is {len(data)} bytes, shorter than the minimum {_MINIMUM_SIZE}"
        )
    magic, version, _ = struct.unpack_from("<8sHH", data)
    if magic != MAGIC:
        raise _DamagedSnapshotError(f"invalid magic {magic!r}, expected {MAGIC!r}")
    if version > FORMAT_VERSION:
        raise FormatVersionError(path, version, FORMAT_VERSION)
    if version < 1:
        raise _DamagedSnapshotError(f"invalid format version {version}")
    stored = _FOOTER.unpack_from(data, len(data) - _FOOTER.size)[0]
    computed = _masked_crc32c(memoryview(data)[: -_FOOTER.size])
    if stored != computed:
        raise _DamagedSnapshotError(
            f"checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )


def _masked_crc32c(data: bytes | memoryview) -> int:
    return _mask(crc32c.crc32c(data))


def _mask(crc: int) -> int:
    """Return the masked form of a CRC32C, as the footer stores it."""
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    return (rotated + _CRC_MASK_DELTA) & 0xFFFFFFFF


def _snapshots(root: str) -> list[tuple[str, int]]:
    """List ``(name, last_lsn)`` of the snapshots in ``root``, oldest first."""
    found = []
    for name in os.listdir(root):
        match = _NAME.match(name)
        if match:
            found.append((name, int(match[1], 16)))
    return sorted(found, key=lambda entry: entry[1])


def _write_synced(path: str, header: bytes, pieces: Iterable[bytes]) -> int:
    """Write the header, the payload's pieces and the footer; return its CRC.

    The pieces are written as they come rather than joined first, so a
    payload of hundreds of MiB never needs to be in memory whole.
    """
    fd = durable.ops.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        durable.ops.write_all(fd, header)
        crc = crc32c.crc32c(header)
        written = 0
        for piece in pieces:
            durable.ops.write_all(fd, piece)
            crc = crc32c.crc32c(piece, crc)
            written += len(piece)
        stored = _mask(crc)
        durable.ops.write_all(fd, _FOOTER.pack(stored))
        durable.ops.fsync(fd)
    finally:
        durable.ops.close(fd)
    expected = _HEADER.unpack(header)[-1]
    if written != expected:
        raise ValueError(f"snapshot payload is {written} bytes, expected {expected}")
    return stored


def _ensure_directory(root: str) -> None:
    # The parent is synced even when the directory exists, because a holder
    # that created it may have crashed before syncing its entry.
    with contextlib.suppress(FileExistsError):
        durable.ops.mkdir(root)
    durable.ops.fsync_dir(os.path.dirname(os.path.abspath(root)))


def _remove_temporaries(root: str) -> None:
    leftovers = [name for name in os.listdir(root) if name.endswith(".tmp")]
    for name in leftovers:
        logger.info("deleting unfinished snapshot %s", os.path.join(root, name))
        durable.ops.unlink(os.path.join(root, name))
    if leftovers:
        durable.ops.fsync_dir(root)


def _set_aside(root: str, path: str, reason: str) -> None:
    logger.warning(
        "snapshot %s is damaged (%s); renaming it to %s.broken and trying the "
        "previous snapshot",
        path,
        reason,
        path,
    )
    durable.ops.replace(path, f"{path}.broken")
    durable.ops.fsync_dir(root)


def _check_queue_id(queue_id: bytes) -> None:
    if len(queue_id) != QUEUE_ID_SIZE:
        raise ValueError(
            f"queue_id must be {QUEUE_ID_SIZE} bytes (a UUID), got {len(queue_id)}"
        )
