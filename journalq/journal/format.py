"""Byte layout of journal segments: names, headers and frames.

Everything here works on bytes alone; reading files and classifying damage
is :mod:`journalq.journal.reader`'s job. All integers are little-endian.

Segment files are named ``<segment number:016x>-<first LSN:016x>.jq`` and are
``<name>.tmp`` while they are being created. Numbers start at 1 and only grow,
so a segment file is never reused. No space is preallocated: a zero byte in a
segment is never padding, which is what lets a reader tell a torn write from
the end of the log.

Segment header, :data:`HEADER_SIZE` bytes, written and synced before the file
gets its final name::

    0   8 B  magic, MAGIC
    8   u16  format major version
    10  u16  format minor version
    12  u32  flags, none defined, 0
    16  u64  segment number, equal to the one in the file name
    24  u64  first LSN, equal to the one in the file name
    32  16 B queue id
    48  8 B  nonce, random per segment
    56  u8   checksum algorithm, CHECKSUM_CRC32C
    57  3 B  zero
    60  u32  masked CRC32C of bytes [0, 60)

A frame follows the header, or the previous frame, with no alignment padding
(padding outside the checksum would let flipped bytes pass unnoticed)::

    0   u32  masked CRC32C of the nonce followed by bytes [4, 24 + length)
    4   u32  payload length, at most MAX_PAYLOAD
    8   u8   frame type: FRAME_BATCH, FRAME_SEAL; 0 is invalid
    9   u8   flags, none defined, 0
    10  u16  reserved, 0
    12  u32  record count
    16  u64  first LSN of the frame's records
    24  ...  payload

A BATCH frame carries one group commit: ``count`` records with the LSNs
``first_lsn .. first_lsn + count - 1``, encoded by the caller as one payload.
LSNs are dense across frames and segments: each frame starts where the
previous one ended. A SEAL frame ends a segment that will get no more frames.
Its count is 0, its first LSN is the next LSN, and its payload is the last LSN
of the segment (u64) and the masked CRC32C of every segment byte before the
SEAL frame (u32).

A reader skips a frame of an unknown type when the type has the bit
:data:`FRAME_IGNORABLE` set, but the frame's records still use up their
LSNs. An unknown type without that bit is rejected.

Checksums are CRC32C (Castagnoli), stored masked as LevelDB does (rotate right
by 15 bits, add 0xA282EAD8), because a CRC computed over data that contains
CRCs is weak. The frame CRC covers length, type, count and LSN, not only the
payload. Starting it from the segment's nonce means a frame copied from
another segment or another journal, or embedded in a payload, never validates.
"""

from __future__ import annotations

import re
import struct
from typing import Final

import crc32c
import msgspec

MAGIC: Final = b"JOURNALQ"
SUFFIX: Final = ".jq"
TEMPORARY_SUFFIX: Final = ".jq.tmp"

HEADER_SIZE: Final = 64
FRAME_HEADER_SIZE: Final = 24
#: Largest payload of one frame. A length field above it is damage, checked
#: before anything is allocated. The writer splits batches to stay below it.
MAX_PAYLOAD: Final = 16 * 1024 * 1024

CHECKSUM_CRC32C: Final = 1

FRAME_INVALID: Final = 0
FRAME_BATCH: Final = 1
FRAME_SEAL: Final = 2
FRAME_IGNORABLE: Final = 0x80

_HEADER = struct.Struct("<8sHHIQQ16s8sB3x")
_HEADER_CRC = struct.Struct("<I")
_FRAME = struct.Struct("<IIBBHIQ")
_SEAL = struct.Struct("<QI")
SEAL_PAYLOAD_SIZE: Final = _SEAL.size

_MASK_DELTA: Final = 0xA282EAD8
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.jq$")

#: Matches wherever a frame header could start: a known or ignorable type
#: followed by the zero reserved field. Used to resynchronise after damage
#: without a Python-level loop over every byte offset.
FRAME_CANDIDATE: Final = re.compile(rb"(?=.{8}[\x01\x02\x80-\xff].\x00\x00)", re.DOTALL)


