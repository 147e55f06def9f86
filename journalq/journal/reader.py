"""Scan a journal directory: validate every segment and classify its end.

What a crash can leave behind, and what it cannot:

* The writer never writes a frame before the previous frame's sync
  returned. So after a crash only the last frame of the active (last,
  unsealed) segment can be incomplete or garbage, and nothing valid can
  follow it. Such bytes are a *torn tail*: expected, and repaired by
  :meth:`Journal.open <journalq.journal.writer.Journal.open>`.
* A segment gets its final name only after its header was written and
  synced, so a visible segment with a short header can only be the last
  one, cut while it was created. It is a torn tail at offset 0.
* Anything else is *corruption* and raises :class:`CorruptionError`. That
  covers a bad frame followed by a valid one, any damage in a sealed segment,
  a segment without a SEAL frame before another segment, an LSN gap, and a
  header that is invalid or belongs to another queue. Corruption means that
  records reported durable may be lost, so the queue is not opened.

To tell the two apart after the first invalid byte of the active segment,
the rest of the file is searched for any frame that validates with a first
LSN at or above the expected one. None: torn tail. One: corruption.

These inferences rely on the syncs. A journal written with ``sync="none"``
can, after a power loss, hold damage that the scan reports as corruption.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import msgspec

from journalq import errors
from journalq.records import FORMAT_MAJOR, FORMAT_MINOR

from . import format as fmt

__all__ = [
    "QUEUE_ID_SIZE",
    "Frame",
    "ScanResult",
    "SegmentInfo",
    "TornTail",
    "list_segments",
    "scan",
]

logger = logging.getLogger(__name__)

QUEUE_ID_SIZE = 16


class Frame(msgspec.Struct, frozen=True):
    """One batch: records with LSNs ``first_lsn .. first_lsn + count - 1``."""

    first_lsn: int
    count: int
    payload: bytes | memoryview
    #: The segment file and the byte offset of the frame's header in it.
    path: str = ""
    offset: int = 0

    @property
    def last_lsn(self) -> int:
        """LSN of the frame's last record."""
        return self.first_lsn + self.count - 1


class TornTail(msgspec.Struct, frozen=True):
    """Bytes ``[valid_end, size)`` of ``path`` that a crash left incomplete."""

    path: str
    valid_end: int
    size: int


class SegmentInfo(msgspec.Struct, frozen=True):
    """A segment file as the scan found it.

    ``last_lsn`` is ``first_lsn - 1`` for a segment without records. ``nonce``
    is None when the header is incomplete (a torn tail at offset 0).
    """

    path: str
    number: int
    first_lsn: int
    last_lsn: int
    sealed: bool
    size: int
    nonce: bytes | None = None


class ScanResult(msgspec.Struct, frozen=True):
    """The valid frames, next LSN, torn tail and segments of a journal."""

    frames: list[Frame]
    """Batch frames in LSN order whose last LSN is above ``after_lsn``."""
    next_lsn: int
    """LSN the next record gets: 1 for an empty journal."""
    torn_tail: TornTail | None
    segments: list[SegmentInfo]


class _Walk(msgspec.Struct):
    """Progress of the frame walk through one segment."""

    frames: list[Frame]
    offset: int
    expected: int
    sealed: bool = False
    problem: str | None = None


class _SegmentScan(msgspec.Struct, frozen=True):
    info: SegmentInfo
    frames: list[Frame]
    torn_tail: TornTail | None


