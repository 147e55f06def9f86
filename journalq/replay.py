"""Replay: fold journal records into the state of a queue.

The fold is pure: it reads records and updates a :class:`QueueState`, with no
file or network access, so a queue's state is exactly the fold of its
journal, and a snapshot is that state written down at one sequence number.

Rules of the fold:

* Records are applied in journal order (by sequence number).
* ``completed``, ``canceled`` and a ``failed`` record that is not retryable
  are terminal: every later record for that action is ignored, with two
  exceptions for a failed action. A ``retried`` record makes it wait again,
  and a ``canceled`` record ends it as canceled. Either makes its failed
  tree wait again, to end once more after its items.
* A retryable ``failed`` record ends one attempt: the action waits again and
  keeps its attempt count and the error.
* A ``handed out`` record folds as a ``started`` record of each action it
  names, marked as out at a copy process. A ``returned`` record makes those
  of them still in progress at its attempt wait again, with the attempt
  count they had before.
* An ``added`` record for an action id that already exists is a duplicate
  and changes nothing, which makes a re-expanded tree or a re-ingested
  hand-off file harmless.
* An ``expanded`` record applies only to a copy_tree or sync that has
  none yet.
* The state keeps a ``completed`` record without its source and destination
  identities: nothing reads them back, and the digest cache keeps what a
  later comparison needs.

:func:`reset_interrupted` runs once when a queue is opened for a run: it
returns the records that make actions a crashed run left in progress wait
again, or fail when crashes alone have used up their attempts. A crash
counts against every action the crashed process itself had started. The
actions it had handed out to a copy process are returned instead, as if
that process had given them back: the crash was not theirs. A part of a
large copy made durable since the last crash starts the count again.

Compaction. A finished copy of a million-file tree leaves a million
terminal children, each with its ``added`` and ``completed`` records and two
``digested`` cache entries: about 2.7 KB of Python objects per child.
:meth:`QueueState.compact`, run before each snapshot, replaces every
terminal child of a tree by a :class:`CompactAction`. That keeps the child's
id, status, attempts and kind, and packs the rest, digest cache entries
included, into one MessagePack array (in a bin) that it decodes on access. A compacted
child costs about 240 bytes of objects plus its 185 bytes of snapshot, and
a snapshot loads without building its records. What the state returns does
not change.
"""

from __future__ import annotations

import bisect
import enum
import operator
import posixpath
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Final, TypeAlias

import msgspec

from journalq.records import (
    ActionAdded,
    Canceled,
    Completed,
    Digested,
    Expanded,
    Failed,
    HandedOut,
    Identity,
    Kind,
    Outcome,
    Part,
    PartsPlanned,
    PartWritten,
    Progress,
    QueueCreated,
    Record,
    Retried,
    Returned,
    Service,
    SnapshotTaken,
    Started,
)