class SegmentHeader(msgspec.Struct, frozen=True):
    """The fields of a segment header."""

    major: int
    minor: int
    flags: int
    number: int
    first_lsn: int
    queue_id: bytes
    nonce: bytes
    checksum: int


class FrameHeader(msgspec.Struct, frozen=True):
    """The fields of a frame header; ``checksum`` is the stored, masked CRC."""

    checksum: int
    length: int
    frame_type: int
    flags: int
    reserved: int
    count: int
    first_lsn: int


def mask(crc: int) -> int:
    """Mask a CRC32C for storage (rotate right 15 bits, add a constant)."""
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    return (rotated + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    """Invert :func:`mask`."""
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


def segment_name(number: int, first_lsn: int) -> str:
    """Return the file name of segment ``number`` starting at ``first_lsn``."""
    return f"{number:016x}-{first_lsn:016x}{SUFFIX}"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """Return (segment number, first LSN) of a segment file name, else None."""
    match = _NAME.match(name)
    if match is None:
        return None
    return int(match.group(1), 16), int(match.group(2), 16)


def encode_header(header: SegmentHeader) -> bytes:
    """Encode a segment header, checksum included."""
    body = _HEADER.pack(
        MAGIC,
        header.major,
        header.minor,
        header.flags,
        header.number,
        header.first_lsn,
        header.queue_id,
        header.nonce,
        header.checksum,
    )
    return body + _HEADER_CRC.pack(mask(crc32c.crc32c(body)))


def decode_header(data: bytes | memoryview) -> SegmentHeader:
    """Decode the first HEADER_SIZE bytes of ``data``; nothing is validated."""
    fields = _HEADER.unpack_from(data)
    return SegmentHeader(*fields[1:])


def header_magic(data: bytes | memoryview) -> bytes:
    """Return the magic bytes at the start of a header."""
    return bytes(data[: len(MAGIC)])


def header_checksum_ok(data: bytes | memoryview) -> bool:
    """Return whether the header CRC matches the other header bytes."""
    (stored,) = _HEADER_CRC.unpack_from(data, _HEADER.size)
    return mask(crc32c.crc32c(data[: _HEADER.size])) == stored


def nonce_seed(nonce: bytes) -> int:
    """Return the CRC state every frame checksum of a segment starts from."""
    return crc32c.crc32c(nonce)


def encode_frame(
    seed: int, frame_type: int, first_lsn: int, count: int, payload: bytes
) -> bytes:
    """Encode one frame: its 24-byte header followed by ``payload``."""
    tail = _FRAME.pack(0, len(payload), frame_type, 0, 0, count, first_lsn)[4:]
    crc = crc32c.crc32c(payload, crc32c.crc32c(tail, seed))
    return _HEADER_CRC.pack(mask(crc)) + tail + payload


def decode_frame_header(data: bytes | memoryview, offset: int) -> FrameHeader:
    """Decode the frame header at ``offset``; the caller checks the bounds."""
    return FrameHeader(*_FRAME.unpack_from(data, offset))


def frame_checksum_ok(
    data: bytes | memoryview, offset: int, header: FrameHeader, seed: int
) -> bool:
    """Return whether the frame at ``offset`` matches its stored CRC.

    The frame's payload must lie within ``data``.
    """
    end = offset + FRAME_HEADER_SIZE + header.length
    crc = crc32c.crc32c(memoryview(data)[offset + 4 : end], seed)
    return mask(crc) == header.checksum


def encode_seal(last_lsn: int, segment_crc: int) -> bytes:
    """Encode a SEAL payload; ``segment_crc`` is the unmasked running CRC."""
    return _SEAL.pack(last_lsn, mask(segment_crc))


def decode_seal(payload: bytes | memoryview) -> tuple[int, int]:
    """Return (last LSN, masked segment CRC) of a SEAL payload."""
    return _SEAL.unpack_from(payload)


def running_crc(data: bytes | memoryview, crc: int = 0) -> int:
    """Continue the unmasked CRC32C ``crc`` over ``data``."""
    return crc32c.crc32c(data, crc)
