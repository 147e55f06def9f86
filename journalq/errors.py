"""Errors raised by journalq.

Every error derives from :class:`JournalqError`, keeps the facts it reports as
attributes and builds its message from them: what failed, where, and what to
do next. Errors pickle, because they cross threads and processes. Plain
``OSError`` subclasses raised by fsspec backends (``FileNotFoundError``,
``PermissionError``...) are never wrapped: they reach the caller as they are,
and the executor records them as the reason an action failed. The one
exception is an item of the other type in the way at the destination,
which the executor reports as :class:`PathInTheWayError`, because the
backend's error names a temporary file.

The tree::

    JournalqError
    +-- QueueError                  the queue directory is unusable
    |   +-- NotAQueueError          a directory without journalq's format file
    |   +-- FormatVersionError      written by a newer journalq
    |   +-- QueueLockedError        another process holds the queue
    |   +-- QueueClosedError        the queue was closed in this process
    |   +-- PendingActionsError     a queue to drop has actions left to run
    +-- JournalError                the journal cannot be read or written
    |   +-- CorruptionError         damage that is not a torn tail
    |   +-- JournalPoisonedError    an earlier write or fsync failed
    +-- ActionError                 an action request is invalid
    |   +-- StorageOptionError      a storage option the filesystem does not take
    |   +-- EndpointMismatchError   a queue opened with another source or destination
    +-- BatchError                  an action of add_all failed its checks; none added
    +-- PathInTheWayError           a file or directory blocks a copy or mkdir
    +-- DeleteConflictError         a file to delete changed since its listing
"""

from __future__ import annotations

import datetime
import os
import shlex
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from journalq.records import Identity

__all__ = [
    "ActionError",
    "BatchError",
    "CorruptionError",
    "DeleteConflictError",
    "EndpointMismatchError",
    "FormatVersionError",
    "JournalError",
    "JournalPoisonedError",
    "JournalqError",
    "NotAQueueError",
    "PathInTheWayError",
    "PendingActionsError",
    "QueueClosedError",
    "QueueError",
    "QueueLockedError",
    "StorageOptionError",
    "StorageOptionValueError",
    "queue_command",
]


def queue_command(command: str, directory: str | os.PathLike[str]) -> str:
    """Return `` `journalq COMMAND --queue DIR` `` with DIR quoted for a shell.

    Without ``--queue`` the command would open the queue named ``local``,
    so every command a message suggests names the queue it is about.
    """
    return f"`journalq {command} --queue {shlex.quote(os.fspath(directory))}`"


class JournalqError(Exception):
    """Base class of every error journalq raises itself."""

    def __reduce__(self):  # type: ignore[override]
        # Rebuild from the keyword attributes so subclasses pickle without
        # each one repeating the boilerplate.
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[JournalqError], state: dict[str, object]) -> JournalqError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, str(state.get("message", "")))
    return error


class QueueError(JournalqError):
    """A queue directory cannot be opened or used."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        self.message = f"queue {self.path}: {reason}"
        super().__init__(self.message)


class NotAQueueError(QueueError):
    """A directory exists and is not empty, but contains no journalq queue.

    ``reason`` replaces the default message, which is for opening a queue.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str | None = None):
        super().__init__(
            path,
            reason
            or (
                "the directory is not empty and is not a journalq queue (no "
                "FORMAT file); pass an empty or new directory, or the directory "
                "of an existing queue"
            ),
        )


class FormatVersionError(QueueError):
    """A queue or journal file was written by a newer format version."""

    def __init__(self, path: str | os.PathLike[str], found: int, supported: int):
        self.found = found
        self.supported = supported
        super().__init__(
            path,
            f"format version {found} is newer than the highest this journalq "
            f"reads ({supported}); upgrade journalq to open this queue",
        )