__all__ = [
    "Action",
    "ActionState",
    "CompactAction",
    "DigestCache",
    "QueueState",
    "StateImage",
    "Status",
    "decode_state",
    "encode_state",
    "fold",
    "reset_interrupted",
    "root_prefix",
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

# Reading an enum member as a class attribute took about 300 ns on CPython
# 3.11, a module global about 20 ns (timeit, 2-core development VM), and the
# fold reads them per record.
_WAITING: Final = Status.WAITING
_INPROGRESS: Final = Status.INPROGRESS
_COMPLETED: Final = Status.COMPLETED
_FAILED: Final = Status.FAILED
_CANCELED: Final = Status.CANCELED
_SOURCE: Final = Service.SOURCE
_DESTINATION: Final = Service.DESTINATION
_SKIPPED: Final = Outcome.SKIPPED
_TREES: Final = frozenset({Kind.COPY_TREE, Kind.SYNC})

_SERVICE_BITS: Final = {Service.SOURCE: 1, Service.DESTINATION: 2}


class _Evidence(msgspec.Struct, array_like=True, gc=False):
    """A digest cache entry kept by a compacted child.

    ``services`` is 1 for the child's source path, 2 for its destination
    path, 3 for both when the two entries contain the same values.
    """

    services: int
    size: int
    mtime_ns: int
    digest: str
    observed_ns: int
    ctime_ns: int | None = None
    inode: int | None = None
    etag: str | None = None


class _History(msgspec.Struct, array_like=True, gc=False):
    """The records of a compacted tree child, reduced to their own fields.

    The fields of its ``added`` record come first, then those of its
    ``completed`` record (``outcome`` None for a canceled child), then its
    digest cache entries, then ``added`` fields that came later.
    """

    parent: str
    relpath: str
    size: int | None
    service: Service | None
    recursive: bool
    compare: str | None
    added_ns: int
    outcome: Outcome | None = None
    method: str = ""
    attempt: int = 0
    bytes: int = 0
    result: str | None = None
    finished_ns: int = 0
    evidence: tuple[_Evidence, ...] = ()
    in_the_way: bool = False
    redecided: bool = False
    listed: Identity | None = None


_encoder = msgspec.msgpack.Encoder()
_history_decoder = msgspec.msgpack.Decoder(_History)
_bytes_decoder = msgspec.msgpack.Decoder(bytes)


def _pack_history(history: _History) -> msgspec.Raw:
    """Encode ``history`` wrapped in a MessagePack bin.

    A decoder skips a bin by its length alone, where it would walk every
    element of an array: that made decoding a snapshot of a million
    compacted actions 18% faster (0.68 s to 0.56 s, 2-core development VM).
    """
    return msgspec.Raw(_encoder.encode(_encoder.encode(history)))


def _unpack_history(packed: msgspec.Raw) -> _History:
    return _history_decoder.decode(_bytes_decoder.decode(packed))


def _same_action(self: Action, other: object) -> bool:
    """Compare two actions by what they read as, compacted or not."""
    if not isinstance(other, ActionState | CompactAction):
        return NotImplemented
    return _facts(self) == _facts(other)


def _other_action(self: Action, other: object) -> bool:
    same = _same_action(self, other)
    return same if same is NotImplemented else not same


def _facts(action: Action) -> tuple[object, ...]:
    return (
        action.action_id,
        action.status,
        action.attempts,
        action.bytes,
        action.error,
        action.children,
        action.crashes,
        action.skipped,
        action.added,
        action.completed,
        action.reopened_by_cancel,
        # Only meaningful while in progress: a snapshot may keep it set on
        # an action that ended, as the golden queues of format 1.3 do.
        action.handed_out and action.status is Status.INPROGRESS,
    )


class Parts(msgspec.Struct, array_like=True, gc=False):
    """The plan of a large copy in parts and the parts written so far."""

    plan: PartsPlanned
    written: dict[int, Part] = {}


class ActionState(msgspec.Struct, array_like=True, gc=False):
    """One action as the journal has it so far.

    ``gc=False`` keeps a million of these out of the cyclic garbage
    collector; they hold no reference cycles. The first nine fields keep
    the positions older snapshots wrote them at.
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
    action_id: str = ""
    #: The parts of a large copy written so far, until it completes.
    parts: Parts | None = None
    #: What decided the files of a tree found identical when it was listed:
    #: the ``method`` of its ``expanded`` record.
    skip_method: str = ""
    #: True for a failed tree that waits again because a failed item of it
    #: was canceled, with no item retried since. Its next end then adds no
    #: attempt. Older snapshots lack the field and decode it as False.
    reopened_by_cancel: bool = False
    #: The source directory mtimes that the end of a tree sets at the
    #: destination: the ``directory_mtimes`` of its ``expanded`` record.
    directory_mtimes: dict[str, int] | None = None
    #: True while the action is in progress because a ``handed out``
    #: record gave it to a copy process. A ``started``, ``returned``,
    #: ``failed`` or ``completed`` record clears it.
    handed_out: bool = False

    # Mutable, so unhashable like every Struct that is not frozen.
    __eq__ = _same_action
    __ne__ = _other_action
    __hash__ = None  # type: ignore[assignment]

    @property
    def kind(self) -> Kind:
        return self.added.kind

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class CompactAction(msgspec.Struct, array_like=True, gc=False):
    """A terminal tree child packed by :meth:`QueueState.compact`.

    It reads like an :class:`ActionState` that no record changes any more.
    :attr:`added`, :attr:`completed` and :attr:`bytes` decode ``history``
    on each access, which took about 2 us each on the 2-core development VM,
    so listing a million compacted actions takes seconds.
    """

    action_id: str
    status: Status
    attempts: int
    kind: Kind
    history: msgspec.Raw

    error: ClassVar[None] = None
    children: ClassVar[None] = None
    crashes: ClassVar[int] = 0
    skipped: ClassVar[int] = 0
    terminal: ClassVar[bool] = True
    reopened_by_cancel: ClassVar[bool] = False
    handed_out: ClassVar[bool] = False
    parts: ClassVar[None] = None

    __eq__ = _same_action
    __ne__ = _other_action
    __hash__ = None  # type: ignore[assignment]

    @property
    def added(self) -> ActionAdded:
        history = _unpack_history(self.history)
        return ActionAdded(
            self.action_id,
            self.kind,
            "",
            service=history.service,
            parent=history.parent,
            relpath=history.relpath,
            size=history.size,
            recursive=history.recursive,
            compare=history.compare,
            added_ns=history.added_ns,
            in_the_way=history.in_the_way,
            redecided=history.redecided,
            listed=history.listed,
        )

    @property
    def completed(self) -> Completed | None:
        history = _unpack_history(self.history)
        if history.outcome is None:
            return None
        return Completed(
            self.action_id,
            history.attempt,
            history.outcome,
            history.method,
            history.bytes,
            result=history.result,
            finished_ns=history.finished_ns,
        )

    @property
    def bytes(self) -> int:
        return _unpack_history(self.history).bytes


Action: TypeAlias = ActionState | CompactAction
"""An action of :attr:`QueueState.actions`, compacted or not."""


def _flatten_child(
    flat: dict[str, Digested],
    service: Service,
    path: str,
    bit: int,
    evidence: Iterable[Any],
) -> None:
    """Put the first entry of ``evidence`` about ``service`` into ``flat``."""
    for item in evidence:
        if item.services & bit:
            flat[path] = Digested(
                service,
                path,
                item.size,
                item.mtime_ns,
                item.digest,
                item.observed_ns,
                item.ctime_ns,
                item.inode,
                item.etag,
            )
            return


class DigestCache:
    """The newest ``digested`` record per ``(service, path)``.

    Entries folded since the last compaction are kept in :attr:`source` and
    :attr:`destination`, by path. A tuple key would cost a tracked object per
    entry, which made folding a digested record 3x slower.
    Compaction moves an entry for a child's own path into the child's
    history, but only when the child's tree is the newest tree whose root
    contains the path. So a lookup that misses those looks in a table of
    the compacted entries by full path. The table is built on the first
    such lookup, which opening a queue for its status never makes.
    """

    def __init__(self, actions: dict[str, Action]) -> None:
        #: Path -> entry of the source and destination filesystems.
        self.source: dict[str, Digested] = {}
        self.destination: dict[str, Digested] = {}
        #: How many entries compaction moved into histories.
        self.compacted = 0
        #: (service, root prefix) -> trees with that root, oldest first.
        self._roots: dict[tuple[Service, str], list[ActionState]] = {}
        self._tree_order: dict[str, int] = {}
        #: Service -> full path -> compacted entry, built on first lookup.
        self._flat: dict[Service, dict[str, Digested]] = {}
        self._flat_lock = threading.Lock()
        self._actions = actions

    def get(
        self, key: tuple[Service, str], default: Digested | None = None
    ) -> Digested | None:
        # A lookup on another thread while a compaction moves the entry may
        # miss it, which costs a digest computed again, never a wrong one.
        found = self.by_path(key[0]).get(key[1])
        if found is not None or not self.compacted:
            return found if found is not None else default
        found = self._find_compacted(*key)
        return found if found is not None else default

    def finder(self, service: Service) -> Callable[[str], Digested | None]:
        """Return a lookup by path of the entries of ``service``.

        It finds what :meth:`get` finds, without a key tuple and two method
        calls per lookup: a re-sync of 10,000 files looks up 20,000 entries.
        The table of compacted entries is built on the first lookup that
        needs it, so a finder that is never asked costs nothing.
        """
        recent = self.by_path(service)
        compacted: dict[str, Digested] | None = None

        def find(path: str) -> Digested | None:
            nonlocal compacted
            found = recent.get(path)
            if found is not None or not self.compacted:
                return found
            if compacted is None:
                compacted = self._flat.get(service)
                if compacted is None:
                    compacted = self._build_flat()[service]
            return compacted.get(path)

        return find

    def __getitem__(self, key: tuple[Service, str]) -> Digested:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and self.get(key) is not None  # type: ignore[arg-type]

    def __setitem__(self, key: tuple[Service, str], record: Digested) -> None:
        self.by_path(key[0])[key[1]] = record

    def by_path(self, service: Service) -> dict[str, Digested]:
        """Return the entries of ``service``, by path, not yet compacted."""
        return self.source if service is _SOURCE else self.destination

    def entries(self) -> list[Digested]:
        """Return the entries not yet compacted."""
        return [*self.source.values(), *self.destination.values()]

    def add_tree(self, tree: ActionState) -> None:
        """Register a copy_tree or sync, whose children's paths are under it."""
        added = tree.added
        self._tree_order[tree.action_id] = len(self._tree_order)
        for service, root in (
            (_SOURCE, added.source),
            (_DESTINATION, added.destination),
        ):
            if root is not None:
                self._roots.setdefault((service, root_prefix(root)), []).append(tree)

    def newest_tree(self, service: Service, path: str) -> ActionState | None:
        """Return the newest tree whose root contains ``path``."""
        newest = None
        for prefix, _ in _splits(path):
            for tree in self._roots.get((service, prefix), ()):
                if newest is None or self._order(tree) > self._order(newest):
                    newest = tree
        return newest

    def overlapped(self, service: Service) -> set[str]:
        """Return the ids of trees that a newer tree's root overlaps.

        Two roots overlap when one contains the other. A path under a tree
        outside this set has that tree as its newest tree.
        """
        prefixes = sorted(prefix for (side, prefix) in self._roots if side is service)
        found: set[str] = set()
        for prefix in prefixes:
            trees = self._roots[(service, prefix)]
            newest = max(self._newest_order(service, prefix, prefixes), default=-1)
            found.update(t.action_id for t in trees if self._order(t) < newest)
        return found

    def _newest_order(
        self, service: Service, prefix: str, prefixes: list[str]
    ) -> Iterator[int]:
        """Yield the order of every tree whose root overlaps ``prefix``."""
        for ancestor, _ in _splits(prefix):
            for tree in self._roots.get((service, ancestor), ()):
                yield self._order(tree)
        start = bisect.bisect_right(prefixes, prefix)
        for other in prefixes[start:]:
            if not other.startswith(prefix):
                break
            for tree in self._roots[(service, other)]:
                yield self._order(tree)

    def keep(self, child: CompactAction, parent: str, relpath: str) -> None:
        """Note that compaction moved entries into ``child``'s history."""
        with self._flat_lock:
            if self._flat:
                evidence = _unpack_history(child.history).evidence
                self._flatten_tree(self._flat, parent, {relpath: evidence})

    def _order(self, tree: ActionState) -> int:
        return self._tree_order[tree.action_id]

    def _find_compacted(self, service: Service, path: str) -> Digested | None:
        flat = self._flat.get(service)
        if flat is None:
            flat = self._build_flat()[service]
        return flat.get(path)

    def _build_flat(self) -> dict[Service, dict[str, Digested]]:
        """Build, once, the compacted entries of both services by full path.

        A re-sync looks up two entries per file, so a lookup must be one
        dict access rather than a search through the trees. Trees are
        visited oldest first, so the newest tree's entry for a path wins.
        Each history is decoded once, for both services.
        """
        with self._flat_lock:
            if self._flat:
                return self._flat
            evidence: dict[str, dict[str, tuple[_Evidence, ...]]] = {}
            for action in self._actions.values():
                if type(action) is CompactAction:
                    history = _unpack_history(action.history)
                    if history.evidence:
                        evidence.setdefault(history.parent, {})[history.relpath] = (
                            history.evidence
                        )
            flat: dict[Service, dict[str, Digested]] = {_SOURCE: {}, _DESTINATION: {}}
            order = sorted(
                (self._tree_order[tree_id], tree_id)
                for tree_id in evidence
                if tree_id in self._tree_order
            )
            for _, tree_id in order:
                self._flatten_tree(flat, tree_id, evidence[tree_id])
            self._flat = flat
            return flat

    def _flatten_tree(
        self,
        flat: dict[Service, dict[str, Digested]],
        tree_id: str,
        evidence: dict[str, tuple[_Evidence, ...]],
    ) -> None:
        """Put the entries of one tree's children, by relative path, into ``flat``."""
        tree = self._actions.get(tree_id)
        if tree is None:
            return
        added = tree.added
        prefixes = [
            (service, _SERVICE_BITS[service], root_prefix(root))
            for service, root in (
                (_SOURCE, added.source),
                (_DESTINATION, added.destination),
            )
            if root is not None
        ]
        for relpath, items in evidence.items():
            for service, bit, prefix in prefixes:
                _flatten_child(flat[service], service, prefix + relpath, bit, items)


def root_prefix(root: str) -> str:
    """Return what a tree's root puts before a child's relative path."""
    if not root or root.endswith("/"):
        return root
    return root + "/"


def _splits(path: str) -> Iterator[tuple[str, str]]:
    """Yield every (prefix, relpath) with prefix + relpath == path."""
    yield "", path
    cut = path.find("/")
    while cut != -1:
        yield path[: cut + 1], path[cut + 1 :]
        cut = path.find("/", cut + 1)


#: Attributes of a :class:`QueueState` that :func:`decode_state` leaves to be
#: decoded on first use, all four at once.
_DEFERRED: Final = frozenset({"actions", "by_key", "generations", "digests"})
_deferred_lock = threading.Lock()


class QueueState:
    """The folded state of one queue.

    A state decoded from a snapshot decodes its actions when one of
    :attr:`actions`, :attr:`by_key`, :attr:`generations` and :attr:`digests`
    is first read, so reading only the counts (``journalq status``) skips
    the larger part of the load.
    """

    def __init__(self) -> None:
        self.created: QueueCreated | None = None
        self.actions: dict[str, Action] = {}
        #: Request key -> id of the newest action added for it.
        self.by_key: dict[str, str] = {}
        #: Request key -> how many actions were added for it.
        self.generations: dict[str, int] = {}
        self.counts: dict[Status, int] = dict.fromkeys(Status, 0)
        #: Files skipped as identical: those a tree's listing found
        #: identical, which have no action, and completed skipped actions.
        self.skipped = 0
        #: The files among :attr:`skipped` that a tree's listing found.
        self.identical_when_listed = 0
        self.bytes = 0
        #: Bytes of the journaled parts of large copies that have neither
        #: completed nor been canceled, which :attr:`bytes` does not count yet.
        self.part_bytes = 0
        #: Those copies: the ones with at least one part in :attr:`part_bytes`.
        self.part_copies = 0
        self.digests = DigestCache(self.actions)
        self.last_lsn = 0
        self.snapshot: SnapshotTaken | None = None
        #: Actions that ended since the last compaction, for the next one.
        self.finished: list[ActionState] = []
        #: Cancels other processes posted that the queue's holder has not
        #: read yet. Only a state read without the lock has them; they are
        #: not applied, since the holder skips actions started by then.
        self.cancels_requested = 0
        self._handlers = {
            Progress: self._progress,
            ActionAdded: self._add,
            Failed: self._fail,
            Canceled: self._cancel,
            Expanded: self._expanded,
            QueueCreated: self._created,
            SnapshotTaken: self._snapshot_taken,
            Retried: self._retried,
            PartsPlanned: self._parts_planned,
            PartWritten: self._part_written,
            HandedOut: self._handed_out,
            Returned: self._returned,
        }
        self._deferred: Callable[[], None] | None = None
        self._deferred_length = 0

    def __getattr__(self, name: str) -> Any:
        # Python calls this only for an attribute that is not set, which
        # for a deferred one means the snapshot's actions wait to be decoded.
        # A thread that arrives while another decodes waits for it.
        if name not in _DEFERRED:
            raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")
        with _deferred_lock:
            load = self.__dict__.get("_deferred")
            if load is not None:
                self._deferred = None
                try:
                    load()
                except BaseException:
                    self._deferred = load
                    raise
        return self.__dict__[name]

    def defer(self, load: Callable[[], None], length: int) -> None:
        """Leave the actions and their indexes to ``load``, run on first use.

        ``length`` is how many actions ``load`` adds.
        """
        for name in _DEFERRED:
            delattr(self, name)
        self._deferred = load
        self._deferred_length = length

    @property
    def length(self) -> int:
        """Return how many actions the queue has, without decoding them."""
        if self.__dict__.get("_deferred") is not None:
            return self._deferred_length
        return len(self.actions)

    def apply(self, record: Record) -> None:
        """Fold one record into the state."""
        self.apply_all((record,))

    def apply_all(self, records: Iterable[Record]) -> None:
        """Fold ``records`` into the state, in order.

        Started, completed and digested records, four in five of a tree's,
        are folded here inline: a handler method and the calls in it made
        a replay of 500,000 records 1.6x slower (2-core development VM).
        """
        handlers = self._handlers
        counts = self.counts
        for record in records:
            kind = type(record)
            if kind is Digested:
                if record.service is _SOURCE:
                    self.digests.source[record.path] = record
                else:
                    self.digests.destination[record.path] = record
                continue
            if kind is not Started and kind is not Completed:
                handlers[kind](record)
                continue

            # Either one changes a known action that has not ended.
            action = self.actions.get(record.action_id)
            if action is None:
                continue
            status = action.status
            if status in TERMINAL:
                continue
            # A comparison rather than max(), which is one more call.
            if record.attempt > action.attempts:  # noqa: PLR1730
                action.attempts = record.attempt
            if kind is Started:
                action.bytes = 0
                action.handed_out = False
                new_status = _INPROGRESS
            else:
                completed = record
                if completed.source is not None or completed.destination is not None:
                    completed = msgspec.structs.replace(
                        completed, source=None, destination=None
                    )
                action.completed = completed
                if action.parts is not None:
                    self._uncount_parts(action.parts)
                    action.parts = None
                action.bytes = completed.bytes
                action.handed_out = False
                new_status = _COMPLETED
                self.bytes += completed.bytes
                if completed.outcome is _SKIPPED:
                    self.skipped += 1
            counts[status] -= 1
            counts[new_status] += 1
            action.status = new_status
            if new_status is _COMPLETED:
                self.finished.append(action)

    def _set_status(self, action: ActionState, status: Status) -> None:
        counts = self.counts
        counts[action.status] -= 1
        counts[status] += 1
        action.status = status

    def _handed_out(self, record: HandedOut) -> None:
        """Fold a hand-out as a ``started`` record of each action it names."""
        for action_id in record.action_ids:
            action = self.actions.get(action_id)
            if action is None or action.status in TERMINAL:
                continue
            action.attempts = max(action.attempts, record.attempt)
            action.bytes = 0
            action.handed_out = True
            self._set_status(action, _INPROGRESS)

    def _returned(self, record: Returned) -> None:
        """Make the actions a helper returned unstarted wait as before."""
        for action_id in record.action_ids:
            action = self.actions.get(action_id)
            if (
                action is None
                or action.status is not _INPROGRESS
                or action.attempts != record.attempt
            ):
                continue
            action.attempts = record.attempt - 1
            action.handed_out = False
            self._set_status(action, _WAITING)

    def _created(self, record: QueueCreated) -> None:
        if self.created is None:
            self.created = record

    def _snapshot_taken(self, record: SnapshotTaken) -> None:
        self.snapshot = record

    def _progress(self, record: Progress) -> None:
        action = self.actions.get(record.action_id)
        if action is not None and action.status is _INPROGRESS:
            action.bytes = record.bytes

    def _add(self, record: ActionAdded) -> None:
        action_id = record.action_id
        if action_id in self.actions:
            return
        action = ActionState(record, action_id=action_id)
        self.actions[action_id] = action
        self.counts[_WAITING] += 1
        key = record.key
        if key:
            self.by_key[key] = action_id
            self.generations[key] = self.generations.get(key, 0) + 1
        if record.kind in _TREES:
            self.digests.add_tree(action)
        if record.redecided:
            self._take_back_skip(record)

    def _take_back_skip(self, record: ActionAdded) -> None:
        """Count a file added back to be compared again as no longer skipped."""
        tree = self.actions.get(record.parent) if record.parent else None
        if type(tree) is ActionState and tree.skipped > 0:
            tree.skipped -= 1
            self.skipped -= 1
            self.identical_when_listed -= 1

    def _expanded(self, record: Expanded) -> None:
        action = self.actions.get(record.action_id)
        if type(action) is not ActionState or action.children is not None:
            return
        if action.added.kind not in _TREES:
            return
        action.children = record.children
        action.skipped = record.skipped
        action.skip_method = record.method
        if record.directory_mtimes:
            action.directory_mtimes = record.directory_mtimes
        self.skipped += record.skipped
        self.identical_when_listed += record.skipped

    def _fail(self, record: Failed) -> None:
        action = self.actions.get(record.action_id)
        if action is None or action.status in TERMINAL:
            return
        action.error = record
        action.attempts = max(action.attempts, record.attempt)
        if record.reason == CRASHED:
            action.crashes += 1
        action.handed_out = False
        status = _WAITING if record.retryable else _FAILED
        self._set_status(action, status)

    def _retried(self, record: Retried) -> None:
        action = self.actions.get(record.action_id)
        if action is None or action.status is not _FAILED:
            return
        action.crashes = 0
        if type(action) is ActionState:
            action.reopened_by_cancel = False
        self._set_status(action, _WAITING)
        self._reopen_tree(action, by_cancel=False)

    def _reopen_tree(self, action: Action, *, by_cancel: bool) -> None:
        """Make the failed tree of ``action`` wait, to end again after its items.

        ``by_cancel`` is True when ``action`` was canceled rather than
        retried. A retried item runs again, so the tree's next end is an
        attempt even when a cancel made it wait first.
        """
        parent = action.added.parent
        tree = self.actions.get(parent) if parent is not None else None
        if type(tree) is not ActionState:
            return
        if tree.status is _FAILED:
            self._set_status(tree, _WAITING)
            tree.reopened_by_cancel = by_cancel
        elif not by_cancel:
            tree.reopened_by_cancel = False

    def _parts_planned(self, record: PartsPlanned) -> None:
        action = self.actions.get(record.action_id)
        if type(action) is ActionState and not action.terminal:
            # A new plan starts the copy over, so the old plan's parts no
            # longer count.
            if action.parts is not None:
                self._uncount_parts(action.parts)
            action.parts = Parts(record, {})

    def _part_written(self, record: PartWritten) -> None:
        action = self.actions.get(record.action_id)
        if type(action) is not ActionState or action.terminal:
            return
        if action.parts is not None:
            self._count_part(action.parts, record.part)
        # A part made durable is progress, so the crashes before it were no
        # loop: a large copy killed again and again still gets to finish.
        action.crashes = 0

    def _cancel(self, record: Canceled) -> None:
        action = self.actions.get(record.action_id)
        if action is None:
            return
        before = action.status
        if before in TERMINAL and before is not _FAILED:
            return
        self._set_status(action, _CANCELED)
        if before is _FAILED:
            self._reopen_tree(action, by_cancel=True)
        if type(action) is ActionState:
            self.finished.append(action)
            # The parts stay for drop_queue to report, but no run will
            # complete them.
            if action.parts is not None:
                self._uncount_parts(action.parts)

    def _count_part(self, parts: Parts, part: Part) -> None:
        """Add ``part`` to ``parts`` and to :attr:`part_bytes`."""
        written = parts.written
        earlier = written.get(part.number)
        if earlier is not None:
            self.part_bytes -= earlier.size
        elif not written:
            self.part_copies += 1
        written[part.number] = part
        self.part_bytes += part.size

    def _uncount_parts(self, parts: Parts) -> None:
        """Remove the parts of a copy that completed, was canceled or starts over."""
        if parts.written:
            self.part_bytes -= sum(part.size for part in parts.written.values())
            self.part_copies -= 1

    def paths(self, action: Action) -> tuple[str | None, str | None]:
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
        counts = {"length": self.length}
        counts.update((str(status), count) for status, count in self.counts.items())
        counts["skipped"] = self.skipped
        counts["bytes"] = self.bytes
        counts["identical_when_listed"] = self.identical_when_listed
        counts["part_bytes"] = self.part_bytes
        counts["part_copies"] = self.part_copies
        counts["cancels_requested"] = self.cancels_requested
        return counts

    def compact(self, *, recent: bool = False) -> int:
        """Pack every terminal child of a tree into its history; return how many.

        A child qualifies when it completed or was canceled without an
        earlier failure and has only the fields an expanded child has.
        With ``recent``, only the actions that ended since the last
        compaction are looked at, rather than all of them.
        The caller holds the lock that serializes folding, but other
        threads may read the actions meanwhile.
        """
        finished, self.finished = self.finished, []
        return _Compaction(self).run(finished if recent else None)


class _Compaction:
    """One compaction pass over a state."""

    def __init__(self, state: QueueState) -> None:
        self.state = state
        self.digests = state.digests
        self.overlapped = self.digests.overlapped(_SOURCE)
        self.overlapped |= self.digests.overlapped(_DESTINATION)
        #: Tree id -> what its source and destination roots put before a
        #: child's relpath, or None when the id is no tree.
        self.prefixes: dict[str, tuple[str | None, str | None] | None] = {}

    def run(self, candidates: list[ActionState] | None = None) -> int:
        """Compact ``candidates``, or every action when it is None."""
        actions = self.state.actions
        if candidates is None:
            candidates = [a for a in actions.values() if type(a) is ActionState]
        compacted = [
            self.compact(action)
            for action in candidates
            if _compactable(action) and actions.get(action.action_id) is action
        ]
        # Replacing values leaves the size unchanged, so other threads
        # iterating over the actions meanwhile carry on.
        for action in compacted:
            actions[action.action_id] = action
        return len(compacted)

    def compact(self, action: ActionState) -> CompactAction:
        added = action.added
        completed = action.completed
        assert added.parent is not None
        assert added.relpath is not None
        history = _History(
            added.parent,
            added.relpath,
            added.size,
            added.service,
            added.recursive,
            added.compare,
            added.added_ns,
            in_the_way=added.in_the_way,
            redecided=added.redecided,
            listed=added.listed,
        )
        if completed is not None:
            history.outcome = completed.outcome
            history.method = completed.method
            history.attempt = completed.attempt
            history.bytes = completed.bytes
            history.result = completed.result
            history.finished_ns = completed.finished_ns
        history.evidence = self.take_evidence(added)
        encoded = _pack_history(history)
        compact = CompactAction(
            action.action_id, action.status, action.attempts, added.kind, encoded
        )
        if history.evidence:
            self.digests.keep(compact, added.parent, added.relpath)
        return compact

    def take_evidence(self, added: ActionAdded) -> tuple[_Evidence, ...]:
        """Move the cache entries for the child's own paths out of the cache.

        An entry moves only when the child's tree is the newest tree
        containing the path, because a lookup searches newest first.
        """
        parent = added.parent
        relpath = added.relpath
        if added.kind is not Kind.COPY_FILE or parent is None or relpath is None:
            return ()
        prefixes = self.prefixes.get(parent, ())
        if prefixes == ():
            prefixes = self.prefixes[parent] = self._tree_prefixes(parent)
        if prefixes is None or relpath.startswith("/"):
            return ()
        found: list[_Evidence] = []
        for service, prefix in zip((_SOURCE, _DESTINATION), prefixes, strict=True):
            if prefix is None:
                continue
            # Equal to _join(root, relpath) for a relative relpath.
            path = prefix + relpath
            if parent in self.overlapped and (
                self.digests.newest_tree(service, path) is not self._tree(parent)
            ):
                continue
            entry = self.digests.by_path(service).pop(path, None)
            if entry is not None:
                found.append(_evidence_of(entry))
        self.digests.compacted += len(found)
        if len(found) == 2 and _same_values(found[0], found[1]):
            found = [msgspec.structs.replace(found[0], services=3)]
        return tuple(found)

    def _tree(self, tree_id: str) -> Action | None:
        return self.state.actions.get(tree_id)

    def _tree_prefixes(self, tree_id: str) -> tuple[str | None, str | None] | None:
        tree = self._tree(tree_id)
        if type(tree) is not ActionState or tree.added.kind not in _TREES:
            return None
        source, destination = tree.added.source, tree.added.destination
        return (
            None if source is None else root_prefix(source),
            None if destination is None else root_prefix(destination),
        )


def _compactable(action: ActionState) -> bool:
    added = action.added
    if added.parent is None or added.relpath is None:
        return False
    completed = action.completed
    if action.status is _COMPLETED:
        if completed is None or completed.bytes != action.bytes:
            return False
    elif action.status is not _CANCELED or completed is not None:
        return False
    return (
        action.error is None
        and action.children is None
        and not action.crashes
        and not action.skipped
        and not added.key
        and added.source is None
        and added.destination is None
        and not added.depends_on
        and not added.dir_only
        and not added.delete_extraneous
    )


def _evidence_of(entry: Digested) -> _Evidence:
    return _Evidence(
        _SERVICE_BITS[entry.service],
        entry.size,
        entry.mtime_ns,
        entry.digest,
        entry.observed_ns,
        entry.ctime_ns,
        entry.inode,
        entry.etag,
    )


def _same_values(first: _Evidence, second: _Evidence) -> bool:
    # Two local files never share an inode: most pairs differ there.
    if first.inode != second.inode or first.ctime_ns != second.ctime_ns:
        return False
    return msgspec.structs.replace(first, services=0) == msgspec.structs.replace(
        second, services=0
    )


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


def reset_interrupted(state: QueueState, max_attempts: int) -> list[Failed | Returned]:
    """Return the records that end the attempts a crashed run left open.

    Each action still in progress that the crashed process had started
    gets a retryable ``failed`` record with reason :data:`CRASHED`, so it
    waits again with its attempt count kept, or a final one with reason
    :data:`CRASH_LOOP` once crashes alone reach ``max_attempts``. Those it
    had handed out to a copy process get one ``returned`` record per
    attempt, so they wait as they did before the hand-out, and their next
    run copies them in a copy process again rather than one by one. The
    caller journals the records; the state changes when they are applied,
    so it stays the fold of the journal.
    """
    records: list[Failed | Returned] = []
    returned: dict[int, list[str]] = {}
    for action in state.actions.values():
        if action.status is not Status.INPROGRESS:
            continue
        if type(action) is ActionState and action.handed_out:
            returned.setdefault(action.attempts, []).append(action.action_id)
            continue
        if action.crashes + 1 >= max_attempts:
            records.append(
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
            records.append(
                Failed(
                    action.action_id,
                    action.attempts,
                    error="Interrupted",
                    message="the run stopped before this attempt finished",
                    retryable=True,
                    reason=CRASHED,
                )
            )
    records += [Returned(tuple(ids), attempt) for attempt, ids in returned.items()]
    return records


class _StateImage(msgspec.Struct, array_like=True):
    """The snapshot payload: what cannot be derived from the actions.

    ``actions`` and ``compacted`` hold the two kinds of action, and
    ``layout`` the lengths of the runs of each, alternating and starting
    with ``actions``, that restore their order. ``bytes``, ``skipped``,
    ``counts``, ``identical_when_listed``, ``part_bytes`` and
    ``part_copies`` are the state's totals, stored so that they are known
    before the actions are decoded. Snapshots written before compaction
    existed have only the first five fields. A snapshot without one of the
    totals has its actions decoded to count it.
    """

    created: QueueCreated | None
    last_lsn: int
    actions: list[ActionState]
    digests: list[Digested]
    snapshot: SnapshotTaken | None = None
    compacted: list[CompactAction] = []
    layout: list[int] = []
    bytes: int | None = None
    skipped: int | None = None
    evidence: int = 0
    counts: dict[Status, int] | None = None
    identical_when_listed: int | None = None
    part_bytes: int | None = None
    part_copies: int | None = None


class _StateHead(msgspec.Struct, array_like=True):
    """A :class:`_StateImage` with its three lists left encoded."""

    created: QueueCreated | None
    last_lsn: int
    actions: msgspec.Raw
    digests: msgspec.Raw
    snapshot: SnapshotTaken | None = None
    compacted: msgspec.Raw = msgspec.Raw(b"\x90")
    layout: list[int] = []
    bytes: int | None = None
    skipped: int | None = None
    evidence: int = 0
    counts: dict[Status, int] | None = None
    identical_when_listed: int | None = None
    part_bytes: int | None = None
    part_copies: int | None = None


_head_decoder = msgspec.msgpack.Decoder(_StateHead)
_actions_decoder = msgspec.msgpack.Decoder(list[ActionState])
_compacted_decoder = msgspec.msgpack.Decoder(list[CompactAction])
_digests_decoder = msgspec.msgpack.Decoder(list[Digested])


#: Compacted actions encoded at a time when a snapshot is written in pieces.
_PIECE_ACTIONS: Final = 16_384


class StateImage:
    """A snapshot payload of a state, encoded piece by piece as it is written.

    Made under the lock that serializes folding, it encodes what may still
    change (the actions not compacted, the digests, the totals) at once and
    keeps the compacted actions, which never change, to encode later in
    pieces of :data:`_PIECE_ACTIONS`. So writing a snapshot of a million
    compacted actions needs a few MiB at a time rather than the whole
    payload, which was 250 MiB. :meth:`pieces` joined are what encoding the whole
    :class:`_StateImage` at once returns.
    """

    def __init__(self, state: QueueState) -> None:
        full: list[ActionState] = []
        compacted: list[CompactAction] = []
        layout: list[int] = []
        for action in state.actions.values():
            if type(action) is ActionState:
                full.append(action)
                run = 0
            else:
                compacted.append(action)
                run = 1
            # Even runs are full actions, odd runs compacted ones.
            while not layout or (len(layout) - 1) % 2 != run:
                layout.append(0)
            layout[-1] += 1

        encode = _encoder.encode
        # An array-like struct is an array of its fields, in order. The
        # actions not compacted are encoded in pieces too, because encoding
        # a million at once grew the encoder's buffer to 150 MiB.
        self._before = [
            _array_header(len(_StateImage.__struct_fields__)),
            encode(state.created),
            encode(state.last_lsn),
            *_encode_list(full),
            encode(state.digests.entries()),
            encode(state.snapshot),
        ]
        self._compacted = compacted
        self._after = b"".join(
            encode(value)
            for value in (
                layout,
                state.bytes,
                state.skipped,
                state.digests.compacted,
                state.counts,
                state.identical_when_listed,
                state.part_bytes,
                state.part_copies,
            )
        )

        self._size: int | None = None

    @property
    def size(self) -> int:
        """Return the payload's length; the first call encodes every piece."""
        if self._size is None:
            self._size = sum(len(piece) for piece in self.pieces())
        return self._size

    def pieces(self) -> Iterator[bytes]:
        """Yield the payload's bytes in order, a piece at a time."""
        yield from self._before
        yield from _encode_list(self._compacted)
        yield self._after


def _encode_list(items: list[Any]) -> Iterator[bytes]:
    """Yield the MessagePack array of ``items``, :data:`_PIECE_ACTIONS` at a time."""
    yield _array_header(len(items))
    for start in range(0, len(items), _PIECE_ACTIONS):
        chunk = items[start : start + _PIECE_ACTIONS]
        yield _encoder.encode(chunk)[len(_array_header(len(chunk))) :]


def _array_header(length: int) -> bytes:
    """Return the MessagePack header of an array of ``length`` items."""
    if length < 16:
        return bytes((0x90 | length,))
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


def encode_state(state: QueueState) -> bytes:
    """Encode ``state`` as a snapshot payload."""
    return b"".join(StateImage(state).pieces())


def decode_state(payload: bytes | memoryview) -> QueueState:
    """Rebuild a :class:`QueueState` from a snapshot payload.

    The actions are decoded on first use (see :class:`QueueState`), so
    action lists that do not decode raise there, not here. The histories of
    compacted actions stay views into ``payload``, which therefore lives as
    long as the state.
    """
    head = _head_decoder.decode(payload)
    state = QueueState()
    state.created = head.created
    state.last_lsn = head.last_lsn
    state.snapshot = head.snapshot

    def load() -> None:
        _load_actions(state, head)

    totals = (
        head.bytes,
        head.skipped,
        head.counts,
        head.identical_when_listed,
        head.part_bytes,
        head.part_copies,
    )
    if any(total is None for total in totals):
        load()
        _recount_totals(state)
        return state
    state.bytes = head.bytes
    state.skipped = head.skipped
    state.identical_when_listed = head.identical_when_listed
    state.part_bytes = head.part_bytes
    state.part_copies = head.part_copies
    state.counts.update(head.counts)
    state.defer(load, sum(head.layout))
    return state


def _load_actions(state: QueueState, head: _StateHead) -> None:
    """Decode the actions of a snapshot into ``state`` with their indexes."""
    full = _actions_decoder.decode(head.actions)
    for action in full:
        # Snapshots written before action_id was a field leave it empty.
        action.action_id = action.added.action_id
    actions: dict[str, Action] = {}
    _restore_order(actions, full, _compacted_decoder.decode(head.compacted), head)
    digests = DigestCache(actions)
    for entry in _digests_decoder.decode(head.digests):
        digests.by_path(entry.service)[entry.path] = entry
    digests.compacted = head.evidence
    state.actions = actions
    state.digests = digests
    state.by_key = {}
    state.generations = {}
    _index_full(state, full)


_status_of = operator.attrgetter("status")
_id_of = operator.attrgetter("action_id")


def _restore_order(
    actions: dict[str, Action],
    full: list[ActionState],
    compacted: list[CompactAction],
    head: _StateHead,
) -> None:
    """Insert both kinds of action into ``actions`` in their journal order."""
    layout = head.layout or [len(full)]
    starts = [0, 0]
    for run, length in enumerate(layout):
        side = run % 2
        source: list[Any] = compacted if side else full
        chunk = source[starts[side] : starts[side] + length]
        actions.update(zip(map(_id_of, chunk), chunk, strict=True))
        starts[side] += length


def _index_full(state: QueueState, actions: list[ActionState]) -> None:
    """Rebuild the request keys and the tree registry of the full actions."""
    for action in actions:
        added = action.added
        key = added.key
        if key:
            state.by_key[key] = added.action_id
            state.generations[key] = state.generations.get(key, 0) + 1
        if added.kind in _TREES:
            state.digests.add_tree(action)


def _recount_totals(state: QueueState) -> None:
    state.counts.update(Counter(map(_status_of, state.actions.values())))
    for action in state.actions.values():
        state.skipped += action.skipped
        state.identical_when_listed += action.skipped
        completed = action.completed
        if completed is not None:
            state.bytes += completed.bytes
            if completed.outcome is _SKIPPED:
                state.skipped += 1
        parts = action.parts if type(action) is ActionState else None
        if parts is not None and parts.written and action.status is not _CANCELED:
            state.part_bytes += sum(part.size for part in parts.written.values())
            state.part_copies += 1
