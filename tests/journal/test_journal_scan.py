"""Scan: the corruption catalogue, one test per failure shape.

Every journal here is written by the real writer into ``tmp_path`` and then
damaged the way the test names.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from journal_helpers import (
    OTHER_QUEUE_ID,
    QUEUE_ID,
    all_records,
    frame_spans,
    load_image,
    make_batches,
    replace_header,
    replay,
    store_image,
    write_journal,
)

from journalq import errors
from journalq.journal import format as fmt
from journalq.journal import scan
from journalq.records import FORMAT_MAJOR, FORMAT_MINOR

SIZES = [3, 1, 4, 1, 5, 2, 6, 5, 3, 5]
SMALL_SEGMENTS = fmt.HEADER_SIZE + 400


@pytest.fixture
def three_segments(journal_dir: Path) -> Path:
    """A journal of three segments: two sealed, the last one active."""
    write_journal(journal_dir, make_batches(SIZES), segment_bytes=SMALL_SEGMENTS)
    assert len(load_image(journal_dir)) == 3
    return journal_dir


def segment_paths(directory: Path) -> list[Path]:
    return [directory / name for name, _ in load_image(directory)]


def test_scan_missing_directory(tmp_path: Path) -> None:
    result = scan(tmp_path / "absent", QUEUE_ID)
    assert result.frames == []
    assert result.next_lsn == 1
    assert result.torn_tail is None
    assert result.segments == []


def test_scan_empty_directory(journal_dir: Path) -> None:
    journal_dir.mkdir(parents=True)
    result = scan(journal_dir, QUEUE_ID)
    assert result.frames == []
    assert result.next_lsn == 1
    assert result.segments == []


def test_scan_empty_directory_after_snapshot(journal_dir: Path) -> None:
    journal_dir.mkdir(parents=True)
    assert scan(journal_dir, QUEUE_ID, after_lsn=41).next_lsn == 42


def test_scan_clean_journal(three_segments: Path) -> None:
    result = scan(three_segments, QUEUE_ID)
    assert replay(result) == all_records(make_batches(SIZES))
    assert result.next_lsn == sum(SIZES) + 1
    assert result.torn_tail is None
    assert [s.sealed for s in result.segments] == [True, True, False]
    assert [s.number for s in result.segments] == [1, 2, 3]
    for before, after in zip(result.segments, result.segments[1:], strict=False):
        assert after.first_lsn == before.last_lsn + 1


def test_scan_never_changes_files(three_segments: Path) -> None:
    last = segment_paths(three_segments)[-1]
    with last.open("ab") as file:
        file.write(b"\x00" * 50)
    before = {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in segment_paths(three_segments)
    }
    result = scan(three_segments, QUEUE_ID)
    after = {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in segment_paths(three_segments)
    }
    assert result.torn_tail is not None
    assert before == after


def test_scan_rejects_short_queue_id(three_segments: Path) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        scan(three_segments, b"short")


def test_empty_last_segment_is_torn_tail(journal_dir: Path) -> None:
    journal_dir.mkdir(parents=True)
    path = journal_dir / fmt.segment_name(1, 1)
    path.write_bytes(b"")
    result = scan(journal_dir, QUEUE_ID)
    assert result.torn_tail is not None
    assert result.torn_tail.path == str(path)
    assert result.torn_tail.valid_end == 0
    assert result.next_lsn == 1


def test_partial_header_of_last_segment_is_torn_tail(three_segments: Path) -> None:
    image = load_image(three_segments)
    name, data = image[-1]
    store_image(three_segments, [*image[:-1], (name, data[:30])])
    result = scan(three_segments, QUEUE_ID)
    assert result.torn_tail is not None
    assert result.torn_tail.valid_end == 0
    assert result.torn_tail.size == 30
    assert result.next_lsn == result.segments[-1].first_lsn


def test_partial_header_before_last_segment_is_corruption(three_segments: Path) -> None:
    image = load_image(three_segments)
    name, data = image[1]
    store_image(three_segments, [image[0], (name, data[:30]), image[2]])
    with pytest.raises(errors.CorruptionError, match="header is incomplete") as info:
        scan(three_segments, QUEUE_ID)
    assert info.value.path == str(three_segments / name)


def test_bad_magic_is_corruption(three_segments: Path) -> None:
    first = segment_paths(three_segments)[0]
    first.write_bytes(b"NOTAJRNL" + first.read_bytes()[8:])
    with pytest.raises(errors.CorruptionError, match="invalid magic") as info:
        scan(three_segments, QUEUE_ID)
    assert info.value.path == str(first)
    assert info.value.offset == 0


def test_header_checksum_mismatch_is_corruption(three_segments: Path) -> None:
    last = segment_paths(three_segments)[-1]
    data = bytearray(last.read_bytes())
    data[40] ^= 0x10
    last.write_bytes(bytes(data))
    with pytest.raises(errors.CorruptionError, match="header checksum") as info:
        scan(three_segments, QUEUE_ID)
    assert info.value.path == str(last)


def test_newer_major_version_is_rejected(three_segments: Path) -> None:
    first = segment_paths(three_segments)[0]
    first.write_bytes(replace_header(first.read_bytes(), major=FORMAT_MAJOR + 1))
    with pytest.raises(errors.FormatVersionError) as info:
        scan(three_segments, QUEUE_ID)
    assert info.value.found == FORMAT_MAJOR + 1
    assert info.value.supported == FORMAT_MAJOR
    assert info.value.path == str(first)


def test_newer_minor_version_is_rejected(three_segments: Path) -> None:
    last = segment_paths(three_segments)[-1]
    last.write_bytes(replace_header(last.read_bytes(), minor=FORMAT_MINOR + 1))
    with pytest.raises(errors.FormatVersionError) as info:
        scan(three_segments, QUEUE_ID)
    assert info.value.found == FORMAT_MINOR + 1


def test_older_major_version_is_corruption(three_segments: Path) -> None:
    first = segment_paths(three_segments)[0]
    first.write_bytes(replace_header(first.read_bytes(), major=0))
    with pytest.raises(errors.CorruptionError, match="major version 0"):
        scan(three_segments, QUEUE_ID)


@pytest.mark.parametrize(
    ("field", "value", "offset"),
    [("flags", 1, 12), ("checksum", 9, 56), ("number", 5, 16), ("first_lsn", 77, 24)],
)
def test_header_field_mismatch_is_corruption(
    three_segments: Path, field: str, value: int, offset: int
) -> None:
    second = segment_paths(three_segments)[1]
    second.write_bytes(replace_header(second.read_bytes(), **{field: value}))
    with pytest.raises(errors.CorruptionError) as info:
        scan(three_segments, QUEUE_ID)
    assert info.value.path == str(second)
    assert info.value.offset == offset


def test_foreign_queue_id_is_corruption(three_segments: Path) -> None:
    second = segment_paths(three_segments)[1]
    second.write_bytes(replace_header(second.read_bytes(), queue_id=OTHER_QUEUE_ID))
    with pytest.raises(errors.CorruptionError, match="another queue") as info:
        scan(three_segments, QUEUE_ID)
    assert info.value.path == str(second)
    assert info.value.offset == 32


def test_whole_journal_of_another_queue_is_corruption(three_segments: Path) -> None:
    with pytest.raises(errors.CorruptionError, match="another queue"):
        scan(three_segments, OTHER_QUEUE_ID)


def test_middle_segment_deleted_is_corruption(three_segments: Path) -> None:
    paths = segment_paths(three_segments)
    paths[1].unlink()
    with pytest.raises(errors.CorruptionError, match="a segment is missing") as info:
        scan(three_segments, QUEUE_ID)
    assert info.value.path == str(paths[2])
    assert info.value.offset == 0


def test_sealed_segment_cut_at_frame_boundary(three_segments: Path) -> None:
    image = load_image(three_segments)
    spans = [s for s in frame_spans(image) if s.segment == 0]
    batches = [s for s in spans if s.frame_type == fmt.FRAME_BATCH]
    cut = batches[-1].start  # drop the last batch and the SEAL frame
    name, data = image[0]
    store_image(three_segments, [(name, data[:cut]), *image[1:]])
    with pytest.raises(errors.CorruptionError, match="without a SEAL frame") as info:
        scan(three_segments, QUEUE_ID)
    assert info.value.path == str(three_segments / name)
    assert info.value.offset == cut


def test_sealed_segment_without_seal_frame(three_segments: Path) -> None:
    image = load_image(three_segments)
    seal = next(s for s in frame_spans(image) if s.frame_type == fmt.FRAME_SEAL)
    name, data = image[seal.segment]
    image[seal.segment] = (name, data[: seal.start])
    store_image(three_segments, image)
    with pytest.raises(errors.CorruptionError, match="without a SEAL frame"):
        scan(three_segments, QUEUE_ID)


def test_bytes_after_seal_are_corruption(three_segments: Path) -> None:
    first = segment_paths(three_segments)[0]
    with first.open("ab") as file:
        file.write(b"\x00")
    with pytest.raises(errors.CorruptionError, match="follow the SEAL frame") as info:
        scan(three_segments, QUEUE_ID)
    assert info.value.offset == first.stat().st_size - 1


def test_duplicated_segment_is_corruption(three_segments: Path) -> None:
    image = load_image(three_segments)
    name, data = image[1]
    number, first_lsn = fmt.parse_segment_name(name) or (0, 0)
    copy = fmt.segment_name(number, first_lsn + 1)  # sorts right after it
    store_image(three_segments, [*image, (copy, data)])
    with pytest.raises(errors.CorruptionError, match="duplicated") as info:
        scan(three_segments, QUEUE_ID)
    assert info.value.path == str(three_segments / copy)


def test_swapped_segments_are_corruption(three_segments: Path) -> None:
    image = load_image(three_segments)
    (first, first_data), (second, second_data) = image[0], image[1]
    store_image(three_segments, [(first, second_data), (second, first_data), image[2]])
    with pytest.raises(errors.CorruptionError, match="the file name") as info:
        scan(three_segments, QUEUE_ID)
    assert info.value.path == str(three_segments / first)


def test_unparsable_segment_name_is_corruption(three_segments: Path) -> None:
    (three_segments / "stray.jq").write_bytes(b"")
    with pytest.raises(errors.CorruptionError, match="file name"):
        scan(three_segments, QUEUE_ID)


def test_other_files_are_ignored(three_segments: Path) -> None:
    (three_segments / "notes.txt").write_text("not a segment")
    (three_segments / (fmt.segment_name(9, 99) + ".tmp")).write_bytes(b"\x00" * 10)
    assert scan(three_segments, QUEUE_ID).torn_tail is None


def test_segments_deleted_behind_snapshot(three_segments: Path) -> None:
    result = scan(three_segments, QUEUE_ID)
    first = result.segments[0]
    Path(first.path).unlink()
    with pytest.raises(errors.CorruptionError, match="are missing"):
        scan(three_segments, QUEUE_ID)

    after = scan(three_segments, QUEUE_ID, after_lsn=first.last_lsn)
    expected = all_records(make_batches(SIZES))[first.last_lsn :]
    assert replay(after, first.last_lsn) == expected
    assert all(f.last_lsn > first.last_lsn for f in after.frames)
    assert after.next_lsn == result.next_lsn


def test_missing_segment_above_snapshot(three_segments: Path) -> None:
    result = scan(three_segments, QUEUE_ID)
    for segment in result.segments[:2]:
        Path(segment.path).unlink()
    with pytest.raises(errors.CorruptionError, match="are missing") as info:
        scan(three_segments, QUEUE_ID, after_lsn=result.segments[0].last_lsn)
    assert info.value.path == result.segments[2].path


def test_after_lsn_filters_frames(three_segments: Path) -> None:
    result = scan(three_segments, QUEUE_ID, after_lsn=5)
    assert result.frames[0].first_lsn <= 6 <= result.frames[0].last_lsn
    assert replay(result, 5) == all_records(make_batches(SIZES))[5:]


def _append_raw_frame(path: Path, frame_type: int, count: int, flags: int = 0) -> None:
    data = path.read_bytes()
    result = scan(path.parent, QUEUE_ID)
    seed = fmt.nonce_seed(fmt.decode_header(data).nonce)
    frame = bytearray(
        fmt.encode_frame(seed, frame_type, result.next_lsn, count, b"\x90")
    )
    if flags:
        frame[9] = flags
        crc = fmt.running_crc(bytes(frame[4:]), seed)
        frame[:4] = fmt.mask(crc).to_bytes(4, "little")
    with path.open("ab") as file:
        file.write(bytes(frame))


def test_ignorable_frame_type_is_skipped(three_segments: Path) -> None:
    last = segment_paths(three_segments)[-1]
    before = scan(three_segments, QUEUE_ID)
    _append_raw_frame(last, fmt.FRAME_IGNORABLE | 0x05, count=2)
    after = scan(three_segments, QUEUE_ID)
    assert after.torn_tail is None
    assert len(after.frames) == len(before.frames)
    assert after.next_lsn == before.next_lsn + 2


def test_unknown_frame_type_is_rejected(three_segments: Path) -> None:
    last = segment_paths(three_segments)[-1]
    size = last.stat().st_size
    _append_raw_frame(last, 0x05, count=1)
    with pytest.raises(errors.CorruptionError, match="unknown frame type") as info:
        scan(three_segments, QUEUE_ID)
    assert info.value.offset == size


def test_unknown_frame_flags_are_rejected(three_segments: Path) -> None:
    last = segment_paths(three_segments)[-1]
    _append_raw_frame(last, fmt.FRAME_BATCH, count=1, flags=0x01)
    with pytest.raises(errors.CorruptionError, match="unknown flags"):
        scan(three_segments, QUEUE_ID)


def test_corruption_message_names_queue_and_fix(three_segments: Path) -> None:
    first = segment_paths(three_segments)[0]
    first.write_bytes(b"NOTAJRNL" + first.read_bytes()[8:])
    queue_dir = str(three_segments.parent)
    with pytest.raises(errors.CorruptionError) as info:
        scan(three_segments, QUEUE_ID, queue_dir=queue_dir)
    message = str(info.value)
    assert str(first) in message
    assert "byte 0" in message
    assert f"--queue {queue_dir} --truncate-at-corruption" in message


def test_segment_files_are_private(three_segments: Path) -> None:
    for path in segment_paths(three_segments):
        assert os.stat(path).st_mode & 0o077 == 0


def test_journal_ending_before_snapshot(three_segments: Path) -> None:
    result = scan(three_segments, QUEUE_ID, after_lsn=1000)
    assert result.frames == []
    assert result.next_lsn == sum(SIZES) + 1
