"""Replay: fold journal records into the state of a queue.

The fold is pure: it reads records and updates a :class:`QueueState`, with no
file or network access, so a queue's state is exactly the fold of its
journal, and a snapshot is that state written down at one sequence number.

Rules of the fold:

* Records are applied in journal order (by sequence number).
* ``completed``, ``canceled`` and a ``failed`` record that is not retryable
  are terminal: every later record for that action is ignored.
* A retryable ``failed`` record ends one attempt: the action waits again and
  keeps its attempt count and the error.
* An ``added`` record for an action id that already exists is a duplicate
  and changes nothing, which makes a re-expanded tree or a re-ingested
  hand-off file harmless.

:func:`reset_interrupted` runs once when a queue is opened for a run: it
returns the records that make actions a crashed run left in progress wait
again, or fail when crashes alone have used up their attempts.
"""

from __future__ import annotations

import enum
import posixpath
from collections.abc import Iterable
from typing import Final

import msgspec

from journalq.records import (
    ActionAdded,
    Canceled,
    Completed,
    Digested,
    Expanded,
    Failed,
    Kind,
    Outcome,
    Progress,
    QueueCreated,
    Record,
    Service,
    SnapshotTaken,
    Started,
)

__all__ = [
    "ActionState",
    "QueueState",
    "Status",
    "decode_state",
    "encode_state",
    "fold",
    "reset_interrupted",
]

#: Reason of the retryable failure journaled for an action that a crashed
#: run left in progress.
CRASHED: Final = "crashed"
#: Reason recorded when crashes alone used up an action's attempts.
CRASH_LOOP: Final = "crash_loop"


class Status(enum.StrEnum):
    """Where an action is in its life."""

    WAITING = "waiting"
    INPROGRESS = "inprogress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL: Final = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELED})


class ActionState(msgspec.Struct, array_like=True, gc=False):
    """One action as the journal has it so far.

    ``gc=False`` keeps a million of these out of the cyclic garbage
    collector; they hold no reference cycles.
    """

    added: ActionAdded
    status: Status = Status.WAITING
    attempts: int = 0
    bytes: int = 0
    completed: Completed | None = None
    error: Failed | None = None
    children: int | None = None
    crashes: int = 0
    #: Files of a tree found identical when it was listed.
    skipped: int = 0

    @property
    def action_id(self) -> str:
        return self.added.action_id

    @property
    def kind(self) -> Kind:
        return self.added.kind

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class QueueState:
    """The folded state of one queue."""

    def __init__(self) -> None:
        self.created: QueueCreated | None = None
        self.actions: dict[str, ActionState] = {}
        #: Request key -> id of the newest action added for it.
        self.by_key: dict[str, str] = {}
        #: Request key -> how many actions were added for it.
        self.generations: dict[str, int] = {}
        self.counts: dict[Status, int] = dict.fromkeys(Status, 0)
        self.skipped = 0
        self.bytes = 0
        self.digests: dict[tuple[Service, str], Digested] = {}
        self.last_lsn = 0
        self.snapshot: SnapshotTaken | None = None

    def apply(self, record: Record) -> None:
        """Fold one record into the state."""
        match record:
            case Progress(action_id=action_id, bytes=done):
                action = self.actions.get(action_id)
                if action is not None and action.status is Status.INPROGRESS:
                    action.bytes = done
            case Started(action_id=action_id, attempt=attempt):
                self._start(action_id, attempt)
            case Completed():
                self._complete(record)
            case ActionAdded():
                self._add(record)
            case Failed():
                self._fail(record)
            case Canceled(action_id=action_id):
                self._cancel(action_id)
            case Expanded():
                self._expanded(record)
            case Digested(service=service, path=path):
                self.digests[(service, path)] = record
            case QueueCreated():
                if self.created is None:
                    self.created = record
            case SnapshotTaken():
                self.snapshot = record

    def apply_all(self, records: Iterable[Record]) -> None:
        for record in records:
            self.apply(record)

    def _set_status(self, action: ActionState, status: Status) -> None:
        self.counts[action.status] -= 1
        self.counts[status] += 1
        action.status = status

    def _add(self, record: ActionAdded) -> None:
        if record.action_id in self.actions:
            return
        self.actions[record.action_id] = ActionState(record)
        self.counts[Status.WAITING] += 1
        if record.key:
            self.by_key[record.key] = record.action_id
            self.generations[record.key] = self.generations.get(record.key, 0) + 1

    def _expanded(self, record: Expanded) -> None:
        action = self.actions.get(record.action_id)
        if action is None or action.children is not None:
            return
        action.children = record.children
        action.skipped = record.skipped
        self.skipped += record.skipped

    def _start(self, action_id: str, attempt: int) -> None:
        action = self.actions.get(action_id)
        if action is None or action.terminal:
            return
        action.attempts = max(action.attempts, attempt)
        action.bytes = 0
        self._set_status(action, Status.INPROGRESS)

    def _complete(self, record: Completed) -> None:
        action = self.actions.get(record.action_id)
        if action is None or action.terminal:
            return
        action.completed = record
        action.bytes = record.bytes
        action.attempts = max(action.attempts, record.attempt)
        self._set_status(action, Status.COMPLETED)
        self.bytes += record.bytes
        if record.outcome is Outcome.SKIPPED:
            self.skipped += 1

    def _fail(self, record: Failed) -> None:
        action = self.actions.get(record.action_id)
        if action is None or action.terminal:
            return
        action.error = record
        action.attempts = max(action.attempts, record.attempt)
        if record.reason == CRASHED:
            action.crashes += 1
        status = Status.WAITING if record.retryable else Status.FAILED
        self._set_status(action, status)

    def _cancel(self, action_id: str) -> None:
        action = self.actions.get(action_id)
        if action is None or action.terminal:
            return
        self._set_status(action, Status.CANCELED)

    def paths(self, action: ActionState) -> tuple[str | None, str | None]:
        """Return the source and destination paths of ``action``.

        A file found by expanding a tree stores only its path relative to
        the tree; its full paths are the parent's joined with it.
        """
        added = action.added
        if added.parent is None or added.relpath is None:
            return added.source, added.destination
        parent = self.actions[added.parent].added
        source = _join(parent.source, added.relpath)
        destination = _join(parent.destination, added.relpath)
        return source, destination

    def status_counts(self) -> dict[str, int]:
        """Return the counts ``StorageQueue.status()`` reports."""
        counts = {"length": len(self.actions)}
        counts.update((str(status), count) for status, count in self.counts.items())
        counts["skipped"] = self.skipped
        counts["bytes"] = self.bytes
        return counts