class QueueLockedError(QueueError):
    """Another process (or another object in this process) has the queue locked.

    ``next_step`` replaces the advice that ends the message, for an
    operation that adding actions does not help, such as dropping.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        pid: int | None = None,
        host: str | None = None,
        since: str | None = None,
        same_process: bool = False,
        next_step: str | None = None,
    ) -> None:
        self.pid = pid
        self.host = host
        self.since = since
        self.same_process = same_process
        self.next_step = next_step
        if same_process:
            reason = (
                "the queue is already open in this process; close the other "
                "StorageQueue first or reuse it"
            )
        else:
            holder = f"pid {pid}" if pid is not None else "an unknown process"
            if host:
                holder += f" on {host}"
            if since:
                holder += f" since {since}"
            reason = f"the queue is locked by {holder}; " + (
                next_step
                or "wait for that run to finish or stop it, then try again "
                "(actions can still be added while it runs)"
            )
        super().__init__(path, reason)


class QueueClosedError(QueueError):
    """The queue object was closed and cannot be used any more."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, "the queue is closed; open it again to use it")


class PendingActionsError(QueueError):
    """A queue to drop still has actions waiting or in progress."""

    def __init__(
        self, path: str | os.PathLike[str], waiting: int, in_progress: int
    ) -> None:
        self.waiting = waiting
        self.in_progress = in_progress
        where = shlex.quote(os.fspath(path))
        super().__init__(
            path,
            f"{_count_actions(waiting, in_progress)}, so the queue was not "
            f"dropped; run them ({queue_command('run', path)}), cancel them "
            f"({queue_command('cancel --all', path)}), or drop the queue "
            f"anyway (`journalq drop --force {where}`)",
        )


def _count_actions(waiting: int, in_progress: int) -> str:
    """Return ``"2 actions wait and 1 is in progress"``, leaving out a zero."""
    parts = []
    if waiting:
        parts.append(f"{waiting} action{'s wait' if waiting > 1 else ' waits'}")
    if in_progress:
        verb = "are" if in_progress > 1 else "is"
        noun = "actions" if in_progress > 1 else "action"
        if parts:
            # "2 actions wait and 1 is in progress": the noun is not repeated.
            parts.append(f"{in_progress} {verb} in progress")
        else:
            parts.append(f"{in_progress} {noun} {verb} in progress")
    return " and ".join(parts) or "no action waits"


class JournalError(JournalqError):
    """The journal cannot be read or written."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        self.message = f"journal {self.path}: {reason}"
        super().__init__(self.message)


class CorruptionError(JournalError):
    """The journal is damaged somewhere other than its torn tail.

    journalq never skips damaged records, because a lost ``canceled`` or
    ``completed`` record would change what a run does. The message names the
    file, the byte offset and the command that truncates the journal there.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        offset: int,
        detail: str,
        queue_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.offset = offset
        self.detail = detail
        self.queue_dir = os.fspath(queue_dir) if queue_dir is not None else None
        where = self.queue_dir if self.queue_dir is not None else "QUEUE_DIR"
        super().__init__(
            path,
            f"corrupt at byte {offset}: {detail}; the queue was not opened. "
            f"Back up the queue directory, then run `journalq fsck --queue "
            f"{where} --truncate-at-corruption` to keep the records before "
            f"this point",
        )


class JournalPoisonedError(JournalError):
    """A write or fsync failed earlier, so the journal accepts no more records.

    After a failed fsync the kernel may already have dropped the unsynced
    pages, so retrying could report success for data that is gone. Reopening
    the queue runs recovery, which decides what is durable.
    """

    def __init__(self, path: str | os.PathLike[str], cause: str) -> None:
        self.cause = cause
        super().__init__(
            path,
            f"an earlier write failed ({cause}); no further records are "
            "accepted. Fix the cause (disk full, read-only or failing disk), "
            "then open the queue again to recover",
        )


class ActionError(JournalqError):
    """An action request is invalid; nothing was added to the journal."""

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        self.reason = reason
        self.message = f"{value!r}: {reason}"
        super().__init__(self.message)


