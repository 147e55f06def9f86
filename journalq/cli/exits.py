"""Exit codes of the ``journalq`` command, and the errors that lead to them.

Every command ends through :func:`exit_code_for` or :class:`ExitCode`, so the
table below is the whole contract for scripts that call ``journalq``.
"""

from __future__ import annotations

import enum

from journalq.errors import (
    ActionError,
    BatchError,
    JournalError,
    QueueError,
    QueueLockedError,
)
from journalq.events import RunSummary

__all__ = ["ExitCode", "exit_code_for", "run_exit_code"]


class ExitCode(enum.IntEnum):
    """Meaning of the exit status of a ``journalq`` process."""

    #: Every action of the run completed (copied, skipped or done).
    OK = 0
    #: Some actions failed; ``journalq actions --status failed`` lists them.
    FAILED = 1
    #: The command line or an action request is invalid (click uses 2 too),
    #: or the fsspec backend a URL needs is not installed.
    USAGE = 2
    #: Another process holds the queue's lock.
    LOCKED = 3
    #: The journal is corrupt or the queue directory cannot be used.
    UNUSABLE = 4
    #: The run was stopped by Ctrl-C (128 + SIGINT, as shells report it).
    INTERRUPTED = 130
    #: The reader of stdout went away before the command ended (128 +
    #: SIGPIPE, as shells report a process that a closed pipe killed).
    PIPE_CLOSED = 141


def exit_code_for(error: BaseException) -> ExitCode:
    """Return the exit code for an error that ended a command."""
    if isinstance(error, BatchError):
        return exit_code_for(error.error)
    # QueueLockedError is a QueueError, so it is matched first.
    if isinstance(error, QueueLockedError):
        return ExitCode.LOCKED
    if isinstance(error, QueueError | JournalError):
        return ExitCode.UNUSABLE
    if isinstance(error, ActionError | ImportError):
        return ExitCode.USAGE
    return ExitCode.FAILED


def run_exit_code(summary: RunSummary, *, dry_run: bool) -> ExitCode:
    """Return the exit code for a run that ended with ``summary``."""
    if summary.interrupted:
        return ExitCode.INTERRUPTED
    if summary.failed:
        return ExitCode.FAILED
    # A real run that returns with actions still waiting left work undone.
    # A dry run never changes which actions wait, so it is not judged so.
    if summary.remaining and not dry_run:
        return ExitCode.FAILED
    return ExitCode.OK
