"""journalq: a crash-safe transfer queue for fsspec filesystems.

Actions (copy a file, copy a tree, sync, mkdir, delete, list, cancel) are
journaled durably before they run, so a run that was interrupted resumes
where it stopped, without losing or redoing work.
"""

from typing import TYPE_CHECKING

from journalq.errors import (
    ActionError,
    CorruptionError,
    EndpointMismatchError,
    FormatVersionError,
    JournalError,
    JournalPoisonedError,
    JournalqError,
    NotAQueueError,
    PendingActionsError,
    QueueClosedError,
    QueueError,
    QueueLockedError,
    StorageOptionError,
)
from journalq.events import ActionInfo, Event, EventType, RunSummary
from journalq.replay import Status

if TYPE_CHECKING:
    from journalq.queue import StorageQueue

__all__ = [
    "ActionError",
    "ActionInfo",
    "CorruptionError",
    "EndpointMismatchError",
    "Event",
    "EventType",
    "FormatVersionError",
    "JournalError",
    "JournalPoisonedError",
    "JournalqError",
    "NotAQueueError",
    "PendingActionsError",
    "QueueClosedError",
    "QueueError",
    "QueueLockedError",
    "RunSummary",
    "Status",
    "StorageOptionError",
    "StorageQueue",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # StorageQueue pulls in fsspec and the executor. Importing it on first
    # use keeps ``import journalq.records`` (and the journal, replay and
    # snapshot modules) free of fsspec and filelock, and the CLI quick to
    # start for commands that only read a queue.
    if name == "StorageQueue":
        from journalq.queue import StorageQueue

        globals()["StorageQueue"] = StorageQueue
        return StorageQueue
    raise AttributeError(f"module 'journalq' has no attribute {name!r}")