def scan(
    directory: str | os.PathLike[str],
    queue_id: bytes,
    *,
    after_lsn: int = 0,
    queue_dir: str | None = None,
) -> ScanResult:
    """Read and validate every segment in ``directory``; never change a file.

    ``after_lsn`` is the last LSN a snapshot holds: segments entirely at or
    below it may be missing, and frames at or below it are left out of the
    result. A frame that straddles it is returned whole, so the caller skips
    the records up to ``after_lsn`` in it. ``queue_dir`` only goes into error
    messages. The next LSN follows the last record found. A journal without
    segments (or a missing directory) is empty, and its next LSN is
    ``after_lsn + 1``. A next LSN at or below ``after_lsn`` means the journal
    ends before the snapshot, which the caller decides how to treat.

    Raises CorruptionError for damage that is not a torn tail, and
    FormatVersionError for a segment written by a newer format version.
    """
    _check_queue_id(queue_id)
    frames: list[Frame] = []
    segments: list[SegmentInfo] = []
    torn_tail = None

    listing = list_segments(directory, queue_dir)
    for index, (number, name_lsn, path) in enumerate(listing):
        expected = segments[-1].last_lsn + 1 if segments else None
        _check_chain(path, name_lsn, expected, after_lsn, queue_dir)
        reader = _SegmentReader(path, number, name_lsn, queue_id, queue_dir)
        result = reader.read(is_last=index == len(listing) - 1)
        segments.append(result.info)
        frames.extend(f for f in result.frames if f.last_lsn > after_lsn)
        torn_tail = result.torn_tail
    next_lsn = segments[-1].last_lsn + 1 if segments else after_lsn + 1

    logger.debug(
        "scanned %d segments in %s: %d frames after LSN %d, next LSN %d",
        len(segments),
        directory,
        len(frames),
        after_lsn,
        next_lsn,
    )
    return ScanResult(frames, next_lsn, torn_tail, segments)


