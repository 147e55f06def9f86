"""The history of one action, read back from the queue's journal.

The folded state keeps only where an action ended (its attempts, last
error and completion). Its journal records show how it got there: when it
was added, each attempt's start, each failure, retries by the user, the
cancel and the completion with the method that decided it. The journal
segments behind a snapshot are deleted, so an action older than the last
compaction shows only what the state keeps.

The journal is read without the queue's lock and without changing a file,
like ``journalq status``; records handed off and not yet journaled are not
included.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import msgspec

from journalq.journal import Frame, scan
from journalq.journal.reader import list_segments
from journalq.progress import format_bytes
from journalq.records import (
    ActionAdded,
    Canceled,
    Completed,
    Expanded,
    Failed,
    HandedOut,
    PartsPlanned,
    PartWritten,
    Record,
    Retried,
    Returned,
    Started,
    decode_batch,
)
from journalq.store import JOURNAL_DIR, read_format

__all__ = ["Step", "action_history", "format_time"]


class Step(msgspec.Struct, frozen=True):
    """One journaled step of an action."""

    #: Nanoseconds since the epoch, or None for a record journaled without
    #: a time, such as the ``added`` record of a tree's child.
    time_ns: int | None
    #: The step as one line, such as ``"started attempt 2"``.
    text: str


def format_time(time_ns: int | None) -> str:
    """Format nanoseconds since the epoch as local time, to milliseconds."""
    if not time_ns:
        return "-"
    moment = datetime.datetime.fromtimestamp(time_ns / 1e9).astimezone()
    return moment.isoformat(sep=" ", timespec="milliseconds")


def action_history(directory: Path, action_id: str) -> tuple[list[Step], bool]:
    """Return the journaled steps of ``action_id`` and whether some are gone.

    The second value is True when the journal no longer starts at its first
    record, so steps older than the last compaction may be missing.
    """
    header = read_format(directory)
    if header is None:
        return [], True
    journal = directory / JOURNAL_DIR
    segments = list_segments(journal, str(directory))
    if not segments:
        return [], True
    first_lsn = segments[0][1]
    result = scan(
        journal,
        bytes.fromhex(header.queue_id),
        after_lsn=first_lsn - 1,
        queue_dir=str(directory),
    )
    steps = [
        step
        for record in _records(result.frames)
        if (step := _describe(record, action_id)) is not None
    ]
    return steps, first_lsn > 1


def _records(frames: list[Frame]) -> Iterator[Record]:
    for frame in frames:
        yield from decode_batch(frame.payload)


def _describe(record: Record, action_id: str) -> Step | None:
    if isinstance(record, HandedOut | Returned):
        if action_id not in record.action_ids:
            return None
    elif getattr(record, "action_id", None) != action_id:
        return None
    step = _step(record)
    if step is not None and not step.time_ns:
        # A record journaled without its time has 0 there (the children of
        # a tree are added without one), which is no time at all.
        return Step(None, step.text)
    return step


def _step(record: Record) -> Step | None:
    match record:
        case ActionAdded():
            return Step(record.added_ns, f"added ({record.kind})")
        case Expanded():
            text = f"listed: {record.children} actions added"
            if record.skipped:
                text += f", {record.skipped} files already identical"
                text += f" (by {record.method})" if record.method else ""
            return Step(None, text)
        case Started():
            return Step(record.started_ns, f"started attempt {record.attempt}")
        case HandedOut():
            return Step(
                record.started_ns,
                f"started attempt {record.attempt} in a copy process",
            )
        case Returned():
            return Step(
                None,
                f"attempt {record.attempt} handed back, unfinished: returned "
                "unstarted by the copy process, or its run stopped; waits again",
            )
        case Completed():
            return Step(record.finished_ns, _completed_text(record))
        case Failed():
            return Step(record.finished_ns, _failed_text(record))
        case Retried():
            return Step(record.retried_ns, "made to wait again by `journalq retry`")
        case Canceled():
            return Step(None, f"canceled by {record.by or 'a request'}")
        case PartsPlanned():
            count = -(-record.source.size // record.part_size)
            return Step(
                record.planned_ns,
                f"attempt {record.attempt} planned {count} parts of "
                f"{format_bytes(record.part_size)} into {record.upload}",
            )
        case PartWritten():
            part = record.part
            return Step(
                None,
                f"part {part.number + 1} written: {format_bytes(part.size)} at "
                f"offset {part.offset}",
            )
    return None


def _completed_text(record: Completed) -> str:
    text = f"attempt {record.attempt} completed: {record.outcome}"
    if record.method:
        text += f" (by {record.method})"
    if record.bytes:
        text += f", {format_bytes(record.bytes)}"
    return text


def _failed_text(record: Failed) -> str:
    after = "will be retried" if record.retryable else "failed for good"
    return (
        f"attempt {record.attempt} failed ({after}): {record.error}: {record.message}"
    )