class BatchError(JournalqError):
    """An action of :meth:`StorageQueue.add_all` failed its checks.

    No action of the batch was added. ``index`` is the position of the
    action in the batch, from 0, and ``error`` the ``ActionError`` (an
    invalid action) or ``OSError`` (a filesystem that could not be read)
    that its checks raised.
    """

    def __init__(self, index: int, error: Exception) -> None:
        self.index = index
        self.error = error
        self.message = (
            f"action {index + 1} of the batch: {error}; no action of the batch "
            "was added"
        )
        super().__init__(self.message)


class StorageOptionError(ActionError):
    """A storage option that the filesystem class does not take.

    ``value`` is the filesystem's URL and ``filesystem`` its class name.
    ``names`` are the rejected option names, and ``suggestions`` maps some
    of them to the closest name the class takes. ``role`` (``"source"`` or
    ``"destination"``) and ``queue`` are set for the options of a queue.
    ``journaled`` lists the rejected names that the queue was created with
    and that the caller did not give again. ``missing_secrets`` lists the
    secret options the queue was created with that the caller did not give
    again, which a rejected name was most likely meant to be. With
    ``option``, the ``names`` are keys of that option's JSON object value,
    and ``keys_source`` says which keys it takes.
    """

    def __init__(
        self,
        url: str,
        filesystem: str,
        names: list[str],
        suggestions: dict[str, str] | None = None,
        *,
        role: str | None = None,
        queue: str | None = None,
        journaled: list[str] | None = None,
        missing_secrets: list[str] | None = None,
        option: str | None = None,
        keys_source: str | None = None,
    ) -> None:
        self.filesystem = filesystem
        self.option = option
        self.keys_source = keys_source
        self.names = list(names)
        self.suggestions = dict(suggestions or {})
        self.role = role
        self.queue = queue
        self.journaled = list(journaled or [])
        self.missing_secrets = list(missing_secrets or [])
        super().__init__(url, self._reason())

    def rejected(self) -> str:
        """Return the rejected names, each with the name suggested for it."""
        return ", ".join(
            f"{name!r} (did you mean {self.suggestions[name]!r}?)"
            if name in self.suggestions
            else repr(name)
            for name in self.names
        )

    def secrets_needed(self) -> str:
        """Return the clause that names :attr:`missing_secrets` and why."""
        noun = "option" if len(self.missing_secrets) == 1 else "options"
        names = ", ".join(repr(name) for name in self.missing_secrets)
        return (
            f"queue {self.queue} needs the secret {self.role} {noun} {names} "
            "again, because secrets are never journaled"
        )

    def rejected_clause(self) -> str:
        """Return the clause that names the rejected option names or keys."""
        if self.option is None:
            noun = "option" if len(self.names) == 1 else "options"
            return f"takes no storage {noun} {self.rejected()}"
        noun = "key" if len(self.names) == 1 else "keys"
        return (
            f"takes no {noun} {self.rejected()} in the storage option "
            f"{self.option!r}, which takes {self.keys_source}"
        )

    def _reason(self) -> str:
        what = f"{self.filesystem} {self.rejected_clause()}"
        if self.journaled and self.option is not None:
            return (
                f"queue {self.queue} keeps the {self.role} options it was "
                f"created with, and {what}. Give the option {self.option!r} "
                f"again in {self.role}_options with the key corrected: it "
                "replaces the journaled value"
            )
        if self.journaled:
            return (
                f"queue {self.queue} keeps the {self.role} options it was "
                f"created with, and {what}. Options given again replace "
                "journaled ones of the same name but cannot remove one: delete "
                "the queue with journalq.drop.drop_queue() (its files stay) and "
                "create it again, or use another queue name"
            )
        keyword = f"{self.role}_options" if self.role else "the storage options"
        if self.missing_secrets:
            return (
                f"{what}, and {self.secrets_needed()}. Give them in {keyword} "
                "under their right names"
            )
        if self.option is not None:
            keyword = f"{keyword}[{self.option!r}]"
        return f"{what}; correct {keyword} (nothing was created or added)"


