"""Offline repair: back up, cut at the first corruption, scan succeeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from journal_helpers import (
    OTHER_QUEUE_ID,
    QUEUE_ID,
    Image,
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
from journalq.journal import repair, scan
from journalq.records import FORMAT_MAJOR

SIZES = [3, 1, 4, 1, 5, 2, 6, 5, 3, 5, 2, 2]
WRITTEN = all_records(make_batches(SIZES))


@pytest.fixture
def image(journal_dir: Path) -> Image:
    write_journal(journal_dir, make_batches(SIZES), segment_bytes=fmt.HEADER_SIZE + 400)
    written = load_image(journal_dir)
    assert len(written) >= 3
    return written


def _flip(data: bytes, offset: int) -> bytes:
    damaged = bytearray(data)
    damaged[offset] ^= 0xFF
    return bytes(damaged)


def flip_active_frame(image: Image) -> tuple[Image, int]:
    """Flip a byte of the first frame of the active segment."""
    last = len(image) - 1
    frame = next(s for s in frame_spans(image) if s.segment == last)
    name, data = image[last]
    return [*image[:last], (name, _flip(data, frame.start + 30))], frame.first_lsn - 1


def flip_sealed_frame(image: Image) -> tuple[Image, int]:
    """Flip a byte of the second frame of the first segment."""
    frame = [s for s in frame_spans(image) if s.segment == 0][1]
    name, data = image[0]
    return [(name, _flip(data, frame.start + 5)), *image[1:]], frame.first_lsn - 1


def delete_middle_segment(image: Image) -> tuple[Image, int]:
    last_lsn = max(
        s.first_lsn + s.count - 1 for s in frame_spans(image) if s.segment == 0
    )
    return [image[0], *image[2:]], last_lsn


def cut_sealed_at_boundary(image: Image) -> tuple[Image, int]:
    batches = [
        s
        for s in frame_spans(image)
        if s.segment == 0 and s.frame_type == fmt.FRAME_BATCH
    ]
    name, data = image[0]
    return [(name, data[: batches[-1].start]), *image[1:]], batches[-1].first_lsn - 1


def foreign_segment(image: Image) -> tuple[Image, int]:
    name, data = image[1]
    kept = max(s.first_lsn + s.count - 1 for s in frame_spans(image) if s.segment == 0)
    return [
        image[0],
        (name, replace_header(data, queue_id=OTHER_QUEUE_ID)),
        *image[2:],
    ], kept


def bad_magic_first(image: Image) -> tuple[Image, int]:
    name, data = image[0]
    return [(name, b"NOTAJRNL" + data[8:]), *image[1:]], 0


def duplicated_segment(image: Image) -> tuple[Image, int]:
    name, data = image[1]
    number, first_lsn = fmt.parse_segment_name(name) or (0, 0)
    copy = (fmt.segment_name(number, first_lsn + 1), data)
    kept = max(s.first_lsn + s.count - 1 for s in frame_spans(image) if s.segment == 1)
    return [*image[:2], copy, *image[2:]], kept


SHAPES: dict[str, Callable[[Image], tuple[Image, int]]] = {
    "flip in active frame": flip_active_frame,
    "flip in sealed frame": flip_sealed_frame,
    "middle segment deleted": delete_middle_segment,
    "sealed segment cut at frame boundary": cut_sealed_at_boundary,
    "foreign queue id": foreign_segment,
    "bad magic": bad_magic_first,
    "duplicated segment": duplicated_segment,
}


@pytest.mark.parametrize("shape", SHAPES)
def test_repair_each_corruption_shape(
    journal_dir: Path, image: Image, tmp_path: Path, shape: str
) -> None:
    damaged, kept = SHAPES[shape](image)
    store_image(journal_dir, damaged)
    with pytest.raises(errors.CorruptionError) as info:
        scan(journal_dir, QUEUE_ID)
    originals = dict(load_image(journal_dir))

    backup_dir = tmp_path / "backup"
    report = repair(journal_dir, QUEUE_ID, backup_dir)

    assert report.changed
    assert report.path == info.value.path
    assert report.offset == info.value.offset
    assert report.detail == info.value.detail
    assert report.backups
    for backup in report.backups:
        assert Path(backup).read_bytes() == originals[Path(backup).name]
    assert Path(report.path).name in {Path(b).name for b in report.backups}

    result = scan(journal_dir, QUEUE_ID)
    recovered = replay(result)
    assert recovered == WRITTEN[:kept]
    assert report.records_kept == kept
    for removed in report.removed:
        assert not Path(removed).exists()


def test_repair_counts_dropped_records(
    journal_dir: Path, image: Image, tmp_path: Path
) -> None:
    damaged, kept = flip_sealed_frame(image)
    store_image(journal_dir, damaged)
    report = repair(journal_dir, QUEUE_ID, tmp_path / "backup")
    damaged_frame = [s for s in frame_spans(image) if s.segment == 0][1]
    # Every frame but the flipped one still validates.
    assert report.records_dropped == len(WRITTEN) - kept - damaged_frame.count
    assert len(report.removed) == len(image) - 1


def test_repair_then_open_and_append(
    journal_dir: Path, image: Image, tmp_path: Path
) -> None:
    damaged, kept = delete_middle_segment(image)
    store_image(journal_dir, damaged)
    repair(journal_dir, QUEUE_ID, tmp_path / "backup")
    write_journal(journal_dir, make_batches([2], start=500))
    result = scan(journal_dir, QUEUE_ID)
    assert replay(result) == [
        *WRITTEN[:kept],
        *all_records(make_batches([2], start=500)),
    ]


def test_repair_leaves_clean_journal_alone(
    journal_dir: Path, image: Image, tmp_path: Path
) -> None:
    report = repair(journal_dir, QUEUE_ID, tmp_path / "backup")
    assert not report.changed
    assert report.records_kept == len(WRITTEN)
    assert report.backups == []
    assert load_image(journal_dir) == image
    assert not (tmp_path / "backup").exists()


def test_repair_leaves_torn_tail_to_open(
    journal_dir: Path, image: Image, tmp_path: Path
) -> None:
    name, data = image[-1]
    store_image(journal_dir, [*image[:-1], (name, data + b"\x00" * 30)])
    report = repair(journal_dir, QUEUE_ID, tmp_path / "backup")
    assert not report.changed
    assert scan(journal_dir, QUEUE_ID).torn_tail is not None


def test_repair_respects_snapshot(
    journal_dir: Path, image: Image, tmp_path: Path
) -> None:
    first = scan(journal_dir, QUEUE_ID).segments[0]
    Path(first.path).unlink()
    report = repair(
        journal_dir, QUEUE_ID, tmp_path / "backup", after_lsn=first.last_lsn
    )
    assert not report.changed
    assert len(load_image(journal_dir)) == len(image) - 1


def test_repair_refuses_newer_format(
    journal_dir: Path, image: Image, tmp_path: Path
) -> None:
    name, data = image[1]
    changed = replace_header(data, major=FORMAT_MAJOR + 1)
    store_image(journal_dir, [image[0], (name, changed), *image[2:]])
    before = load_image(journal_dir)
    with pytest.raises(errors.FormatVersionError):
        repair(journal_dir, QUEUE_ID, tmp_path / "backup")
    assert load_image(journal_dir) == before


def test_repair_backups_never_overwrite(
    journal_dir: Path, image: Image, tmp_path: Path
) -> None:
    backup_dir = tmp_path / "backup"
    damaged, _ = flip_active_frame(image)
    for _ in range(2):
        store_image(journal_dir, damaged)
        repair(journal_dir, QUEUE_ID, backup_dir)
    name = damaged[-1][0]
    assert sorted(p.name for p in backup_dir.iterdir()) == [name, f"{name}.1"]
    assert (backup_dir / f"{name}.1").read_bytes() == damaged[-1][1]