def _join(root: str | None, relpath: str) -> str | None:
    if root is None:
        return None
    if not root:
        return relpath
    return posixpath.join(root, relpath)


def fold(records: Iterable[Record], state: QueueState | None = None) -> QueueState:
    """Fold ``records`` into ``state`` (a new one by default) and return it."""
    state = state if state is not None else QueueState()
    state.apply_all(records)
    return state


def reset_interrupted(state: QueueState, max_attempts: int) -> list[Failed]:
    """Return the records that end the attempts a crashed run left open.

    Each action still in progress gets a retryable ``failed`` record with
    reason :data:`CRASHED`, so it waits again with its attempt count kept,
    or a final one with reason :data:`CRASH_LOOP` once crashes alone reach
    ``max_attempts``. The caller journals them; the state changes when they
    are applied, so it stays the fold of the journal.
    """
    failures: list[Failed] = []
    for action in state.actions.values():
        if action.status is not Status.INPROGRESS:
            continue
        if action.crashes + 1 >= max_attempts:
            failures.append(
                Failed(
                    action.action_id,
                    action.attempts,
                    error="CrashLoop",
                    message=(
                        f"the run stopped during {action.crashes + 1} attempts "
                        "at this action; check the logs of those runs, then "
                        "retry it"
                    ),
                    retryable=False,
                    reason=CRASH_LOOP,
                )
            )
        else:
            failures.append(
                Failed(
                    action.action_id,
                    action.attempts,
                    error="Interrupted",
                    message="the run stopped before this attempt finished",
                    retryable=True,
                    reason=CRASHED,
                )
            )
    return failures


class _StateImage(msgspec.Struct, array_like=True):
    """The snapshot payload: what cannot be derived from the actions."""

    created: QueueCreated | None
    last_lsn: int
    actions: list[ActionState]
    digests: list[Digested]
    snapshot: SnapshotTaken | None = None


_image_encoder = msgspec.msgpack.Encoder()
_image_decoder = msgspec.msgpack.Decoder(_StateImage)


def encode_state(state: QueueState) -> bytes:
    """Encode ``state`` as a snapshot payload."""
    image = _StateImage(
        state.created,
        state.last_lsn,
        list(state.actions.values()),
        list(state.digests.values()),
        state.snapshot,
    )
    return _image_encoder.encode(image)


def decode_state(payload: bytes | memoryview) -> QueueState:
    """Rebuild a :class:`QueueState` from a snapshot payload."""
    image = _image_decoder.decode(payload)
    state = QueueState()
    state.created = image.created
    state.last_lsn = image.last_lsn
    state.snapshot = image.snapshot
    actions = state.actions
    by_key = state.by_key
    generations = state.generations
    counts = state.counts
    for action in image.actions:
        added = action.added
        actions[added.action_id] = action
        if added.key:
            by_key[added.key] = added.action_id
            generations[added.key] = generations.get(added.key, 0) + 1
        counts[action.status] += 1
        state.skipped += action.skipped
        completed = action.completed
        if completed is not None:
            state.bytes += completed.bytes
            if completed.outcome is Outcome.SKIPPED:
                state.skipped += 1
    state.digests = {(d.service, d.path): d for d in image.digests}
    return state
