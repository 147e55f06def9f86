"""Hand-out: batches of new small files copied by helpers, journaled here.

A stage with many small new files between local disks forks copy
processes (:mod:`journalq.copier`), and a run on a cluster
(:mod:`journalq.cluster`) gets helpers of its own. Each worker thread of
such a stage owns one helper. :meth:`Handout.feed` takes the thread's
batches, sends the helper the copies it can take, and journals the
outcomes as they come back, with the helper copying the next batch
meanwhile. Every other action, and every copy the helper failed, runs
here through :meth:`journalq.executor.Executor.run_action`, so its
failures are classified, retried and worded as any other.

A batch for a copy process gets one ``handed out`` record
(:class:`journalq.records.HandedOut`), durable before the batch is sent,
and each action ``completed`` once its durable group
(:mod:`journalq.groups`) is synced. So ``status`` in another process
shows the batch in progress, and after a crash the next open sweeps
their temporary files. They are returned without an attempt used or a
crash counted, so the resumed run hands them to a copy process again,
which copies or verifies them. A pending cancel ends those whose
destination does not have the source's size and mtime
(:func:`journalq.opening.recover`). A
helper whose copies may outlive this process gets a ``started`` record
per action instead.

A copy process hands back the files it has not started once the queue's
inbox changes (see :mod:`journalq.copier`). A ``returned`` record makes
them wait again, with no attempt used, and their reservations end, which
decides the cancels held for them (:meth:`journalq.store.QueueStore.release`):
a cancel ends them. The thread then reads the inbox and hands out again
what still waits.

The executor owns one :class:`Handout`, which calls back into the executor
for the life of each action: running it, recording a failure, emitting
events and finishing it.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import msgspec

from journalq import compare, copier, digest, transfer
from journalq.copy_effect import CopyEffect
from journalq.events import EventType
from journalq.groups import DurableGroup
from journalq.records import Kind, Started
from journalq.replay import ActionState, Status

if TYPE_CHECKING:
    from journalq.executor import Executor

__all__ = ["Handout"]

# The executor's logger, which these lines used before they moved here:
# the CLI prints the logger's name, and counts the executor's warnings
# against its limit on failure warnings.
logger = logging.getLogger("journalq.executor")


class _Handed(msgspec.Struct):
    """A batch out at a copy process, and the clock read before it went."""

    items: list[tuple[ActionState, copier.Task]]
    observed_ns: int


#: The attempt of a copy handed to a helper: helpers take first attempts only.
_HANDED_ATTEMPT: Final = 1


class _HandedCopyFailed(OSError):
    """A helper returned no outcome for a copy (transient: it runs here)."""

    def __init__(self, action_id: str) -> None:
        super().__init__(
            f"the helper that copied action {action_id} returned no outcome; "
            "this process copies the file again"
        )


class Handout:
    """Hands batches of copies to helpers and journals what they copied."""

    def __init__(self, executor: Executor, copy: CopyEffect) -> None:
        self._executor = executor
        self._copy = copy
        self.context = executor.context

    def feed(
        self,
        take: Callable[[], list[ActionState] | None],
        group: DurableGroup,
        helper: copier.Helper,
    ) -> None:
        """Run batches from ``take``, with the new small files copied by ``helper``.

        It replaces :meth:`journalq.executor.Executor._work` in a worker
        thread that has a helper.

        The helper does the copies of a batch; this thread journals them
        as they come back. An action the helper cannot take (an existing
        destination, a retry, a large file) or whose copy failed there runs
        here, so its failure is handled as any other.
        """
        # Two batches are out at a time, so the helper copies the next one
        # while this thread journals the last.
        out: collections.deque[_Handed] = collections.deque()
        handed_back: list[ActionState] = []
        while True:
            if self._executor.stopping():
                batch = None
            elif handed_back:
                batch, handed_back = handed_back, []
            else:
                batch = take()
            if batch is not None:
                self._executor.poll_inbox()
                handed = self._hand(batch, group, helper)
                if handed is not None:
                    out.append(handed)
            if out and (batch is None or len(out) > 1):
                handed_back += self._collect(out.popleft(), group, helper)
            elif batch is None:
                return

    def _hand(
        self,
        batch: list[ActionState],
        group: DurableGroup,
        helper: copier.Helper,
    ) -> _Handed | None:
        """Send ``helper`` what it can copy of ``batch``; run the rest here."""
        handed: list[tuple[ActionState, copier.Task]] = []
        for action in batch:
            task = None if helper.broken else self._task(action, helper)
            if task is None:
                self._executor.run_action(action, group)
            else:
                handed.append((action, task))
        if not handed:
            return None
        # The inbox's mtime when it was last read, before the reservation: a
        # request posted since, or read by another thread, changes the mtime
        # that the helper compares with this, so it hands the batch back.
        inbox_mtime_ns = self._executor.inbox_stamp
        handed_ids = self._take_out([action for action, _ in handed], helper)
        handed = [item for item in handed if item[0].action_id in handed_ids]
        if not handed:
            return None
        observed_ns = time.time_ns()
        try:
            helper.send([task for _, task in handed], inbox_mtime_ns)
        except OSError as exc:
            logger.warning("copying without that process from now on: %s", exc)
            for action, _ in handed:
                self._run_here(action, helper, exc, group)
            return None
        return _Handed(handed, observed_ns)

    def _take_out(self, actions: list[ActionState], helper: copier.Helper) -> set[str]:
        """Journal ``actions`` as started before ``helper`` may copy them.

        A helper whose copies may outlive this process gets a ``started``
        record per action, and a failed copy there ends as a failed attempt
        (:meth:`_run_here`). A copy process gets one ``handed out`` record
        for the batch, made durable before the batch is sent, and the
        actions stay reserved so that a cancel waits for their outcome.
        Returns the ids taken out.
        """
        store = self.context.store
        if helper.journals_start:
            now = time.time_ns()
            return store.start_all(
                Started(action.action_id, _HANDED_ATTEMPT, now) for action in actions
            )
        return store.hand_out((action.action_id for action in actions), _HANDED_ATTEMPT)

    def _run_here(
        self,
        action: ActionState,
        helper: copier.Helper,
        error: BaseException,
        group: DurableGroup,
    ) -> None:
        """Run here a handed-out action whose copy came back without an outcome.

        ``error`` gives the reason, for a helper whose copies may outlive this
        process: its started attempt ends as a transient failure, and the
        next attempt, here, sweeps what the helper may have left behind. A
        copy process's action waits again instead, with no attempt used,
        so a cancel held for it takes effect, and otherwise its first
        attempt here replaces what the process may have written.
        NOTE: a copy process that died after renaming a file into place,
        or whose ``stat`` after the rename failed, returns no outcome
        either, so a cancel held for that file ends it although the file
        was copied.
        """
        store = self.context.store
        if helper.journals_start:
            self._executor.record_failure(action, _HANDED_ATTEMPT, error, True)
        else:
            store.hand_back([action.action_id], _HANDED_ATTEMPT)
            store.release([action.action_id])
        self._executor.run_action(action, group)

    def _collect(
        self, handed: _Handed, group: DurableGroup, helper: copier.Helper
    ) -> list[ActionState]:
        """Journal what ``helper`` copied of a batch; copy its failures here.

        Returns the actions that ``helper`` handed back without starting
        them, which wait again (:meth:`journalq.store.QueueStore.hand_back`).
        """
        already_broken = helper.broken
        try:
            outcomes: list[copier.Outcome] = helper.receive()
        except OSError as exc:
            if not already_broken:
                logger.warning("copying without that process from now on: %s", exc)
            outcomes = [None] * len(handed.items)
        handed_back: list[ActionState] = []
        for (action, _), outcome in zip(handed.items, outcomes, strict=True):
            if isinstance(outcome, copier.HandedBack):
                handed_back.append(action)
            elif outcome is None:
                error = _HandedCopyFailed(action.action_id)
                self._run_here(action, helper, error, group)
            else:
                self._finish_handed(action, outcome, helper, handed.observed_ns, group)
        if handed_back:
            # Not started there, so a cancel that came meanwhile ends them,
            # and the thread hands out again those that still wait.
            handed_back_ids = [action.action_id for action in handed_back]
            self.context.store.hand_back(handed_back_ids, _HANDED_ATTEMPT)
            self.context.store.release(handed_back_ids)
        return handed_back

    def _task(self, action: ActionState, helper: copier.Helper) -> copier.Task | None:
        """Return the helper's task for ``action``, if it can take it.

        It takes first attempts of files up to its size limit: with the
        sizes just listed when their destination was missing, or, in a
        resumed run, with the size the journal records and no listing.
        """
        limit = helper.max_bytes
        if (
            action.kind is not Kind.COPY_FILE
            or action.attempts
            or action.status is not Status.WAITING
            or (limit is not None and (action.added.size or 0) >= limit)
        ):
            return None
        # Under the checksum policy a destination found in place is hashed
        # by the helper too; the other policies decide from a stat, here. A
        # file listed without a destination is copied without looking again.
        checksum = self._copy.policy(action) is compare.Policy.CHECKSUM
        compares = checksum
        size, mtime_ns = -1, None
        hints = self.context.options.hints
        hint = hints.get(action.action_id) if hints else None
        if hint is not None:
            entry, target = hint
            size, mtime_ns = entry[0], entry[1]
            if mtime_ns is None:
                return None
            if target is not None and not (checksum and target[0] == size):
                return None
            compares = target is not None
            del hints[action.action_id]
        source_path, destination_path = self.context.store.state.paths(action)
        assert source_path is not None
        assert destination_path is not None
        return copier.Task(
            action.action_id,
            digest.local_path(source_path),
            digest.local_path(destination_path),
            size,
            mtime_ns,
            compares,
        )

    def _finish_handed(
        self,
        action: ActionState,
        outcome: copier.Copied | copier.Identical,
        helper: copier.Helper,
        observed_ns: int,
        group: DurableGroup,
    ) -> None:
        attempt = _HANDED_ATTEMPT
        if action.terminal:
            self.context.store.release([action.action_id])
            return
        if isinstance(outcome, copier.Identical):
            self._finish_identical(action, outcome, helper, observed_ns, group)
            return
        bytes_copied = outcome.bytes
        stamp = outcome.source_stamp
        ctime_ns, inode = stamp if stamp is not None else (None, None)
        # The bytes are written already; the completion waits for the sync.
        self._executor.emit(EventType.STARTED, action, attempt=attempt)
        self._executor.emit(
            EventType.PROGRESS, action, attempt=attempt, bytes=bytes_copied
        )
        source_path, destination_path = self.context.store.state.paths(action)
        assert source_path is not None
        assert destination_path is not None
        records = self._copy.copy_records(
            action,
            attempt,
            (source_path, destination_path),
            compare.FileInfo(
                bytes_copied, outcome.mtime_ns, ctime_ns=ctime_ns, inode=inode
            ),
            transfer.CopyResult(bytes_copied, outcome.digest),
            observed_ns,
            sets_mtime=outcome.mtime_set,
            written=outcome.destination_stamp,
            etag=outcome.etag,
        )
        self._executor.finish(action, records, group)

    def _finish_identical(
        self,
        action: ActionState,
        outcome: copier.Identical,
        helper: copier.Helper,
        observed_ns: int,
        group: DurableGroup,
    ) -> None:
        """Journal the skip of a copy whose destination the helper found identical."""
        source_ctime, source_inode = outcome.source_stamp
        destination_ctime, destination_inode = outcome.destination_stamp
        files = (
            compare.FileInfo(
                outcome.size,
                outcome.source_mtime_ns,
                ctime_ns=source_ctime,
                inode=source_inode,
            ),
            compare.FileInfo(
                outcome.size,
                outcome.destination_mtime_ns,
                ctime_ns=destination_ctime,
                inode=destination_inode,
            ),
        )
        records = self._copy.identical_records(
            action, _HANDED_ATTEMPT, files, outcome.digest, observed_ns
        )
        if records is None:
            error = _HandedCopyFailed(action.action_id)
            self._run_here(action, helper, error, group)
            return
        self._executor.emit(EventType.STARTED, action, attempt=_HANDED_ATTEMPT)
        self._executor.finish(action, records, group)
