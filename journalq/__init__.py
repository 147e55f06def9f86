"""journalq: a crash-safe transfer queue for fsspec filesystems.

Actions (copy a file, copy a tree, sync, mkdir, delete, list, cancel) are
journaled durably before they run, so a run that was interrupted resumes
where it stopped, without losing or redoing work.

The names below are imported on first use. ``StorageQueue`` pulls in
fsspec and the executor, so ``import journalq.records`` (and the journal,
replay and snapshot modules) stays free of fsspec and filelock, and the
CLI starts quickly for commands that only read a queue. Importing nothing
here also lets the console script catch a Ctrl-C from its first
milliseconds on (see ``main`` in :mod:`journalq.cli`).
"""

# The idiom that type checkers read as True, without importing typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from journalq.errors import (
        ActionError,
        BatchError,
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
        StorageOptionValueError,
    )
    from journalq.events import ActionInfo, Event, EventType, RunSummary
    from journalq.queue import StorageQueue
    from journalq.replay import Status

#: The module of each public name.
_MODULES = {
    "ActionError": "journalq.errors",
    "ActionInfo": "journalq.events",
    "BatchError": "journalq.errors",
    "CorruptionError": "journalq.errors",
    "EndpointMismatchError": "journalq.errors",
    "Event": "journalq.events",
    "EventType": "journalq.events",
    "FormatVersionError": "journalq.errors",
    "JournalError": "journalq.errors",
    "JournalPoisonedError": "journalq.errors",
    "JournalqError": "journalq.errors",
    "NotAQueueError": "journalq.errors",
    "PendingActionsError": "journalq.errors",
    "QueueClosedError": "journalq.errors",
    "QueueError": "journalq.errors",
    "QueueLockedError": "journalq.errors",
    "RunSummary": "journalq.events",
    "Status": "journalq.replay",
    "StorageOptionError": "journalq.errors",
    "StorageOptionValueError": "journalq.errors",
    "StorageQueue": "journalq.queue",
}

__all__ = [
    "ActionError",
    "ActionInfo",
    "BatchError",
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
    "StorageOptionValueError",
    "StorageQueue",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    module_name = _MODULES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'journalq' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULES])
