"""Offline repair: cut a corrupt journal back to its valid prefix.

:func:`scan` refuses a journal with mid-log corruption, because skipping a
damaged record could change what a run does (a lost ``canceled`` record
would run the action). An operator who accepts losing everything after the
damage runs :func:`repair`. It copies every file it is about to change to a
backup directory. Then it truncates the journal at the first corruption
point and deletes all later segments, so that the next scan succeeds with
the records before the damage. A torn tail is left alone, because opening
the journal repairs it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import msgspec

from journalq import durable, errors

from . import format as fmt
from .reader import ScanResult, list_segments, scan
from .segment import Syncer, ensure_directory, truncate_file, write_file

__all__ = ["RepairReport", "repair"]

logger = logging.getLogger(__name__)


class RepairReport(msgspec.Struct, frozen=True):
    """The changes :func:`repair` made; ``path`` is None when it made none."""

    path: str | None
    """Segment at whose first corruption point the journal was cut."""
    offset: int | None
    """Byte offset of the cut in ``path``; below the header size, ``path``
    itself was removed."""
    detail: str | None
    """The damage the scan found there."""
    records_kept: int
    """Records above ``after_lsn`` that the journal still holds."""
    records_dropped: int
    """Records in the removed bytes whose frames still validate. Damaged
    frames held an unknown number more, so this is a lower bound."""
    backups: list[str] = msgspec.field(default_factory=list)
    """Copies of every changed or removed file, made before the change."""
    removed: list[str] = msgspec.field(default_factory=list)
    """Segments deleted entirely."""

    @property
    def changed(self) -> bool:
        """Whether any file was changed."""
        return self.path is not None


def repair(
    directory: str | os.PathLike[str],
    queue_id: bytes,
    backup_dir: str | os.PathLike[str],
    *,
    after_lsn: int = 0,
    check: Callable[[ScanResult], None] | None = None,
) -> RepairReport:
    """Cut the journal in ``directory`` at its first corruption point.

    ``after_lsn`` must be the last LSN of the queue's newest snapshot: with a
    lower value, segments legitimately deleted behind the snapshot look like
    missing records, and the repair would cut away the whole journal.
    ``check`` looks at the frames of a journal that scanned clean and raises
    :class:`~journalq.errors.CorruptionError` at a frame it finds damaged,
    for example one whose records do not decode; the journal is cut there too.

    Raises FormatVersionError, without changing anything, for a journal
    written by a newer format version.
    """
    path = os.fspath(directory)
    backups = os.fspath(backup_dir)
    syncer = Syncer(enabled=True)
    report = None
    dropped = 0
    backed_up: list[str] = []
    removed: list[str] = []

    # Each pass cuts at least one byte or one file, so the loop ends.
    while True:
        try:
            result = scan(path, queue_id, after_lsn=after_lsn)
            if check is not None:
                check(result)
        except errors.CorruptionError as error:
            if report is None:
                report = error
            dropped += _cut(path, error, backups, syncer, backed_up, removed)
            continue
        break

    kept = _count_records(result)
    if report is None:
        logger.info("journal %s: no corruption found, nothing changed", path)
        return RepairReport(None, None, None, kept, 0)
    logger.warning(
        "journal %s: cut at byte %d of %s (%s); kept %d records, dropped at "
        "least %d; backups in %s",
        path,
        report.offset,
        report.path,
        report.detail,
        kept,
        dropped,
        backups,
    )
    return RepairReport(
        report.path, report.offset, report.detail, kept, dropped, backed_up, removed
    )


def _cut(
    directory: str,
    error: errors.CorruptionError,
    backup_dir: str,
    syncer: Syncer,
    backed_up: list[str],
    removed: list[str],
) -> int:
    """Back up, then cut the journal where ``error`` points; count dropped records."""
    paths = [path for _, _, path in list_segments(directory)]
    later = paths[paths.index(error.path) + 1 :] if error.path in paths else []
    size = os.path.getsize(error.path)
    whole = error.offset < fmt.HEADER_SIZE
    if not later and not whole and error.offset >= size:
        raise error

    ensure_directory(backup_dir, syncer)
    for path in [error.path, *later]:
        backed_up.append(_back_up(path, backup_dir, syncer))
    dropped = sum(_valid_records(path, 0) for path in later)

    # Newest first, so that a crash part-way leaves a journal that a second
    # repair cuts at the same place.
    for path in reversed(later):
        durable.ops.unlink(path)
        removed.append(path)
    if whole:
        dropped += _valid_records(error.path, 0)
        durable.ops.unlink(error.path)
        removed.append(error.path)
    if later or whole:
        syncer.fsync_dir(directory)
    if not whole:
        dropped += _valid_records(error.path, error.offset)
        truncate_file(error.path, error.offset, syncer)
    return dropped


def _back_up(path: str, backup_dir: str, syncer: Syncer) -> str:
    """Copy ``path`` into ``backup_dir`` under a name not used yet."""
    name = os.path.basename(path)
    target = os.path.join(backup_dir, name)
    suffix = 1
    while os.path.exists(target):
        target = os.path.join(backup_dir, f"{name}.{suffix}")
        suffix += 1
    write_file(target, Path(path).read_bytes(), syncer)
    return target


def _valid_records(path: str, start: int) -> int:
    """Count records in the frames from ``start`` on that still validate."""
    data = Path(path).read_bytes()
    if len(data) < fmt.HEADER_SIZE or not fmt.header_checksum_ok(data):
        return 0
    seed = fmt.nonce_seed(fmt.decode_header(data).nonce)
    count = 0
    offset = max(start, fmt.HEADER_SIZE)
    for match in fmt.FRAME_CANDIDATE.finditer(data, offset):
        if match.start() < offset:
            continue
        frame = _frame_at(data, match.start(), seed)
        if frame is not None and frame.frame_type == fmt.FRAME_BATCH:
            count += frame.count
            offset = match.start() + fmt.FRAME_HEADER_SIZE + frame.length
    return count


def _frame_at(data: bytes, offset: int, seed: int) -> fmt.FrameHeader | None:
    if len(data) - offset < fmt.FRAME_HEADER_SIZE:
        return None
    frame = fmt.decode_frame_header(data, offset)
    end = offset + fmt.FRAME_HEADER_SIZE + frame.length
    if frame.length > fmt.MAX_PAYLOAD or end > len(data):
        return None
    return frame if fmt.frame_checksum_ok(data, offset, frame, seed) else None


def _count_records(result: ScanResult) -> int:
    return sum(frame.count for frame in result.frames)
