"""journalq: a crash-safe transfer queue for fsspec filesystems.

Actions (copy a file, copy a tree, sync, mkdir, delete, list, cancel) are
journaled durably before they run, so a run that was interrupted resumes
where it stopped, without losing or redoing work.
"""

from journalq.errors import (
    ActionError,
    CorruptionError,
    FormatVersionError,
    JournalError,
    JournalPoisonedError,
    JournalqError,
    NotAQueueError,
    QueueClosedError,
    QueueError,
    QueueLockedError,
)
from journalq.events import ActionInfo, Event, EventType, RunSummary
from journalq.queue import StorageQueue
from journalq.replay import Status

__all__ = [
    "ActionError",
    "ActionInfo",
    "CorruptionError",
    "Event",
    "EventType",
    "FormatVersionError",
    "JournalError",
    "JournalPoisonedError",
    "JournalqError",
    "NotAQueueError",
    "QueueClosedError",
    "QueueError",
    "QueueLockedError",
    "RunSummary",
    "Status",
    "StorageQueue",
]

__version__ = "0.1.0"
