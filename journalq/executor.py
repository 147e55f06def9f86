"""The executor: runs a queue's waiting actions on a pool of threads.

A run goes round by round, and within a round stage by stage (see
:mod:`journalq.plan`): top-level actions whose paths overlap run in
separate rounds, in the order they were added, and a round's stages are
directories, then files and top-level actions, then deletes of files, then
deletes of directories deepest first. Within a stage, ``parallelism``
threads take batches of actions from a shared list.

Per action the journal gets ``started``, then, once the effect is durable at
the destination, ``completed``, or ``failed`` with the reason. Execution is
at least once, and every effect is idempotent: a copy goes to a temporary
name and is renamed, a mkdir tolerates an existing directory, and a delete
of a missing path succeeds. So a redo after a crash finds the destination
identical and records a skip. The effects themselves are in
:mod:`journalq.effects` and, for copies, :mod:`journalq.copy_effect`: this
module starts each attempt, retries or records the failure, and journals
the records an effect returns.

Copies of new files to a local disk are made durable in groups
(:mod:`journalq.groups`): a committer thread syncs the destination
filesystem once for many files, and only then are their ``completed``
records journaled. A file that replaces an existing one is synced on its
own before the rename, so a power cut cannot leave the old name pointing
at unwritten data.

A stage with many small new files between local disks also forks copy
processes (:mod:`journalq.copier`): they copy batches of those files while
the worker threads journal what comes back (:mod:`journalq.handout`). Such
a copy gets no ``started`` record, only ``completed`` once its group is
synced. A crash before that leaves it waiting, so the next run finds the
file identical.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Final

import fsspec
import msgspec

from journalq import (
    compare,
    copier,
    digest,
    dirtimes,
    durable,
    faults,
    inbox,
    parts,
    retry,
    transfer,
)
from journalq.backends import Filesystem
from journalq.copy_effect import CopyEffect, Interrupted
from journalq.effects import Effects, done_record, tree_end_record
from journalq.errors import DeleteConflictError
from journalq.events import Event, EventType, RunSummary
from journalq.groups import DurableGroup
from journalq.handout import Handout
from journalq.plan import (
    Entry,
    rounds,
    same_filesystem,
    stage,
)
from journalq.records import (
    Completed,
    Failed,
    Kind,
    Outcome,
    Record,
    Service,
    Started,
)
from journalq.replay import ActionState, CompactAction, Status
from journalq.store import QueueStore

__all__ = ["Executor", "RunContext", "RunOptions"]

logger = logging.getLogger(__name__)

#: Average file size from which copies between local disks use two threads.
LOCAL_THREAD_BYTES: Final = 1024 * 1024
#: Files below this size are copied by copy processes. A batch of them
#: ends within milliseconds, so a stop request is not held up. Large files
#: gain nothing there, because their copy is system calls that release the GIL.
COPY_PROCESS_BYTES: Final = 1024 * 1024
#: Seconds between two looks at the stop request while copy processes run.
_STOP_POLL: Final = 0.02
#: Small new files in a stage from which the copies go to forked processes.
#: Forking costs about a millisecond (estimate), and below a few hundred
#: files the run is over before that pays off.
COPY_PROCESS_FILES: Final = 256
#: The ``reason`` of the failure of a delete whose file changed after the
#: listing that planned it.
CONFLICT: Final = "conflict"
#: Largest batch of actions one worker takes at a time. Taking work in
#: batches rather than one future per file saves about 50 us per file.
MAX_BATCH: Final = 64
#: Largest batch of actions handed to a copy process at a time. Each batch
#: costs one durable "handed out" record (an fdatasync of the journal), so
#: these batches are larger than MAX_BATCH: 10,000 small files then take
#: about 40 such records instead of about 160.
MAX_PROCESS_BATCH: Final = 256
#: Largest sum of file sizes in a batch with more than one action. A copy
#: process has up to two batches and goes on copying them while the
#: coordinator is stopped (SIGSTOP), so this bounds what it copies then.
MAX_BATCH_BYTES: Final = 4 * 1024 * 1024


class RunOptions(msgspec.Struct):
    """How one run executes."""

    policy: compare.Policy = compare.Policy.CHECKSUM
    parallelism: int = 4
    max_attempts: int = retry.DEFAULT_MAX_ATTEMPTS
    dry_run: bool = False
    on_event: Callable[[Event], None] | None = None
    stop: threading.Event | None = None
    backoff: retry.Backoff | None = None
    #: Run only these actions and the items expanded from them.
    only: frozenset[str] | None = None
    #: The event types passed to ``on_event``; None passes all of them.
    event_types: frozenset[EventType] | None = None
    #: Entries listed when the trees were expanded in this process, by
    #: action id; each is used once, by the first attempt.
    hints: dict[str, tuple[Entry, Entry | None]] | None = None
    #: Makes the helpers that copy files elsewhere, for example on a
    #: cluster, given the run's source and destination. Each stage with
    #: copies gets its own, closed when the stage ends.
    helpers: Callable[[Filesystem, Filesystem], list[copier.Helper]] | None = None
    #: Files from this size on are copied in journaled parts.
    part_threshold: int = parts.PART_THRESHOLD


class RunContext(msgspec.Struct, frozen=True):
    """The queue store, the two filesystems and the options of one run.

    The executor makes one per run and shares it with the effects
    (:mod:`journalq.effects`, :mod:`journalq.copy_effect`) and the hand-out
    (:mod:`journalq.handout`).
    """

    store: QueueStore
    source: Filesystem
    destination: Filesystem
    options: RunOptions


class Executor:
    """Runs the waiting actions of one queue.

    Besides :meth:`run`, its public methods are what
    :class:`journalq.handout.Handout` calls for the copies it hands out:
    the steps in the life of one action, and whether the run should stop.
    """

    def __init__(
        self,
        store: QueueStore,
        source: Filesystem,
        destination: Filesystem,
        options: RunOptions,
    ) -> None:
        self.context = RunContext(store, source, destination, options)
        self.summary = RunSummary()
        #: The failures for good of a dry run, which journals none, each
        #: with the record a real run would have journaled.
        self.dry_run_failures: list[tuple[ActionState, Failed]] = []
        self._summary_lock = threading.Lock()
        self._backoff = options.backoff or retry.Backoff()
        self._event_types = (
            options.event_types
            if options.event_types is not None
            else frozenset(EventType)
        )
        self._inbox_lock = threading.Lock()
        #: The queue's inbox directory, which :meth:`poll_inbox` watches.
        self.inbox_dir = os.path.join(store.directory, inbox.INBOX_DIR)
        #: The inbox directory's mtime when :meth:`poll_inbox` last read the
        #: inbox; ``None`` while there was no inbox directory.
        self.inbox_stamp: int | None = None
        self._copy = CopyEffect(
            self.context, stopping=self.stopping, progress=self._callback
        )
        self._effects = Effects(self.context, self._copy)
        self._handout = Handout(self, self._copy)

    # Scheduling ---------------------------------------------------------------

    def run(self) -> RunSummary:
        """Execute every waiting action; return what the run did."""
        started = time.monotonic()
        store = self.context.store
        dry_run = self.context.options.dry_run
        # Only the stage lists refer to the actions from here on.
        stages = self._schedule(self._waiting())

        logger.info(
            "running %d actions of queue %s",
            sum(len(actions) for actions in stages.values()),
            store.directory,
        )
        # One durable group spans the stages: the files of a stage need the
        # directories of the one before to exist, not to be durable, so the
        # mkdir records wait for the first sync of the copies behind them.
        group = DurableGroup(
            store,
            enabled=self.context.destination.local and not dry_run,
            journal=self._commit_all,
        )
        try:
            for key in sorted(stages):
                if self.stopping():
                    break
                self._run_stage(stages.pop(key), group)
        finally:
            group.commit()

        open_trees = 0
        if not dry_run:
            open_trees = self._finish_parents()
            store.flush()
        self.summary.elapsed = time.monotonic() - started
        self.summary.interrupted = self.stopping()
        # A tree waiting for its items is no work of its own.
        self.summary.remaining = store.state.counts[Status.WAITING] - open_trees
        summary = self.summary
        logger.info(
            "%s %d, skipped %d, failed %d, %d bytes in %.1f s%s",
            "dry run ended: would copy" if dry_run else "run ended: copied",
            summary.copied,
            summary.skipped,
            summary.failed,
            summary.bytes,
            summary.elapsed,
            ", interrupted" if summary.interrupted else "",
        )
        return summary

    def _waiting(self) -> list[ActionState]:
        """Return the actions this run executes, in the order they were added."""
        waiting: list[ActionState] = []
        only = self.context.options.only
        for action in self.context.store.state.actions.values():
            if action.status is not Status.WAITING or action.kind in _PARENTS:
                continue
            if only is not None and not (
                action.action_id in only or action.added.parent in only
            ):
                continue
            waiting.append(action)
        return waiting

    def _schedule(
        self, waiting: list[ActionState]
    ) -> dict[tuple[int, int, int], list[ActionState]]:
        """Group ``waiting`` by (round, stage); see :mod:`journalq.plan`.

        A tree's items take the round of their tree, which is placed where
        the tree was added among the top-level actions.
        """
        state = self.context.store.state
        units = {action.added.parent or action.action_id for action in waiting}
        # The actions dict keeps the order in which they were added.
        in_order = [
            state.actions[action_id].added
            for action_id in state.actions
            if action_id in units
        ]
        shared = same_filesystem(self.context.source.fs, self.context.destination.fs)
        placed = rounds(in_order, shared=shared)
        stages: dict[tuple[int, int, int], list[ActionState]] = defaultdict(list)
        for action in waiting:
            round_ = placed[action.added.parent or action.action_id]
            stages[(round_, *stage(action.added))].append(action)
        return stages

    def stopping(self) -> bool:
        """Return whether the run was asked to stop."""
        stop = self.context.options.stop
        return stop is not None and stop.is_set()

    def _workers(self, actions: list[ActionState]) -> int:
        """Return how many threads to run ``actions`` on.

        Between two local disks a copy is system calls and a little Python,
        and threads only trade the GIL. On the 2-core development VM four
        threads copied small files about 1.5x slower than one, and large
        files gained nothing past two. Remote backends spend their time
        waiting, so there every requested thread helps.
        """
        context = self.context
        workers = max(1, min(context.options.parallelism, len(actions)))
        if not (context.source.local and context.destination.local):
            return workers
        sizes = [action.added.size or 0 for action in actions]
        average = sum(sizes) / len(sizes)
        return 1 if average < LOCAL_THREAD_BYTES else min(workers, 2)

    def _copy_processes(self, actions: list[ActionState]) -> int:
        """Return how many copy processes to fork for ``actions``.

        Only for copies between local disks, and only when a stage has
        many small files: see :mod:`journalq.copier`. One process per core,
        up to ``parallelism``.
        """
        context = self.context
        if not (context.source.local and context.destination.local):
            return 0
        if not copier.available():
            return 0
        small = sum(
            1
            for action in actions
            if action.kind is Kind.COPY_FILE
            and (action.added.size or 0) < COPY_PROCESS_BYTES
        )
        if small < COPY_PROCESS_FILES:
            return 0
        return max(1, min(context.options.parallelism, os.cpu_count() or 1))

    def _make_helpers(self, actions: list[ActionState]) -> list[copier.Helper]:
        """Return the helpers for a stage: the run's own, or copy processes."""
        context = self.context
        if context.options.dry_run:
            return []
        factory = context.options.helpers
        if factory is not None:
            if any(action.kind is Kind.COPY_FILE for action in actions):
                return factory(context.source, context.destination)
            return []
        return [
            copier.CopyProcess(COPY_PROCESS_BYTES, self.inbox_dir)
            for _ in range(self._copy_processes(actions))
        ]

    def _run_stage(self, actions: list[ActionState], group: DurableGroup) -> None:
        helpers = self._make_helpers(actions)
        processes = len(helpers)
        workers = processes or self._workers(actions)
        # Helpers that journal a started record per action (Dask workers)
        # gain nothing from larger batches, which would only bunch their work.
        handed_out = any(not helper.journals_start for helper in helpers)
        largest = MAX_PROCESS_BATCH if handed_out else MAX_BATCH
        size = max(1, min(largest, len(actions) // (workers * 4) or 1))
        # A batch ends early where its files reach MAX_BATCH_BYTES together;
        # an action of unknown size counts as none.
        batches = copier.split_batches(actions, _action_bytes, MAX_BATCH_BYTES, size)
        batches.reverse()
        # The batches hold the only references now, so each finished batch
        # lets its actions go once compaction has replaced them in the state.
        actions.clear()
        lock = threading.Lock()

        def take() -> list[ActionState] | None:
            with lock:
                return batches.pop() if batches else None

        if workers == 1 and not processes:
            self._work(take, group)
            return
        errors: list[BaseException] = []

        def work(helper: copier.Helper | None) -> None:
            try:
                if helper is None:
                    self._work(take, group)
                else:
                    self._handout.feed(take, group, helper)
            except BaseException as exc:
                # A journal failure (disk full, fsync error) ends the run;
                # the other workers stop taking batches.
                errors.append(exc)
                with lock:
                    batches.clear()

        threads = [
            threading.Thread(
                target=work,
                args=(helpers[index] if helpers else None,),
                daemon=True,
            )
            for index in range(workers)
        ]
        for thread in threads:
            thread.start()
        recalled = False
        for thread in threads:
            while thread.is_alive():
                thread.join(_STOP_POLL)
                if processes and not recalled and self.stopping():
                    recalled = True
                    self._recall_batches()
        for helper in helpers:
            helper.close()
        if errors:
            raise errors[0]

    def _recall_batches(self) -> None:
        """Make the copy processes hand back the files they have not started.

        Before each file a copy process compares the inbox's mtime with the
        one its batch was sent with (see :mod:`journalq.copier`). Moving the
        mtime on by 1 ns makes each hand back the rest of its batches, so a
        stop does not wait for up to two batches of 256 files per process.
        """
        try:
            try:
                info = os.stat(self.inbox_dir)
            except FileNotFoundError:
                # No request was ever posted, so the batches went out with no
                # mtime, and the directory's appearance is the change.
                with contextlib.suppress(FileExistsError):
                    os.mkdir(self.inbox_dir, 0o700)
                return
            os.utime(self.inbox_dir, ns=(info.st_atime_ns, info.st_mtime_ns + 1))
        except OSError as exc:
            logger.warning(
                "could not change the mtime of %s, so the copy processes finish "
                "their batches before the run stops: %s",
                self.inbox_dir,
                exc,
            )

    def _work(
        self, take: Callable[[], list[ActionState] | None], group: DurableGroup
    ) -> None:
        while (batch := take()) is not None:
            for action in batch:
                if self.stopping():
                    return
                self.poll_inbox()
                self.run_action(action, group)

    def poll_inbox(self) -> None:
        """Journal what other processes handed off since the last look.

        Posting a request renames a file into the inbox directory, which
        changes the directory's mtime, so one stat per action shows whether
        there is anything to read. A cancel handed off during the run then
        takes effect for every action not yet started; added actions run
        once this pass ends. A thread that finds a change while another one
        drains waits for that drain, so it starts nothing the cancel names.
        """
        try:
            stamp = os.stat(self.inbox_dir).st_mtime_ns
        except FileNotFoundError:
            return
        if stamp == self.inbox_stamp:
            return
        with self._inbox_lock:
            if stamp == self.inbox_stamp:
                return
            self.context.store.drain_inbox()
            # A request posted during the drain changed the mtime again, so
            # the next look drains once more.
            self.inbox_stamp = stamp

    # One action ---------------------------------------------------------------

    def run_action(self, action: ActionState, group: DurableGroup) -> None:
        """Run ``action`` here, with retries, and journal how it ended."""
        tries = 0
        while True:
            tries += 1
            attempt = action.attempts + 1
            if not self.context.options.dry_run and not self._start(action, attempt):
                return
            try:
                records = self._effects.execute(action, attempt, group)
            except Interrupted:
                self.record_failure(action, attempt, _interrupted_error(), True)
                # The parts a stopped large copy journaled were sent by this
                # run, so its summary counts them.
                stopped = self._copy.stopped_bytes(action.action_id)
                with self._summary_lock:
                    self.summary.bytes += stopped
                return
            except Exception as exc:  # every failure is recorded
                if not self._handle_failure(action, attempt, tries, exc):
                    return
                continue
            if records is not None:
                self.finish(action, records, group)
            return

    def _start(self, action: ActionState, attempt: int) -> bool:
        started = self.context.store.start(
            action.action_id, Started(action.action_id, attempt, time.time_ns())
        )
        if started:
            self.emit(EventType.STARTED, action, attempt=attempt)
        return started

    def _handle_failure(
        self, action: ActionState, attempt: int, tries: int, exc: Exception
    ) -> bool:
        """Record a failed attempt; return whether to try again now."""
        transient = retry.classify(exc) == "transient"
        if transient and self.stopping():
            # The action waits for the next run, as if it had not started.
            self.record_failure(action, attempt, exc, True)
            return False
        if transient and tries < self.context.options.max_attempts:
            self.record_failure(action, attempt, exc, True)
            with self._summary_lock:
                self.summary.retried += 1
            self.emit(EventType.RETRIED, action, attempt=attempt, error=_describe(exc))
            delay = self._backoff.delay(tries)
            logger.info("retrying %s in %.2fs after %s", action.action_id, delay, exc)
            stop = self.context.options.stop
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
            return not self.stopping()

        self.record_failure(action, attempt, exc, False)
        with self._summary_lock:
            self.summary.failed += 1
        self.emit(EventType.FAILED, action, attempt=attempt, error=_describe(exc))
        logger.warning("failed %s: %s", self._label(action), _describe(exc))
        return False

    def record_failure(
        self, action: ActionState, attempt: int, exc: BaseException, retryable: bool
    ) -> None:
        """Journal a ``failed`` record for ``attempt``.

        A dry run journals nothing and keeps a failure for good in
        :attr:`dry_run_failures` instead.
        """
        record = Failed(
            action.action_id,
            attempt,
            type(exc).__name__,
            _describe(exc),
            retryable,
            reason=CONFLICT if isinstance(exc, DeleteConflictError) else "",
            finished_ns=time.time_ns(),
        )
        if not self.context.options.dry_run:
            self.context.store.append([record], durable=not retryable)
        elif not retryable:
            with self._summary_lock:
                self.dry_run_failures.append((action, record))

    def finish(
        self, action: ActionState, records: list[Record], group: DurableGroup
    ) -> None:
        """Journal the records of a finished effect, or add them to ``group``."""
        completed = records[-1]
        assert isinstance(completed, Completed)
        if group.wants(action, completed):
            group.add(action, records)
            return
        if group.enabled and action.crashes:
            if group.changes_entries(action):
                self._sync_entries(action)
            elif completed.outcome is Outcome.SKIPPED and action.kind is Kind.COPY_FILE:
                self._sync_skipped(action)
        self._commit(action, records)

    def _sync_skipped(self, action: ActionState) -> None:
        """Sync the local destination file that a skipped copy found identical.

        A run killed after writing it may have left its bytes in the page
        cache only.
        """
        _, path = self.context.store.state.paths(action)
        assert path is not None
        durable.fsync_file(digest.local_path(path))

    def _sync_entries(self, action: ActionState) -> None:
        """Sync the directory above the path of a local mkdir or delete.

        That makes its directory entry durable without waiting for a
        group's filesystem sync. A top-level mkdir may have created parents
        too, so every directory above it is synced. A tree's mkdir needs
        only its parent, because each directory of a tree has a mkdir of
        its own.
        """
        _, path = self._effects.service_path(action)
        directory = os.path.dirname(digest.local_path(path).rstrip("/"))
        while directory:
            durable.ops.fsync_dir(directory)
            parent = os.path.dirname(directory)
            if action.added.parent is not None or parent == directory:
                break
            directory = parent

    def _commit(self, action: ActionState, records: list[Record]) -> None:
        self._commit_all([(action, records)])

    def _commit_all(self, finished: list[tuple[ActionState, list[Record]]]) -> None:
        """Journal the records of ``finished`` actions in one append."""
        if not self.context.options.dry_run:
            store = self.context.store
            store.append(
                [record for _, records in finished for record in records],
                durable=False,
            )
            store.release(action.action_id for action, _ in finished)
        for action, records in finished:
            self._count(action, records[-1])

    def _count(self, action: ActionState, completed: Record) -> None:
        """Add one finished action to the summary and emit its event.

        A copy counts the bytes this run sent: a large copy resumed from
        parts that an earlier run journaled leaves those parts out.
        """
        assert isinstance(completed, Completed)
        sent = self._copy.sent_bytes(action.action_id, completed.bytes)
        with self._summary_lock:
            if completed.outcome is Outcome.COPIED:
                self.summary.copied += 1
                self.summary.bytes += sent
                self.summary.resumed_bytes += completed.bytes - sent
            elif completed.outcome is Outcome.SKIPPED:
                self.summary.skipped += 1
            else:
                self.summary.done += 1
                if action.kind is Kind.DELETE:
                    self.summary.deleted += 1
        event = (
            EventType.SKIPPED
            if completed.outcome is Outcome.SKIPPED
            else EventType.COMPLETED
        )
        self.emit(
            event,
            action,
            attempt=completed.attempt,
            bytes=sent,
            method=completed.method,
        )

    # Parents, events ----------------------------------------------------------

    def _finish_parents(self) -> int:
        """Complete each tree whose files all ended; fail it if any failed.

        Returns how many trees still wait for some of their items.
        """
        children: dict[str, list[ActionState]] = defaultdict(list)
        state = self.context.store.state
        for action in state.actions.values():
            # A compacted child has ended (completed or canceled), so it can
            # neither hold its tree open nor fail it, and reading its parent
            # would decode its packed history.
            if type(action) is CompactAction:
                continue
            if action.added.parent is not None:
                children[action.added.parent].append(action)
        records: list[Record] = []
        open_trees = 0
        for action in state.actions.values():
            if action.kind not in _PARENTS or action.terminal:
                continue
            if action.children is None:
                continue
            kids = children.get(action.action_id, [])
            if any(not kid.terminal for kid in kids):
                if action.status is Status.WAITING:
                    open_trees += 1
                continue
            if not kids and not action.skipped:
                records.append(self._finish_empty_tree(action, action.attempts + 1))
            else:
                records.append(
                    tree_end_record(action, kids, self.context.store.directory)
                )
            # Before the ending is journaled, so that a run killed in between
            # sets them when the next run ends the tree again.
            self._set_directory_mtimes(action)
            # Files found identical when the tree was listed have no action
            # of their own; they count as skipped in the run that ends it.
            with self._summary_lock:
                self.summary.skipped += action.skipped
                self.summary.identical_when_listed += action.skipped
        if records:
            self.context.store.append(records, durable=True)
        return open_trees

    def _set_directory_mtimes(self, tree: ActionState) -> None:
        """Give the directories of ``tree`` their source's mtimes, as rsync -a."""
        if not tree.directory_mtimes:
            return
        destination = self.context.destination
        if not dirtimes.can_set(destination):
            return
        faults.point("executor.before_directory_mtimes")
        _, root = self.context.store.state.paths(tree)
        assert root is not None
        dirtimes.set_directory_mtimes(destination, root, tree.directory_mtimes)

    def _finish_empty_tree(self, action: ActionState, attempt: int) -> Record:
        """End a tree whose source was empty, making its destination directory.

        ``cp -r`` and rsync make that directory, and a script that copies a
        directory expects the copy to exist, empty or not.
        """
        _, destination = self.context.store.state.paths(action)
        assert destination is not None
        if not self.context.options.dry_run:
            try:
                if self.context.destination.local:
                    # Synced, as the records that follow claim it is there.
                    path = digest.local_path(destination)
                    transfer.make_directories(path, fsync=True)
                else:
                    self.context.destination.fs.makedirs(destination, exist_ok=True)
            except OSError as exc:
                message = f"cannot make the destination directory {destination}: {exc}"
                with self._summary_lock:
                    self.summary.failed += 1
                self.emit(EventType.FAILED, action, attempt=attempt, error=message)
                logger.warning("failed %s: %s", self._label(action), message)
                return Failed(
                    action.action_id,
                    attempt,
                    type(exc).__name__,
                    message,
                    False,
                    finished_ns=time.time_ns(),
                )
        return done_record(action, attempt, "tree")

    def emit(self, type_: EventType, action: ActionState, **fields: object) -> None:
        """Pass an event about ``action`` to ``on_event``, if it takes that type."""
        on_event = self.context.options.on_event
        if on_event is None or type_ not in self._event_types:
            return
        source, destination = self.context.store.state.paths(action)
        # A mkdir, delete or list of a tree's item has one path, on its side.
        service = action.added.service
        if service is Service.DESTINATION:
            source = None
        elif service is Service.SOURCE:
            destination = None
        # A file added without its size gets one once its copy stats it.
        total = fields.pop("total", action.added.size)
        on_event(
            Event(
                type_,
                action.action_id,
                str(action.kind),
                source=source,
                destination=destination,
                total=total,  # type: ignore[arg-type]
                **fields,  # type: ignore[arg-type]
            )
        )

    def _callback(
        self, action: ActionState, attempt: int, size: int
    ) -> fsspec.callbacks.Callback | None:
        on_event = self.context.options.on_event
        if on_event is None or EventType.PROGRESS not in self._event_types:
            return None
        return _ProgressCallback(self, action, attempt, size)

    def _label(self, action: ActionState) -> str:
        """Return ``KIND SOURCE -> DESTINATION`` for a log line, paths as URLs."""
        source, destination = self.context.store.state.paths(action)
        if source is not None:
            source = self.context.source.url_of(source)
        if destination is not None:
            destination = self.context.destination.url_of(destination)
        return f"{action.kind} {source or ''} -> {destination or ''}".strip()


class _ProgressCallback(fsspec.callbacks.Callback):
    """Turns fsspec's byte counts for one copy into ``progress`` events."""

    def __init__(
        self, executor: Executor, action: ActionState, attempt: int, size: int
    ) -> None:
        super().__init__(size=size)
        self._executor = executor
        self._action = action
        self._attempt = attempt

    def call(self, *args: object, **kwargs: object) -> None:
        self._executor.emit(
            EventType.PROGRESS,
            self._action,
            attempt=self._attempt,
            bytes=self.value,
            total=self.size,
        )


_PARENTS: Final = frozenset({Kind.COPY_TREE, Kind.SYNC})


def _action_bytes(action: ActionState) -> int:
    return action.added.size or 0


def _interrupted_error() -> Exception:
    return InterruptedError("the run was stopped before this action finished")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__
