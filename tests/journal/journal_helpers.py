"""Helpers for the journal tests: write real journals, cut and damage copies.

A journal *image* is the list of (file name, bytes) of its segments in
order. Tests write a journal with the real writer, load its image once, and
store damaged variants of it into a directory for :func:`scan` to read.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from journalq import records
from journalq.journal import Journal, ScanResult, scan
from journalq.journal import format as fmt

QUEUE_ID = uuid.UUID("6f1c2a7e-3b0d-4f5e-9a61-2c8d4e0b7f13").bytes
OTHER_QUEUE_ID = uuid.UUID("0d9e8f7a-6b5c-4d3e-8f21-a0b1c2d3e4f5").bytes

Image = list[tuple[str, bytes]]


@dataclass(frozen=True)
class FrameSpan:
    """Where one frame of an image lies."""

    segment: int
    start: int
    end: int
    frame_type: int
    first_lsn: int
    count: int
    global_start: int
    global_end: int


def started(index: int, attempt: int = 1) -> records.Started:
    return records.Started(action_id=f"action-{index:05d}", attempt=attempt)


def make_batches(sizes: Sequence[int], start: int = 0) -> list[list[records.Started]]:
    """Return batches of Started records with consecutive action numbers."""
    batches = []
    index = start
    for size in sizes:
        batches.append([started(i) for i in range(index, index + size)])
        index += size
    return batches


def write_journal(
    directory: Path,
    batches: Sequence[list[records.Record]],
    *,
    segment_bytes: int = fmt.HEADER_SIZE + 1024,
    after_lsn: int = 0,
    sync: str = "batch",
) -> None:
    """Open the journal in ``directory``, append each batch durably, stop."""
    result = scan(directory, QUEUE_ID, after_lsn=after_lsn)
    journal = Journal.open(
        directory,
        QUEUE_ID,
        result,
        encode_batch=records.encode_batch,
        segment_bytes=segment_bytes,
        sync=sync,  # type: ignore[arg-type]
    )
    try:
        for batch in batches:
            journal.append(batch, durable=True)
    finally:
        # Unsealed, as a killed process leaves its last segment, so that the
        # damage tests can cut or extend it into a torn tail.
        journal.close(seal=False)


def replay(result: ScanResult, after_lsn: int = 0) -> list[records.Record]:
    """Decode every record above ``after_lsn`` of a scan result."""
    decoded = []
    for frame in result.frames:
        batch = records.decode_batch(frame.payload)
        skip = max(0, after_lsn - frame.first_lsn + 1)
        decoded.extend(batch[skip:])
    return decoded


def load_image(directory: Path) -> Image:
    names = sorted(n for n in os.listdir(directory) if n.endswith(fmt.SUFFIX))
    return [(name, (directory / name).read_bytes()) for name in names]


def store_image(directory: Path, image: Image) -> None:
    """Make the segments in ``directory`` exactly those of ``image``."""
    directory.mkdir(parents=True, exist_ok=True)
    expected = dict(image)
    for name in os.listdir(directory):
        if name.endswith(fmt.SUFFIX) and name not in expected:
            (directory / name).unlink()
    for name, data in image:
        (directory / name).write_bytes(data)


def frame_spans(image: Image) -> list[FrameSpan]:
    """Return every frame of an undamaged image, in order."""
    spans = []
    base = 0
    for index, (_, data) in enumerate(image):
        offset = fmt.HEADER_SIZE
        while offset < len(data):
            header = fmt.decode_frame_header(data, offset)
            end = offset + fmt.FRAME_HEADER_SIZE + header.length
            spans.append(
                FrameSpan(
                    index,
                    offset,
                    end,
                    header.frame_type,
                    header.first_lsn,
                    header.count,
                    base + offset,
                    base + end,
                )
            )
            offset = end
        base += len(data)
    return spans


def cut_image(image: Image, global_offset: int) -> tuple[Image, int, int]:
    """Keep the first ``global_offset`` bytes of the concatenated segments.

    Returns the cut image, the index of the segment cut and the offset of
    the cut inside it. A cut at a segment boundary keeps the earlier segment
    whole and drops the later one.
    """
    base = 0
    for index, (name, data) in enumerate(image):
        if global_offset <= base + len(data):
            local = global_offset - base
            if local == 0 and index > 0:
                return image[:index], index - 1, len(image[index - 1][1])
            return [*image[:index], (name, data[:local])], index, local
        base += len(data)
    return list(image), len(image) - 1, len(image[-1][1])


def records_before(spans: Sequence[FrameSpan], global_offset: int) -> int:
    """Count records in batch frames that end at or before ``global_offset``."""
    return sum(
        span.count
        for span in spans
        if span.frame_type == fmt.FRAME_BATCH and span.global_end <= global_offset
    )


def header_of(data: bytes) -> fmt.SegmentHeader:
    return fmt.decode_header(data)


def replace_header(data: bytes, **changes: object) -> bytes:
    """Return ``data`` with header fields changed and the header CRC redone."""
    header = msgspec.structs.replace(header_of(data), **changes)
    return fmt.encode_header(header) + data[fmt.HEADER_SIZE :]


def all_records(batches: Sequence[list[records.Record]]) -> list[records.Record]:
    return [record for batch in batches for record in batch]
