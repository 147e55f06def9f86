"""Damage at every byte: truncations, garbage tails and flipped bytes.

One small journal (three segments, about 1.5 KiB) is written by the real
writer. Every test stores damaged copies of it into one directory and scans
them, so each case costs a few file writes.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from journal_helpers import (
    QUEUE_ID,
    FrameSpan,
    Image,
    all_records,
    cut_image,
    frame_spans,
    load_image,
    make_batches,
    records_before,
    replay,
    store_image,
    write_journal,
)

from journalq import errors, records
from journalq.journal import Journal, scan
from journalq.journal import format as fmt

SIZES = [2, 1, 3, 1, 2, 4, 1, 2, 3, 1, 1, 2, 1]
SEGMENT_BYTES = fmt.HEADER_SIZE + 240


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Image:
    directory = tmp_path_factory.mktemp("written") / "journal"
    write_journal(directory, make_batches(SIZES), segment_bytes=SEGMENT_BYTES)
    image = load_image(directory)
    assert len(image) == 3
    return image


@pytest.fixture(scope="module")
def spans(written: Image) -> list[FrameSpan]:
    return frame_spans(written)


WRITTEN = all_records(make_batches(SIZES))


def assert_prefix(recovered: list[records.Record], at_least: int) -> None:
    assert recovered == WRITTEN[: len(recovered)]
    assert len(recovered) >= at_least


def test_truncation_at_every_offset(
    written: Image, spans: list[FrameSpan], tmp_path: Path
) -> None:
    total = sum(len(data) for _, data in written)
    for offset in range(total + 1):
        image, _, _ = cut_image(written, offset)
        store_image(tmp_path, image)
        result = scan(tmp_path, QUEUE_ID)
        recovered = replay(result)
        # The bytes after the cut are gone, so exactly the frames that end
        # before it survive.
        assert len(recovered) == records_before(spans, offset), offset
        assert_prefix(recovered, records_before(spans, offset))
        assert result.next_lsn == len(recovered) + 1, offset


def test_append_after_truncation_recovers_cleanly(
    written: Image, spans: list[FrameSpan], tmp_path: Path
) -> None:
    total = sum(len(data) for _, data in written)
    directory = tmp_path / "journal"
    for offset in range(total + 1):
        image, _, _ = cut_image(written, offset)
        store_image(directory, image)
        first = scan(directory, QUEUE_ID)
        extra = [records.Started(action_id="after-repair", attempt=offset)]
        with Journal.open(
            directory, QUEUE_ID, first, encode_batch=records.encode_batch, sync="none"
        ) as journal:
            lsn = journal.append(extra, durable=True)

        second = scan(directory, QUEUE_ID)
        assert second.torn_tail is None, offset
        assert replay(second) == [*replay(first), *extra], offset
        assert lsn == first.next_lsn
        for path in directory.glob("*.jq"):
            path.unlink()


def _fill(kind: str, length: int, written: Image, segment: int) -> bytes:
    if kind == "zeros":
        return b"\x00" * length
    if kind == "ones":
        return b"\xff" * length
    if kind == "random":
        return random.Random(length).randbytes(length)
    # Bytes of complete frames from another segment: stale blocks of another
    # file, the garbage a crash can really leave. Their nonce differs, so
    # none of them validates here.
    other = written[(segment + 1) % len(written)][1][fmt.HEADER_SIZE :]
    return (other * (length // len(other) + 1))[:length]


@pytest.mark.parametrize("kind", ["zeros", "ones", "random", "other frames"])
def test_garbage_tail_is_torn_tail(
    written: Image, spans: list[FrameSpan], tmp_path: Path, kind: str
) -> None:
    """A crash may leave any bytes after the last synced frame: a file's
    size can become durable before its data. Cuts start after the header,
    because a segment becomes visible only once its header is synced."""
    base = 0
    for segment, (name, data) in enumerate(written):
        for local in range(fmt.HEADER_SIZE, len(data)):
            fill = _fill(kind, len(data) - local, written, segment)
            image = [*written[:segment], (name, data[:local] + fill)]
            store_image(tmp_path, image)
            result = scan(tmp_path, QUEUE_ID)
            acknowledged = records_before(spans, base + local)
            assert_prefix(replay(result), acknowledged)
            if result.torn_tail is None:
                # The garbage recreated the cut bytes exactly: the complete
                # but unacknowledged frame may survive.
                assert data[local:] == fill, (segment, local)
        base += len(data)


def test_later_frame_at_boundary_is_torn_tail(
    written: Image, spans: list[FrameSpan], tmp_path: Path
) -> None:
    """A complete frame of the same segment placed at a frame boundary has
    the wrong LSN there, and nothing valid follows it: a torn tail."""
    last = len(written) - 1
    name, data = written[last]
    frames = [s for s in spans if s.segment == last]
    for index in range(len(frames) - 1):
        boundary = frames[index].start
        later = frames[index + 1]
        image = [
            *written[:last],
            (name, data[:boundary] + data[later.start : later.end]),
        ]
        store_image(tmp_path, image)
        result = scan(tmp_path, QUEUE_ID)
        assert result.torn_tail is not None
        assert result.torn_tail.valid_end == boundary
        assert result.next_lsn == frames[index].first_lsn


def _flipped(data: bytes, offset: int) -> bytes:
    damaged = bytearray(data)
    damaged[offset] ^= 0xFF
    return bytes(damaged)


def test_flip_in_active_segment_frames(
    written: Image, spans: list[FrameSpan], tmp_path: Path
) -> None:
    last = len(written) - 1
    name, data = written[last]
    frames = [s for s in spans if s.segment == last]
    assert len(frames) >= 3
    path = str(tmp_path / name)
    for index, frame in enumerate(frames):
        final = index == len(frames) - 1
        for offset in range(frame.start, frame.end):
            store_image(tmp_path, [*written[:last], (name, _flipped(data, offset))])
            if final:
                result = scan(tmp_path, QUEUE_ID)
                assert result.torn_tail is not None, offset
                assert result.torn_tail.valid_end == frame.start
                assert result.next_lsn == frame.first_lsn
                continue
            with pytest.raises(errors.CorruptionError) as info:
                scan(tmp_path, QUEUE_ID)
            assert info.value.path == path
            assert info.value.offset == frame.start, offset


def test_flip_in_sealed_segments(
    written: Image, spans: list[FrameSpan], tmp_path: Path
) -> None:
    for segment, (name, data) in enumerate(written[:-1]):
        starts = [s.start for s in spans if s.segment == segment]
        for offset in range(len(data)):
            image = list(written)
            image[segment] = (name, _flipped(data, offset))
            store_image(tmp_path, image)
            with pytest.raises(errors.CorruptionError) as info:
                scan(tmp_path, QUEUE_ID)
            assert info.value.path == str(tmp_path / name)
            if offset < fmt.HEADER_SIZE:
                assert info.value.offset < fmt.HEADER_SIZE
            else:
                damaged = max(s for s in starts if s <= offset)
                assert info.value.offset == damaged, offset


def test_flip_in_active_segment_header(written: Image, tmp_path: Path) -> None:
    name, data = written[-1]
    for offset in range(fmt.HEADER_SIZE):
        store_image(tmp_path, [*written[:-1], (name, _flipped(data, offset))])
        with pytest.raises(errors.CorruptionError) as info:
            scan(tmp_path, QUEUE_ID)
        assert info.value.path == str(tmp_path / name)