def list_segments(
    directory: str | os.PathLike[str], queue_dir: str | None = None
) -> list[tuple[int, int, str]]:
    """Return (segment number, first LSN, path) of every segment, in order.

    Temporary ``*.jq.tmp`` files and other names are not segments. A ``.jq``
    file whose name does not parse raises CorruptionError, because it cannot
    be placed in the sequence.
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    listing = []
    for name in names:
        path = os.path.join(os.fspath(directory), name)
        if not name.endswith(fmt.SUFFIX):
            continue
        parsed = fmt.parse_segment_name(name)
        if parsed is None:
            detail = (
                "the file name is not <segment number:016x>-<first LSN:016x>.jq, "
                "so its place in the journal is unknown"
            )
            raise errors.CorruptionError(path, 0, detail, queue_dir)
        listing.append((*parsed, path))
    listing.sort()
    return listing


def _check_queue_id(queue_id: bytes) -> None:
    if len(queue_id) != QUEUE_ID_SIZE:
        raise ValueError(
            f"queue_id must be {QUEUE_ID_SIZE} bytes (a UUID's bytes), "
            f"got {len(queue_id)}"
        )


def _check_chain(
    path: str,
    first_lsn: int,
    expected: int | None,
    after_lsn: int,
    queue_dir: str | None,
) -> None:
    """Raise unless a segment starting at ``first_lsn`` may follow the last one.

    A gap is allowed only where every missing LSN is at or below
    ``after_lsn``: those segments were deleted behind a snapshot.
    """
    if expected is None:
        if first_lsn > after_lsn + 1:
            detail = (
                f"the journal starts at LSN {first_lsn}, so records "
                f"{after_lsn + 1}..{first_lsn - 1} are missing. If the queue "
                "had a snapshot, it is damaged or gone and the journal before "
                "it was already deleted: no repair can bring those records "
                "back, so restore the queue directory from a backup, or remove "
                "it and run the same copy or sync again (files already "
                "identical at the destination are skipped)"
            )
            raise errors.CorruptionError(path, 0, detail, queue_dir)
        return
    if first_lsn == expected or expected <= first_lsn <= after_lsn + 1:
        return
    if first_lsn > expected:
        detail = (
            f"the segment starts at LSN {first_lsn}, but the previous segment "
            f"ends at LSN {expected - 1}: a segment is missing"
        )
    else:
        detail = (
            f"the segment starts at LSN {first_lsn}, but the previous segment "
            f"already holds LSNs up to {expected - 1}: a segment is duplicated"
        )
    raise errors.CorruptionError(path, 0, detail, queue_dir)


class _SegmentReader:
    """Validate one segment file and find where its valid frames end."""

    def __init__(
        self,
        path: str,
        number: int,
        first_lsn: int,
        queue_id: bytes,
        queue_dir: str | None,
    ) -> None:
        self.path = path
        self.number = number
        self.first_lsn = first_lsn
        self.queue_id = queue_id
        self.queue_dir = queue_dir
        self.data = Path(path).read_bytes()
        self.seed = 0

    def read(self, *, is_last: bool) -> _SegmentScan:
        if len(self.data) < fmt.HEADER_SIZE:
            return self._short_header(is_last)
        header = self._check_header()
        self.seed = fmt.nonce_seed(header.nonce)
        walk = self._walk(header.first_lsn)
        info = SegmentInfo(
            self.path,
            self.number,
            self.first_lsn,
            walk.expected - 1,
            walk.sealed,
            len(self.data),
            header.nonce,
        )
        return _SegmentScan(info, walk.frames, self._check_end(walk, is_last))

    def _walk(self, first_lsn: int) -> _Walk:
        """Read frames until the end of the file, a SEAL frame or damage."""
        walk = _Walk(frames=[], offset=fmt.HEADER_SIZE, expected=first_lsn)
        while walk.offset < len(self.data) and not walk.sealed:
            frame, walk.problem = self._frame_at(walk.offset, walk.expected, exact=True)
            if frame is None:
                break
            walk.sealed = self._accept(frame, walk.offset, walk.expected, walk.frames)
            walk.expected += frame.count
            walk.offset += fmt.FRAME_HEADER_SIZE + frame.length
        return walk

    def _check_end(self, walk: _Walk, is_last: bool) -> TornTail | None:
        """Return the torn tail after the valid frames, if any, or raise.

        The module docstring explains how a torn tail differs from corruption.
        """
        size = len(self.data)
        if walk.sealed:
            if walk.offset < size:
                detail = f"{size - walk.offset} bytes follow the SEAL frame"
                raise self._corrupt(walk.offset, detail)
            return None
        if not is_last and walk.problem is not None:
            detail = f"{walk.problem} in a segment followed by a later segment"
            raise self._corrupt(walk.offset, detail)
        if not is_last:
            detail = (
                "the segment ends without a SEAL frame, but a later segment "
                "exists. Every segment but the last is sealed, so its end was lost"
            )
            raise self._corrupt(walk.offset, detail)
        if walk.problem is None:
            return None

        later = self._find_valid_frame(walk.offset + 1, walk.expected)
        if later is not None:
            detail = (
                f"{walk.problem}, but a valid frame follows at byte {later}, so "
                "this is not a torn tail"
            )
            raise self._corrupt(walk.offset, detail)
        logger.debug(
            "%s: torn tail at byte %d (%s)", self.path, walk.offset, walk.problem
        )
        return TornTail(self.path, walk.offset, size)

    def _short_header(self, is_last: bool) -> _SegmentScan:
        size = len(self.data)
        detail = f"the header is incomplete ({size} of {fmt.HEADER_SIZE} bytes)"
        if not is_last:
            raise self._corrupt(size, detail)
        logger.debug("%s: %s, a segment cut while it was created", self.path, detail)
        info = SegmentInfo(
            self.path, self.number, self.first_lsn, self.first_lsn - 1, False, size
        )
        return _SegmentScan(info, [], TornTail(self.path, 0, size))

    def _check_header(self) -> fmt.SegmentHeader:
        data = self.data
        magic = fmt.header_magic(data)
        if magic != fmt.MAGIC:
            detail = (
                f"invalid magic {magic!r}, expected {fmt.MAGIC!r}: not a journal "
                "segment"
            )
            raise self._corrupt(0, detail)
        if not fmt.header_checksum_ok(data):
            raise self._corrupt(0, "the segment header checksum does not match")

        header = fmt.decode_header(data)
        if header.major > FORMAT_MAJOR:
            raise errors.FormatVersionError(self.path, header.major, FORMAT_MAJOR)
        if header.major < FORMAT_MAJOR:
            detail = f"format major version {header.major} is not supported"
            raise self._corrupt(8, detail)
        if header.minor > FORMAT_MINOR:
            # NOTE: FormatVersionError has no field saying which part of the
            # version it reports; here it is the minor version.
            raise errors.FormatVersionError(self.path, header.minor, FORMAT_MINOR)
        self._check_header_fields(header)
        return header

    def _check_header_fields(self, header: fmt.SegmentHeader) -> None:
        queue_id = header.queue_id.hex()
        checks = [
            (12, header.flags == 0, f"unknown segment flags {header.flags:#x}"),
            (
                56,
                header.checksum == fmt.CHECKSUM_CRC32C,
                f"unknown checksum algorithm {header.checksum}",
            ),
            (
                32,
                header.queue_id == self.queue_id,
                f"the segment belongs to queue {queue_id}, not "
                f"{self.queue_id.hex()}: it was copied from another queue",
            ),
            (
                16,
                header.number == self.number,
                f"the header has segment number {header.number}, but the file "
                f"name has {self.number}",
            ),
            (
                24,
                header.first_lsn == self.first_lsn,
                f"the header has first LSN {header.first_lsn}, but the file name "
                f"has {self.first_lsn}",
            ),
        ]
        for offset, valid, detail in checks:
            if not valid:
                raise self._corrupt(offset, detail)

    def _frame_at(
        self, offset: int, expected: int, *, exact: bool
    ) -> tuple[fmt.FrameHeader | None, str | None]:
        """Return the frame header at ``offset`` if the frame validates.

        With ``exact`` its first LSN must be ``expected``, otherwise at least
        ``expected``. An invalid frame returns None and the reason.
        """
        left = len(self.data) - offset
        if left < fmt.FRAME_HEADER_SIZE:
            return None, f"incomplete frame header ({left} bytes)"
        frame = fmt.decode_frame_header(self.data, offset)
        if frame.length > fmt.MAX_PAYLOAD:
            return None, f"payload length {frame.length} exceeds {fmt.MAX_PAYLOAD}"
        if frame.length > left - fmt.FRAME_HEADER_SIZE:
            return None, (
                f"payload length {frame.length} runs past the end of the file "
                f"({left - fmt.FRAME_HEADER_SIZE} bytes left)"
            )
        if not fmt.frame_checksum_ok(self.data, offset, frame, self.seed):
            return None, "frame checksum mismatch"
        if frame.frame_type == fmt.FRAME_INVALID:
            return None, "frame type 0 is invalid"
        if frame.first_lsn < expected or (exact and frame.first_lsn != expected):
            return (
                None,
                f"the frame starts at LSN {frame.first_lsn}, expected {expected}",
            )
        return frame, None

    def _accept(
        self, frame: fmt.FrameHeader, offset: int, expected: int, frames: list[Frame]
    ) -> bool:
        """Check a frame that validated; keep it if it is a batch.

        Returns whether the frame is a SEAL frame.
        """
        if frame.flags != 0 or frame.reserved != 0:
            detail = (
                "the frame has unknown flags set, so a newer journalq probably wrote it"
            )
            raise self._corrupt(offset, detail)
        start = offset + fmt.FRAME_HEADER_SIZE
        payload = memoryview(self.data)[start : start + frame.length]
        if frame.frame_type == fmt.FRAME_BATCH:
            frames.append(
                Frame(frame.first_lsn, frame.count, payload, self.path, offset)
            )
            return False
        if frame.frame_type == fmt.FRAME_SEAL:
            self._check_seal(frame, offset, expected, payload)
            return True
        if frame.frame_type & fmt.FRAME_IGNORABLE:
            logger.debug(
                "%s: skipped frame of type %#x at byte %d",
                self.path,
                frame.frame_type,
                offset,
            )
            return False
        detail = (
            f"unknown frame type {frame.frame_type:#x} without the "
            f"safe-to-ignore bit {fmt.FRAME_IGNORABLE:#x}, so a newer journalq "
            "probably wrote it"
        )
        raise self._corrupt(offset, detail)

    def _check_seal(
        self, frame: fmt.FrameHeader, offset: int, expected: int, payload: memoryview
    ) -> None:
        if frame.count != 0 or frame.length != fmt.SEAL_PAYLOAD_SIZE:
            raise self._corrupt(offset, "the SEAL frame has an invalid size or count")
        last_lsn, segment_crc = fmt.decode_seal(payload)
        if last_lsn != expected - 1:
            detail = (
                f"the SEAL frame records last LSN {last_lsn}, but the frames end "
                f"at LSN {expected - 1}"
            )
            raise self._corrupt(offset, detail)
        actual = fmt.mask(fmt.running_crc(memoryview(self.data)[:offset]))
        if actual != segment_crc:
            raise self._corrupt(
                offset, "the segment checksum in the SEAL frame does not match"
            )

    def _find_valid_frame(self, start: int, expected: int) -> int | None:
        for match in fmt.FRAME_CANDIDATE.finditer(self.data, start):
            frame, _ = self._frame_at(match.start(), expected, exact=False)
            if frame is not None:
                return match.start()
        return None

    def _corrupt(self, offset: int, detail: str) -> errors.CorruptionError:
        return errors.CorruptionError(self.path, offset, detail, self.queue_dir)
