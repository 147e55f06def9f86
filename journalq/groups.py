"""Durable groups: finished local copies that wait for one filesystem sync.

Copies of new files to a local disk are made durable in groups. The workers
write up to :data:`DURABLE_GROUP` files (or :data:`DURABLE_BYTES`) without
syncing them, a committer thread syncs the destination filesystem once
(``syncfs``), and only then are their ``completed`` records journaled. A
file that replaces an existing one is synced on its own before the rename,
so a power cut cannot leave the old name pointing at unwritten data.

A mkdir or delete at the destination joins the group too, because its
directory entry is durable only once the filesystem is synced.

The group does not run actions. The executor (:mod:`journalq.executor`)
offers it each finished action, and passes in the function that journals
a synced group, so the committer thread and its limits can be read and
tested on their own.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Final

from journalq import digest, transfer
from journalq.records import Completed, Kind, Outcome, Record, Service
from journalq.replay import ActionState
from journalq.store import QueueStore

__all__ = [
    "DURABLE_BYTES",
    "DURABLE_GROUP",
    "DURABLE_WAIT",
    "GROUPS_IN_FLIGHT",
    "DurableGroup",
]

#: Files copied before one filesystem sync makes them all durable. On the
#: 2-core test machine 2,000 files of 4 KiB took 0.26-0.37 s with one
#: syncfs against 2.4-5.5 s with an fsync each. A group of 512 keeps the
#: sync cost per small file low, and a crash redoes at most one group.
DURABLE_GROUP: Final = 512
#: Maximum time a finished copy waits for its group's sync, in seconds.
DURABLE_WAIT: Final = 0.25
#: Bytes of copies after which a group is synced even when it has fewer
#: files, so a crash during large copies redoes at most about this much.
DURABLE_BYTES: Final = 64 * 1024 * 1024
#: Groups that may wait for the committer thread before workers wait too.
GROUPS_IN_FLIGHT: Final = 2
#: Kinds whose effect is a directory entry and nothing else.
_ENTRY_KINDS: Final = frozenset({Kind.MKDIR, Kind.DELETE})


class DurableGroup:
    """Finished local copies of all workers, waiting for one filesystem sync.

    A full or old group goes to a committer thread, which syncs the
    filesystem and then journals the group's records, so the workers keep
    copying while the disk flushes. At most :data:`GROUPS_IN_FLIGHT` groups
    wait for the committer; a worker that would exceed that waits too.
    """

    def __init__(
        self,
        store: QueueStore,
        *,
        enabled: bool,
        journal: Callable[[list[tuple[ActionState, list[Record]]]], None],
    ) -> None:
        """Make an empty group.

        ``journal`` appends the records of a synced group, on the committer
        thread. ``enabled`` is False when nothing waits for a sync: for a
        destination off the local disk, or a dry run.
        """
        self._store = store
        self._journal = journal
        self.enabled = enabled
        self._lock = threading.Lock()
        self._pending: list[tuple[ActionState, list[Record]]] = []
        self._since = 0.0
        self._bytes = 0
        self._groups: queue.Queue[list[tuple[ActionState, list[Record]]] | None] = (
            queue.Queue(maxsize=GROUPS_IN_FLIGHT)
        )
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def wants(self, action: ActionState, completed: Completed) -> bool:
        """Return whether the effect of ``action`` waits for the group's sync.

        Copies do, and so do a mkdir or a delete at the destination: their
        directory entries are durable only once the filesystem is synced.
        A copy skipped because its destination is identical does too: that
        file may be one a killed run wrote and the disk has not received.
        An action that was in progress at a crash does not: its copy is
        synced alone by its sink, its skipped destination or its directory
        entry by :meth:`journalq.executor.Executor.finish`, and it is
        journaled as soon as it is done. So the next crash counts against
        it only when it lands during its own work, not during the wait for
        a group (see :func:`journalq.replay.reset_interrupted`).
        """
        if not self.enabled or action.crashes:
            return False
        if completed.outcome is Outcome.COPIED:
            return True
        if completed.outcome is Outcome.SKIPPED and action.kind is Kind.COPY_FILE:
            return True
        return self.changes_entries(action)

    @staticmethod
    def changes_entries(action: ActionState) -> bool:
        """Return whether ``action`` adds or removes a destination entry."""
        return (
            action.kind in _ENTRY_KINDS and action.added.service is not Service.SOURCE
        )

    def add(self, action: ActionState, records: list[Record]) -> None:
        now = time.monotonic()
        completed = records[-1]
        assert isinstance(completed, Completed)
        with self._lock:
            if not self._pending:
                self._since = now
                self._bytes = 0
            self._pending.append((action, records))
            self._bytes += completed.bytes
            if (
                len(self._pending) < DURABLE_GROUP
                and self._bytes < DURABLE_BYTES
                and now - self._since < DURABLE_WAIT
            ):
                return
            pending, self._pending = self._pending, []
        self._hand_over(pending)

    def commit(self) -> None:
        """Sync and journal everything added so far; return when done."""
        with self._lock:
            pending, self._pending = self._pending, []
        if pending:
            self._hand_over(pending)
        if self._thread is not None:
            self._groups.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error

    def _hand_over(self, pending: list[tuple[ActionState, list[Record]]]) -> None:
        if self._error is not None:
            raise self._error
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="journalq-committer", daemon=True
                )
                self._thread.start()
        self._groups.put(pending)

    def _run(self) -> None:
        while (pending := self._groups.get()) is not None:
            if self._error is not None:
                continue
            try:
                self._sync(pending)
            except BaseException as exc:
                # The records of this group are not journaled, so the next
                # run copies those files again; this run stops with the error.
                self._error = exc

    def _sync(self, pending: list[tuple[ActionState, list[Record]]]) -> None:
        _, destination = self._store.state.paths(pending[0][0])
        assert destination is not None
        transfer.sync_filesystem(_existing_ancestor(destination))
        self._journal(pending)


def _existing_ancestor(path: str) -> str:
    """Return the nearest directory above ``path`` that exists.

    A group of deletes may have removed the directories of its first path.
    """
    directory = os.path.dirname(digest.local_path(path)) or "/"
    while not os.path.isdir(directory):
        directory = os.path.dirname(directory) or "/"
    return directory
