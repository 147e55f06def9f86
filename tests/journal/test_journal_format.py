"""Byte layout: names, headers, frames and checksums, on bytes alone."""

from __future__ import annotations

import subprocess
import sys

import crc32c
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journalq.journal import format as fmt
from journalq.records import FORMAT_MAJOR, FORMAT_MINOR

NONCE = bytes(range(8))


def sample_header(**changes: object) -> fmt.SegmentHeader:
    fields: dict[str, object] = {
        "major": FORMAT_MAJOR,
        "minor": FORMAT_MINOR,
        "flags": 0,
        "number": 7,
        "first_lsn": 1234,
        "queue_id": bytes(range(16)),
        "nonce": NONCE,
        "checksum": fmt.CHECKSUM_CRC32C,
    }
    fields.update(changes)
    return fmt.SegmentHeader(**fields)  # type: ignore[arg-type]


def test_segment_name_round_trip() -> None:
    name = fmt.segment_name(3, 0x1F)
    assert name == "0000000000000003-000000000000001f.jq"
    assert fmt.parse_segment_name(name) == (3, 0x1F)


@pytest.mark.parametrize(
    "name",
    [
        "3-1f.jq",
        "0000000000000003-000000000000001f.jq.tmp",
        "0000000000000003-000000000000001F.jq",
        "0000000000000003_000000000000001f.jq",
    ],
)
def test_segment_name_rejects_other_names(name: str) -> None:
    assert fmt.parse_segment_name(name) is None


def test_header_is_64_bytes_and_round_trips() -> None:
    header = sample_header()
    encoded = fmt.encode_header(header)
    assert len(encoded) == fmt.HEADER_SIZE
    assert encoded.startswith(fmt.MAGIC)
    assert fmt.header_checksum_ok(encoded)
    assert fmt.decode_header(encoded) == header


def test_header_checksum_covers_every_byte() -> None:
    encoded = fmt.encode_header(sample_header())
    for offset in range(fmt.HEADER_SIZE):
        damaged = bytearray(encoded)
        damaged[offset] ^= 0x01
        assert not fmt.header_checksum_ok(bytes(damaged)), offset


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_mask_inverts(crc: int) -> None:
    assert fmt.unmask(fmt.mask(crc)) == crc


def test_mask_changes_the_crc() -> None:
    crc = crc32c.crc32c(b"journalq")
    assert fmt.mask(crc) != crc


def test_frame_layout_and_checksum() -> None:
    seed = fmt.nonce_seed(NONCE)
    frame = fmt.encode_frame(seed, fmt.FRAME_BATCH, 41, 3, b"payload")
    assert len(frame) == fmt.FRAME_HEADER_SIZE + len(b"payload")

    header = fmt.decode_frame_header(frame, 0)
    assert header.length == len(b"payload")
    assert header.frame_type == fmt.FRAME_BATCH
    assert header.flags == 0
    assert header.reserved == 0
    assert header.count == 3
    assert header.first_lsn == 41
    assert frame[fmt.FRAME_HEADER_SIZE :] == b"payload"
    assert fmt.frame_checksum_ok(frame, 0, header, seed)


def test_frame_checksum_depends_on_the_nonce() -> None:
    frame = fmt.encode_frame(fmt.nonce_seed(NONCE), fmt.FRAME_BATCH, 1, 1, b"x")
    header = fmt.decode_frame_header(frame, 0)
    other = fmt.nonce_seed(bytes(8))
    assert not fmt.frame_checksum_ok(frame, 0, header, other)


def test_frame_checksum_covers_header_and_payload() -> None:
    seed = fmt.nonce_seed(NONCE)
    frame = fmt.encode_frame(seed, fmt.FRAME_BATCH, 9, 2, b"abcdef")
    for offset in range(len(frame)):
        damaged = bytearray(frame)
        damaged[offset] ^= 0x80
        header = fmt.decode_frame_header(damaged, 0)
        if header.length != 6:
            continue  # a changed length is caught by the bounds check
        assert not fmt.frame_checksum_ok(damaged, 0, header, seed), offset


def test_seal_payload_round_trip() -> None:
    payload = fmt.encode_seal(99, 0xDEADBEEF)
    assert len(payload) == fmt.SEAL_PAYLOAD_SIZE
    assert fmt.decode_seal(payload) == (99, fmt.mask(0xDEADBEEF))


def test_frame_candidate_finds_frame_starts() -> None:
    seed = fmt.nonce_seed(NONCE)
    frame = fmt.encode_frame(seed, fmt.FRAME_BATCH, 5, 1, b"\x00" * 30)
    data = b"\x00" * 17 + frame + b"\xff" * 40
    starts = [m.start() for m in fmt.FRAME_CANDIDATE.finditer(data)]
    assert 17 in starts


def test_journal_imports_neither_fsspec_nor_filelock() -> None:
    # The package facade may import fsspec for the queue, so the journal is
    # loaded under a bare ``journalq`` package that skips the facade.
    code = """
import importlib.util, sys, types
bare = types.ModuleType("journalq")
bare.__path__ = importlib.util.find_spec("journalq").submodule_search_locations
sys.modules["journalq"] = bare
import journalq.journal
print(sorted(m for m in ("fsspec", "filelock") if m in sys.modules))
"""
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]"