class StorageOptionValueError(ActionError):
    """A storage option that takes a JSON object was given another value.

    ``value`` is the filesystem's URL, ``filesystem`` its class name,
    ``option`` the option's name and ``given`` its value. ``role``
    (``"source"`` or ``"destination"``) is set for the options of a queue.
    The filesystem class would fail on the value only when it is built,
    with an error that names neither the option nor the fix.
    """

    def __init__(
        self,
        url: str,
        filesystem: str,
        option: str,
        given: object,
        *,
        role: str | None = None,
    ) -> None:
        self.filesystem = filesystem
        self.option = option
        self.given = given
        self.role = role
        keyword = f"{role}_options" if role else "the storage options"
        super().__init__(
            url,
            f"{filesystem} {self.problem()}; correct {keyword}[{option!r}] "
            "(nothing was created or added)",
        )

    def problem(self) -> str:
        """Return the clause that names the option and what it was given."""
        if isinstance(self.given, str):
            description = f"the string {self.given!r}"
        else:
            kind = _JSON_TYPES.get(type(self.given), type(self.given).__name__)
            description = f"a JSON {kind}"
        option = repr(self.option)
        return f"takes a JSON object in the storage option {option}, not {description}"


#: The JSON names of the types a parsed option value can have.
_JSON_TYPES: Final = {
    list: "array",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


class EndpointMismatchError(ActionError):
    """A queue was opened with a source or destination it was not created with.

    ``value`` is the URL given, ``created`` the one the queue keeps,
    ``role`` ``"source"`` or ``"destination"`` and ``queue`` its directory.
    """

    def __init__(self, given: str, created: str, role: str, queue: str) -> None:
        self.created = created
        self.role = role
        self.queue = queue
        super().__init__(
            given,
            f"queue {queue} was created with the {role} {created!r}; open it "
            "without a source and a destination, as StorageQueue(name=...), "
            "to use the filesystems it keeps (its methods then take absolute "
            f"paths or URLs), or pass another name for a queue with a different "
            f"{role}",
        )


class PathInTheWayError(JournalqError):
    """A file or directory at the destination blocks a copy or a mkdir.

    ``blocker`` is the path in the way: ``path`` itself, or a path above
    ``path`` that is a file where a directory is needed. ``operation`` is
    what failed, as a verb phrase ("copy to", "make the directory").
    ``in_tree`` tells whether ``blocker`` lies inside the destination tree
    of a copy or sync, which a sync with ``--delete`` would replace.
    """

    def __init__(
        self,
        path: str,
        blocker: str,
        *,
        is_directory: bool,
        operation: str,
        in_tree: bool = True,
    ) -> None:
        self.path = path
        self.blocker = blocker
        self.is_directory = is_directory
        self.operation = operation
        what = "directory" if is_directory else "file"
        fix = (
            "delete or rename it, or sync with --delete, which replaces it"
            if in_tree
            else "delete or rename it, or copy to another destination"
        )
        self.message = (
            f"cannot {operation} {path}: the {what} {blocker} is in the way at the "
            f"destination; {fix}"
        )
        super().__init__(self.message)


class DeleteConflictError(JournalqError):
    """A file that a sync planned to delete changed after it was listed.

    ``found`` is what is at ``path`` now, None for a directory.
    """

    def __init__(self, path: str, listed: Identity, found: Identity | None) -> None:
        self.path = path
        self.listed = listed
        self.found = found
        now = "a directory" if found is None else _describe_file(found)
        self.message = (
            f"conflict: {path} changed since the sync listed it (then "
            f"{_describe_file(listed)}, now {now}), so it was not deleted; "
            "run the sync again to compare it anew"
        )
        super().__init__(self.message)


def _describe_file(identity: Identity) -> str:
    parts = [f"{identity.size} bytes"]
    if identity.mtime_ns is not None:
        moment = datetime.datetime.fromtimestamp(
            identity.mtime_ns / 1e9, tz=datetime.UTC
        )
        parts.append(f"modified {moment.isoformat()}")
    if identity.etag is not None:
        parts.append(f"ETag {identity.etag}")
    return ", ".join(parts)
