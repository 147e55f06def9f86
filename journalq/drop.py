"""Dropping a queue: deleting its directory, and never the files it copied.

:func:`drop_queue` deletes a queue directory only when it is one: it has a
``FORMAT`` file with journalq's magic and nothing that journalq does not
write. It takes the queue's lock first, so a queue that a process runs is
never deleted under it, and it keeps a queue whose actions wait or are in
progress unless ``force`` is given.

The directory is first renamed to a hidden name beside it
(``.NAME.dropped-RANDOM``) and its ``FORMAT`` file deleted, and only then
is the rest deleted. A crash during the deletion therefore leaves either
the whole queue or a hidden directory that no queue name reaches, never a
queue with part of its journal gone. The next drop of the same name
deletes such leftovers (:func:`finish_interrupted`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from journalq import durable, faults, inbox, snapshot
from journalq.errors import (
    FormatVersionError,
    JournalqError,
    NotAQueueError,
    PendingActionsError,
    QueueError,
    QueueLockedError,
)
from journalq.lock import HOLDER_NAME, LOCK_NAME, QueueLock
from journalq.replay import ActionState, QueueState, Status
from journalq.store import (
    FORMAT_NAME,
    JOURNAL_DIR,
    RESULTS_DIR,
    queue_directory,
    read_format,
    read_state,
)

__all__ = ["DroppedQueue", "drop_queue", "finish_interrupted"]

logger = logging.getLogger(__name__)

#: The entries that journalq writes in a queue directory. The journal's
#: quarantine and fsck's backups are named here because importing their
#: modules would pull in the journal writer and the CLI.
QUEUE_ENTRIES: Final = frozenset(
    {
        FORMAT_NAME,
        LOCK_NAME,
        HOLDER_NAME,
        f"{LOCK_NAME}.filelock",
        JOURNAL_DIR,
        snapshot.SNAPSHOT_DIR,
        inbox.INBOX_DIR,
        RESULTS_DIR,
        "quarantine",
        "fsck-backups",
    }
)
#: The temporary files that :func:`journalq.durable.atomic_write` leaves
#: when it is killed.
_TEMPORARY_NAME: Final = re.compile(r".+\.\d+\.tmp")
#: The random part of a dropped queue's hidden name.
_DROP_SUFFIX: Final = re.compile(r"[0-9a-f]{8}")


@dataclass(frozen=True)
class DroppedQueue:
    """The result of :func:`drop_queue`: the queue deleted and what it left."""

    #: The queue directory, which no longer exists.
    directory: Path
    #: The queue's id, from its ``FORMAT`` file.
    queue_id: str
    #: Actions that were waiting when the queue was dropped.
    waiting: int = 0
    #: Actions that were in progress (a run was killed during them).
    in_progress: int = 0
    #: The unfinished uploads of large copies in parts (temporary files,
    #: object store upload ids), which stay at the destination.
    uploads: list[str] = field(default_factory=list)


def drop_queue(
    name_or_path: str | os.PathLike[str],
    *,
    force: bool = False,
    only_if: Callable[[QueueState], bool] | None = None,
) -> DroppedQueue:
    """Delete the queue ``name_or_path`` (a name or a directory).

    Raises :class:`QueueError` when there is no such directory,
    :class:`NotAQueueError` when the directory is no queue or contains
    files that journalq did not write, :class:`QueueLockedError` when
    another process has the queue locked, and, unless ``force``,
    :class:`PendingActionsError` when actions wait or are in progress and
    :class:`QueueError` when the journal cannot be read. Returns what was
    deleted. The source and the destination are not touched.

    ``only_if`` is called with the queue's state while the lock is held.
    When it returns False, or the journal cannot be read, the queue is kept
    and :class:`QueueError` is raised, even with ``force``.
    """
    directory = queue_directory(name_or_path)
    queue_id = _check_queue(directory)
    lock = QueueLock(directory)
    try:
        lock.acquire()
    except QueueLockedError as exc:
        if exc.same_process:
            raise
        raise QueueLockedError(
            directory,
            exc.pid,
            exc.host,
            exc.since,
            next_step="the queue was not dropped. Wait for that run to finish "
            "or stop it, then drop the queue again",
        ) from exc
    try:
        dropped = _pending(directory, queue_id, force=force, only_if=only_if)
        hidden = _hide(directory)
    finally:
        lock.release()
    faults.point("drop.hidden")
    shutil.rmtree(hidden)
    finish_interrupted(directory)
    logger.info("dropped queue %s", directory)
    return dropped


def finish_interrupted(directory: Path) -> list[Path]:
    """Delete what drops of ``directory`` that were killed left; return it.

    Those are the hidden directories ``.NAME.dropped-RANDOM`` beside it.
    Only a drop renames a queue to such a name, under the queue's lock, so
    no queue name reaches one. A drop killed between the rename and the
    removal of ``FORMAT`` leaves a whole queue there, which goes too.
    """
    prefix = f".{directory.name}.dropped-"
    try:
        names = os.listdir(directory.parent)
    except FileNotFoundError:
        return []
    leftovers = [
        directory.parent / name
        for name in names
        if name.startswith(prefix) and _DROP_SUFFIX.fullmatch(name[len(prefix) :])
    ]
    for leftover in leftovers:
        shutil.rmtree(leftover)
        logger.info("deleted %s, left by an interrupted drop", leftover)
    return leftovers


def _check_queue(directory: Path) -> str:
    """Return the queue id of ``directory``.

    Raises unless the directory is a queue and contains only journalq's files.
    """
    if not directory.is_dir():
        raise QueueError(directory, "not found; nothing was deleted")
    try:
        header = read_format(directory)
    except FormatVersionError:
        raise
    except NotAQueueError as error:
        raise NotAQueueError(
            directory,
            f"the {FORMAT_NAME} file of the directory is not journalq's, so it "
            "is not a journalq queue; nothing was deleted",
        ) from error
    except QueueError as error:
        raise NotAQueueError(
            directory,
            f"{error.reason}, so it may not be a journalq queue; nothing was deleted",
        ) from error
    if header is None:
        raise NotAQueueError(
            directory,
            f"the directory has no {FORMAT_NAME} file, so it is not a journalq "
            "queue; nothing was deleted",
        )
    foreign = sorted(
        name
        for name in os.listdir(directory)
        if name not in QUEUE_ENTRIES and not _TEMPORARY_NAME.fullmatch(name)
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise NotAQueueError(
            directory,
            f"the queue directory also contains {shown}, which journalq does "
            "not write; move that out of it first (nothing was deleted)",
        )
    return header.queue_id


def _pending(
    directory: Path,
    queue_id: str,
    *,
    force: bool,
    only_if: Callable[[QueueState], bool] | None,
) -> DroppedQueue:
    """Return what waits in the queue; raise unless it is nothing or ``force``.

    Also raises when ``only_if`` returns False for the queue's state.
    """
    try:
        state = read_state(directory)
    except JournalqError as error:
        if not force or only_if is not None:
            raise QueueError(
                directory,
                f"the queue cannot be read, so whether actions wait is unknown "
                f"({error}); drop it anyway with force (`journalq drop --force "
                f"{shlex.quote(os.fspath(directory))}`)",
            ) from error
        logger.info("dropping unreadable queue %s: %s", directory, error)
        return DroppedQueue(directory, queue_id)
    if only_if is not None and not only_if(state):
        raise QueueError(
            directory,
            "the only_if condition of the drop returned False, so the queue "
            "was kept (nothing was deleted)",
        )
    waiting = state.counts[Status.WAITING]
    in_progress = state.counts[Status.INPROGRESS]
    if (waiting or in_progress) and not force:
        raise PendingActionsError(directory, waiting, in_progress)
    return DroppedQueue(directory, queue_id, waiting, in_progress, _uploads(state))


def _uploads(state: QueueState) -> list[str]:
    """Return the uploads of the large copies that have not completed."""
    uploads = []
    for action in state.actions.values():
        # A compacted action has ended, so it has no parts left.
        if type(action) is ActionState and action.parts is not None:
            uploads.append(action.parts.plan.upload)
    return uploads


def _hide(directory: Path) -> Path:
    """Rename ``directory`` to a hidden name beside it and unmark it as a queue.

    Returns the new path. The caller holds the queue's lock, so no process
    runs the queue meanwhile; one that opens the name afterwards finds no
    queue there.
    NOTE: a ``journalq add`` that found the queue locked just before the
    rename posts its request to the inbox of the hidden directory, and that
    request is deleted with it.
    """
    hidden = directory.with_name(f".{directory.name}.dropped-{uuid.uuid4().hex[:8]}")
    os.rename(directory, hidden)
    durable.fsync_dir(directory.parent)
    faults.point("drop.renamed")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(hidden / FORMAT_NAME)
    durable.fsync_dir(hidden)
    return hidden
