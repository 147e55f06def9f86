"""The queue directory: lock, format file, snapshots, journal and inbox.

A queue lives in a directory of its own::

    <queue>/
      FORMAT        format version and queue id, written once
      LOCK          held by the process that owns the journal (never deleted)
      journal/      segment files (see journalq.journal)
      snapshots/    folded state at a sequence number (see journalq.snapshot)
      inbox/        actions handed off by other processes (see journalq.inbox)
      results/      stored results of list actions, named by their digest
      quarantine/   torn journal tails cut off by recovery

:meth:`QueueStore.open` takes the lock, loads the newest valid snapshot,
replays the journal after it, repairs a torn tail and starts the writer.
:func:`read_state` folds the same files without the lock and without
changing them, for ``status`` while another process runs the queue.

The directory and its files are created readable by the owner only: paths
and listings are private data even though no secret is ever written.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final

import msgspec

from journalq import durable, faults, inbox, snapshot
from journalq.errors import (
    CorruptionError,
    FormatVersionError,
    NotAQueueError,
    QueueClosedError,
    QueueError,
)
from journalq.journal import SEGMENT_BYTES, Frame, Journal, ScanResult, SyncMode, scan
from journalq.lock import QueueLock
from journalq.records import (
    FORMAT_MAJOR,
    FORMAT_MINOR,
    Canceled,
    HandedOut,
    Record,
    Returned,
    SnapshotTaken,
    Started,
    decode_batch,
    encode_batch,
)
from journalq.replay import (
    ActionState,
    QueueState,
    StateImage,
    Status,
    decode_state,
)

__all__ = [
    "QueueStore",
    "decode_frame",
    "queue_directory",
    "read_format",
    "read_state",
]

logger = logging.getLogger(__name__)

FORMAT_NAME: Final = "FORMAT"
JOURNAL_DIR: Final = "journal"
RESULTS_DIR: Final = "results"
_FORMAT_MAGIC: Final = "journalq-queue"

#: Journal bytes written after which a snapshot is taken. It equals the
#: segment size, so each snapshot lets the sealed segments behind it go.
#: Replaying 64 MiB of records (about 900,000) takes under two seconds.
SNAPSHOT_BYTES: Final = SEGMENT_BYTES


#: Journal bytes after which the actions that ended since are compacted,
#: without a snapshot. A finished file costs 250-450 journal bytes and about
#: 1 KiB of memory until it is compacted, so this bounds that backlog to a
#: few thousand files. Small passes also spread the work over the run,
#: instead of leaving it all to the snapshot at close. With 8 MiB passes, a
#: copy of 10,000 files of 4 KiB spent 60 ms closing, and 16 ms with these
#: (2-core development VM).
COMPACT_BYTES: Final = 1024 * 1024


#: Journal bytes since the last snapshot above which closing takes one, so
#: the next open replays little. Smaller tails are cheaper to replay than to
#: snapshot.
CLOSE_SNAPSHOT_BYTES: Final = 4 * 1024 * 1024


#: Sealed segments above which closing takes a snapshot. Every open seals
#: the previous segment and starts one, so a queue opened often (one
#: ``journalq add`` each) would otherwise gather files and slow its opens.
CLOSE_SNAPSHOT_SEGMENTS: Final = 32


class _FormatFile(msgspec.Struct):
    magic: str
    major: int
    minor: int
    queue_id: str
    created_ns: int


def queue_directory(name_or_path: str | os.PathLike[str]) -> Path:
    """Return the directory of a queue given by name or by path.

    A value with a path separator, or starting with ``.`` or ``~``, is a
    path. Any other value names a queue under ``$JOURNALQ_HOME`` (default:
    the platform's per-user state directory, ``~/.local/state/journalq`` on
    Linux).
    """
    text = os.fspath(name_or_path)
    if not text:
        raise QueueError(text, "a queue name or directory is required")
    if os.sep in text or text.startswith((".", "~")):
        return Path(text).expanduser().resolve()
    home = os.environ.get("JOURNALQ_HOME")
    if not home:
        # Imported here because most runs name their queue's directory.
        import platformdirs

        home = platformdirs.user_state_dir("journalq")
    return Path(home).expanduser().resolve() / "queues" / text


def read_format(directory: Path) -> _FormatFile | None:
    """Read a queue's format file; return None when the directory has none."""
    path = directory / FORMAT_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        header = msgspec.msgpack.decode(data, type=_FormatFile)
    except msgspec.DecodeError as exc:
        raise QueueError(path, f"the format file is unreadable ({exc})") from exc
    if header.magic != _FORMAT_MAGIC:
        raise NotAQueueError(directory)
    if header.major > FORMAT_MAJOR:
        raise FormatVersionError(path, header.major, FORMAT_MAJOR)
    return header


def decode_frame(frame: Frame, queue_dir: str | os.PathLike[str]) -> list[Record]:
    """Decode the records of one journal frame.

    A frame whose checksum matches but whose records do not decode was written
    by a journalq that broke the format rules, or damaged before the
    checksum was computed. Raises :class:`CorruptionError` naming the frame,
    because replaying around it could lose a ``canceled`` or ``completed``.
    """
    try:
        return decode_batch(frame.payload)
    except msgspec.DecodeError as exc:
        raise CorruptionError(
            frame.path,
            frame.offset,
            f"the records of the frame at sequence {frame.first_lsn} do not "
            f"decode ({exc})",
            queue_dir=queue_dir,
        ) from exc


class _HeldCancels:
    """Inbox cancels of reserved actions, held until their copies come back.

    Not thread-safe: the store calls it under its mutex.
    """

    def __init__(self) -> None:
        #: Action id -> its first held cancel and every request that has one.
        self._records: dict[str, tuple[Canceled, list[str]]] = {}
        #: Inbox request name -> the actions whose cancels from it wait.
        self._requests: dict[str, set[str]] = {}

    def hold(self, record: Canceled, request: str) -> None:
        # A second request that cancels the same action is decided with the
        # first, so that neither stays in the inbox.
        _, requests = self._records.setdefault(record.action_id, (record, []))
        requests.append(request)
        self._requests.setdefault(request, set()).add(record.action_id)

    def holds(self, request: str) -> bool:
        """Return whether ``request`` is still in use: drained, not yet removed."""
        return request in self._requests

    def take(self, action_ids: Iterable[str]) -> list[Canceled]:
        """Remove and return the held cancels of ``action_ids``."""
        if not self._records:
            return []
        removed: list[Canceled] = []
        for action_id in action_ids:
            found = self._records.pop(action_id, None)
            if found is not None:
                record, requests = found
                for request in requests:
                    self._requests[request].discard(action_id)
                removed.append(record)
        return removed

    def finished_requests(self) -> list[str]:
        """Return the requests whose cancels have all been decided."""
        return [name for name, waiting in self._requests.items() if not waiting]

    def forget(self, requests: Iterable[str]) -> None:
        """Drop ``requests``, once they are gone from the inbox."""
        for name in requests:
            if not self._requests.get(name, True):
                del self._requests[name]


#: Action ids a "not canceling" log line names; it counts the rest.
_SPARED_NAMED: Final = 5


def _log_spared(action_ids: list[str]) -> None:
    """Log the actions that a cancel from the inbox found already started."""
    if not action_ids:
        return
    named = ", ".join(action_ids[:_SPARED_NAMED])
    more = len(action_ids) - _SPARED_NAMED
    if more > 0:
        named += f" and {more} more"
    logger.info(
        "not canceling %d actions that started before the cancel arrived: %s",
        len(action_ids),
        named,
    )


def _create_directory(directory: Path) -> None:
    if directory.exists():
        if not directory.is_dir():
            raise QueueError(directory, "exists and is not a directory")
        if any(name != "LOCK" for name in os.listdir(directory)):
            raise NotAQueueError(directory)
        return
    try:
        directory.mkdir(mode=0o700, parents=True)
    except OSError as exc:
        raise QueueError(directory, f"cannot be created ({exc.strerror})") from exc


def _write_format(directory: Path) -> _FormatFile:
    header = _FormatFile(
        _FORMAT_MAGIC, FORMAT_MAJOR, FORMAT_MINOR, uuid.uuid4().hex, time.time_ns()
    )
    durable.atomic_write(directory / FORMAT_NAME, msgspec.msgpack.encode(header))
    durable.fsync_dir(directory.parent)
    return header


def _load(
    directory: Path, queue_id: bytes, *, tidy: bool
) -> tuple[QueueState, ScanResult]:
    """Fold the newest valid snapshot and the journal after it.

    Returns the state and the journal's scan result, without its frames.
    ``tidy`` is for the lock holder: see :func:`snapshot.load_latest`.
    """
    snapshots = directory / snapshot.SNAPSHOT_DIR
    loaded = snapshot.load_latest(snapshots, queue_id, tidy=tidy)
    payload = None
    after_lsn = 0
    if loaded is not None:
        info, payload = loaded
        after_lsn = info.last_lsn
        logger.debug("loaded snapshot %s at sequence %d", info.path, after_lsn)

    # The journal is scanned before the snapshot is decoded, and its tail
    # copied out of the segment buffers, so those buffers (up to a whole
    # segment) are freed before the decoded state exists.
    result, tail = _scan_tail(directory, queue_id, after_lsn)
    state = decode_state(payload) if payload is not None else QueueState()
    for frame in tail:
        records = decode_frame(frame, directory)
        skip = max(0, after_lsn + 1 - frame.first_lsn)
        state.apply_all(records[skip:] if skip else records)
    state.last_lsn = max(after_lsn, result.next_lsn - 1)
    return state, result


def _scan_tail(
    directory: Path, queue_id: bytes, after_lsn: int
) -> tuple[ScanResult, list[Frame]]:
    """Scan the journal and return the result without its frames.

    The frames come second, each with a copy of its payload.
    """
    journal_dir = directory / JOURNAL_DIR
    result = scan(journal_dir, queue_id, after_lsn=after_lsn, queue_dir=str(directory))
    if result.next_lsn <= after_lsn and result.segments:
        raise CorruptionError(
            journal_dir,
            0,
            f"the journal ends at sequence {result.next_lsn - 1}, before the "
            f"snapshot's {after_lsn}",
            queue_dir=directory,
        )
    tail = [
        msgspec.structs.replace(frame, payload=bytes(frame.payload))
        for frame in result.frames
    ]
    return msgspec.structs.replace(result, frames=[]), tail


def read_state(directory: str | os.PathLike[str]) -> QueueState:
    """Fold a queue's files without locking or changing them.

    Actions handed off through the inbox and not yet journaled are included,
    so ``status`` from another process reports what was added. Cancels
    waiting there are only counted (``cancels_requested``): the holder
    cancels only the actions that have not started when it reads them.
    """
    path = Path(directory)
    header = read_format(path)
    if header is None:
        raise QueueError(path, "no queue here (no FORMAT file)")
    queue_id = bytes.fromhex(header.queue_id)
    # Without the lock the loader skips a damaged snapshot but leaves it,
    # and leaves *.tmp files alone: one may be the snapshot the holder is
    # writing.
    state, _ = _load(path, queue_id, tidy=False)
    for _name, payload in inbox.pending(path):
        records = decode_batch(payload)
        applied = [record for record in records if not isinstance(record, Canceled)]
        state.cancels_requested += len(records) - len(applied)
        state.apply_all(applied)
    return state


class QueueStore:
    """A queue directory opened by the process that owns its journal.

    Every record goes through :meth:`append`, which applies it to
    :attr:`state` and hands it to the journal under one lock, so the state
    always equals the fold of the journal up to :attr:`QueueState.last_lsn`.
    """

    def __init__(
        self,
        directory: Path,
        lock: QueueLock,
        queue_id: bytes,
        state: QueueState,
        journal: Journal,
    ) -> None:
        self.directory = directory
        self.queue_id = queue_id
        self.state = state
        self._lock = lock
        self._journal = journal
        self._mutex = threading.Lock()
        # Actions out at a copy process (see hand_out()).
        self._reserved: set[str] = set()
        # Actions a dead run had handed out, reserved while the inbox is
        # drained at open so that their cancels are held (see
        # dead_handouts()).
        self._dead_handouts: set[str] = set()
        self._opening = False
        self._held_cancels = _HeldCancels()
        self._snapshot_mutex = threading.Lock()
        self._snapshot_mark = 0
        self._compact_mark = 0
        self._closed = False

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        create: Callable[[str], Record] | None = None,
        sync: SyncMode = "batch",
        allow_network_fs: bool = False,
    ) -> QueueStore:
        """Open the queue at ``directory`` for writing, taking its lock.

        ``create`` builds the queue's first record from its new id when the
        directory contains no queue yet. Without it, a missing queue is an error.
        """
        path = Path(directory).expanduser().resolve()
        if read_format(path) is None:
            if create is None:
                raise QueueError(
                    path, "no queue here; give a source and a destination to create one"
                )
            _create_directory(path)
        lock = QueueLock(path, allow_network_fs=allow_network_fs)
        lock.acquire()
        try:
            return cls._open_locked(path, lock, create, sync)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open_locked(
        cls,
        path: Path,
        lock: QueueLock,
        create: Callable[[str], Record] | None,
        sync: SyncMode,
    ) -> QueueStore:
        header = read_format(path) or _write_format(path)
        queue_id = bytes.fromhex(header.queue_id)
        for directory in (path, path / RESULTS_DIR):
            for name in durable.remove_temporaries(directory):
                logger.info("deleted unfinished file %s", directory / name)
        state, result = _load(path, queue_id, tidy=True)
        journal = Journal.open(
            path / JOURNAL_DIR,
            queue_id,
            result,
            encode_batch=encode_batch,
            sync=sync,
            queue_dir=str(path),
        )
        store = cls(path, lock, queue_id, state, journal)
        if state.created is None and create is not None:
            store.append([create(header.queue_id)], durable=True)
        store._opening = True
        try:
            store.drain_inbox()
        finally:
            store._opening = False
        return store

    def append(self, records: Sequence[Record], *, durable: bool) -> int:
        """Apply ``records`` to the state and journal them.

        With ``durable`` the call returns only when the records are synced
        (or written, under ``sync="none"``). Returns the last record's
        sequence number.
        """
        if self._closed:
            raise QueueClosedError(self.directory)
        batch = list(records)
        with self._mutex:
            self.state.apply_all(batch)
            lsn = self._journal.append(batch, durable=False)
            self.state.last_lsn = lsn
        if durable:
            self._journal.flush()
        written = self._journal.bytes_written
        if written - self._snapshot_mark >= SNAPSHOT_BYTES:
            self.take_snapshot()
        elif written - self._compact_mark >= COMPACT_BYTES:
            with self._mutex:
                self._compact_mark = written
                self.state.compact(recent=True)
        return lsn

    def start(self, action_id: str, record: Record) -> bool:
        """Journal ``record`` (a ``started``) only if the action still waits.

        The check and the append happen under the state's lock, so an action
        is never both canceled and started.
        """
        with self._mutex:
            action = self.state.actions.get(action_id)
            if action is None or action.status is not Status.WAITING:
                return False
            self.state.apply(record)
            self.state.last_lsn = self._journal.append([record], durable=False)
        return True

    def start_all(self, records: Iterable[Started]) -> set[str]:
        """Journal the ``started`` records of actions that still wait, at once.

        Like :meth:`start` for a batch, in one append, except that a
        reserved action is not started either. Returns the ids started; the
        others have ended, started or been reserved meanwhile.
        """
        with self._mutex:
            started = [
                record for record in records if self._cancelable(record.action_id)
            ]
            if not started:
                return set()
            self.state.apply_all(started)
            self.state.last_lsn = self._journal.append(started, durable=False)
        return {record.action_id for record in started}

    def hand_out(self, action_ids: Iterable[str], attempt: int) -> set[str]:
        """Journal the hand-out of the waiting actions among ``action_ids``.

        One ``handed out`` record makes them in progress, and the call
        returns once it is durable. So a crash after the copy process they
        go to renamed a file into place leaves them in progress: the next
        open holds a pending cancel of them (:meth:`dead_handouts`) and
        sweeps their temporary files.
        Until :meth:`release` or :meth:`hand_back`
        they are reserved too: a cancel from the inbox is held for them,
        to take effect if they come back unstarted. Returns the ids handed
        out; the others have ended, started or been handed out meanwhile.
        """
        with self._mutex:
            handed = tuple(
                action_id for action_id in action_ids if self._cancelable(action_id)
            )
            if not handed:
                return set()
            record = HandedOut(handed, attempt, time.time_ns())
            self.state.apply(record)
            self.state.last_lsn = self._journal.append([record], durable=False)
            self._reserved.update(handed)
        self._journal.flush()
        return set(handed)

    def hand_back(self, action_ids: Iterable[str], attempt: int) -> None:
        """Make handed-out actions that came back without an outcome wait again.

        A ``returned`` record undoes their hand-out at ``attempt``. They
        stay reserved: the caller runs them or hands them out again, and
        :meth:`release` then decides the cancels held for them.
        """
        record = Returned(tuple(action_ids), attempt)
        with self._mutex:
            self.state.apply(record)
            self.state.last_lsn = self._journal.append([record], durable=False)

    def release(self, action_ids: Iterable[str]) -> None:
        """End the reservation of ``action_ids`` made by :meth:`hand_out`.

        A cancel that arrived from the inbox while one of them was reserved
        takes effect now if the action waits, that is, if its copy came
        back unstarted (:meth:`hand_back`). One whose copy completed, or
        started here, is dropped, as is one of an action still in progress.
        Also ends the reservations of :meth:`dead_handouts`.
        """
        released = list(action_ids)
        with self._mutex:
            self._reserved.difference_update(released)
            self._dead_handouts.difference_update(released)
            decided = self._held_cancels.take(released)
            canceled = [
                record for record in decided if self._cancelable(record.action_id)
            ]
            if canceled:
                self.state.apply_all(canceled)
                self.state.last_lsn = self._journal.append(canceled, durable=False)
            finished = self._held_cancels.finished_requests()
        if not decided:
            return
        spared = [record.action_id for record in decided if record not in canceled]
        _log_spared(spared)
        # The inbox keeps a request until its cancels are durable here.
        self._journal.flush()
        inbox.remove(self.directory, finished)
        with self._mutex:
            self._held_cancels.forget(finished)

    def dead_handouts(self) -> set[str]:
        """Return the actions a dead run had handed out that have held cancels.

        Opening the store reserves each action that is in progress after
        a ``handed out`` record when the inbox contains a cancel of it, and
        keeps that cancel back. Only the caller can tell whether the dead
        copy process put the file in place, so the caller decides. It
        journals a ``returned`` record for the actions to cancel and
        releases them, which cancels them. Then it releases the rest while
        they are still in progress, which drops their cancels.
        """
        with self._mutex:
            return set(self._dead_handouts)

    def _cancelable(self, action_id: str) -> bool:
        """Return whether a cancel may end the action (under the mutex)."""
        action = self.state.actions.get(action_id)
        return (
            action is not None
            and action.status is Status.WAITING
            and action_id not in self._reserved
        )

    def _droppable(self, action_id: str) -> bool:
        """Return whether a cancel may end or drop the action (under the mutex).

        A cancel ends a waiting action that is not reserved, and drops a
        failed one.
        """
        action = self.state.actions.get(action_id)
        if action is not None and action.status is Status.FAILED:
            return True
        return self._cancelable(action_id)

    def cancel(self, action_ids: Iterable[str], by: str | None = None) -> list[str]:
        """Cancel the waiting and failed actions among ``action_ids``, durably.

        Returns the ids that were canceled; actions that started, completed
        or were canceled before are left as they are.
        """
        canceled: list[str] = []
        with self._mutex:
            records: list[Record] = []
            for action_id in action_ids:
                if self._droppable(action_id):
                    records.append(Canceled(action_id, by))
                    canceled.append(action_id)
            if records:
                self.state.apply_all(records)
                self.state.last_lsn = self._journal.append(records, durable=False)
        if canceled:
            self._journal.flush()
        return canceled

    def flush(self) -> None:
        """Wait until every record appended so far is durable."""
        self._journal.flush()

    def take_snapshot(self) -> snapshot.SnapshotInfo | None:
        """Write the folded state down and drop the journal behind it.

        Returns ``None`` when another thread is taking one already.
        """
        if not self._snapshot_mutex.acquire(blocking=False):
            return None
        try:
            return self._take_snapshot()
        finally:
            self._snapshot_mutex.release()

    def _take_snapshot(self) -> snapshot.SnapshotInfo:
        # Compact and take the image under the mutex, so the payload is exactly
        # the fold of the records up to last_lsn. What the image encodes later
        # is compacted and never changes. Those records are made durable
        # before the snapshot that stands for them.
        with self._mutex:
            compacted = self.state.compact()
            payload = StateImage(self.state)
            last_lsn = self.state.last_lsn
            self._snapshot_mark = self._compact_mark = self._journal.bytes_written
        self._journal.flush()
        info = snapshot.write_snapshot(
            self.directory / snapshot.SNAPSHOT_DIR, self.queue_id, last_lsn, payload
        )
        faults.point("store.snapshot_written")
        self.append([SnapshotTaken(last_lsn, info.name, info.crc)], durable=True)
        deleted = self._journal.delete_through(last_lsn)
        snapshot.prune(self.directory / snapshot.SNAPSHOT_DIR, keep=2)
        logger.info(
            "snapshot %s at sequence %d; %d actions compacted, %d journal "
            "segments deleted",
            info.name,
            last_lsn,
            compacted,
            len(deleted),
        )
        return info

    def drain_inbox(self) -> int:
        """Journal the actions other processes handed off; return how many.

        A request with a cancel of a reserved action stays in the inbox
        until :meth:`release` decides that cancel, so a crash meanwhile
        delivers it again to the next run.
        """
        count = 0
        for name, payload in inbox.pending(self.directory):
            with self._mutex:
                if self._held_cancels.holds(name):
                    continue
            records = decode_batch(payload)
            waits = self._append_request(name, records)
            faults.point("store.inbox_drained")
            if not waits:
                inbox.remove(self.directory, [name])
            count += len(records)
        if count:
            logger.info("took %d records from the inbox", count)
        return count

    def _append_request(self, name: str, records: Sequence[Record]) -> bool:
        """Journal one inbox request durably, its cancels as :meth:`cancel` does.

        The poster chose what to cancel from the journal on disk, which can
        lag behind this process by the records not yet written. So a cancel
        of an action that has started here meanwhile is dropped, or the
        action would end twice: canceled now and completed by its copy. A
        cancel of a reserved action is held for :meth:`release`, and so is
        one of an action a dead run had handed out, while the store opens
        (:meth:`dead_handouts`). Returns whether a cancel was held.
        """
        spared: list[str] = []
        held = False
        with self._mutex:
            batch: list[Record] = []
            for record in records:
                if isinstance(record, Canceled) and not self._droppable(
                    record.action_id
                ):
                    if self._reserved_open(record.action_id) or (
                        self._reserve_dead_handout(record.action_id)
                    ):
                        self._held_cancels.hold(record, name)
                        held = True
                    else:
                        spared.append(record.action_id)
                    continue
                self.state.apply(record)
                batch.append(record)
            if batch:
                self.state.last_lsn = self._journal.append(batch, durable=False)
        self._journal.flush()
        _log_spared(spared)
        return held

    def _reserved_open(self, action_id: str) -> bool:
        """Return whether the action is reserved and has not ended (under the mutex)."""
        action = self.state.actions.get(action_id)
        return (
            action is not None and not action.terminal and action_id in self._reserved
        )

    def _reserve_dead_handout(self, action_id: str) -> bool:
        """Reserve the action if a dead run had handed it out (under the mutex).

        Only while the store opens: later, an action in progress after a
        ``handed out`` record is this process's own hand-out.
        """
        if not self._opening:
            return False
        action = self.state.actions.get(action_id)
        if (
            type(action) is not ActionState
            or action.status is not Status.INPROGRESS
            or not action.handed_out
        ):
            return False
        self._reserved.add(action_id)
        self._dead_handouts.add(action_id)
        return True

    def write_result(self, payload: bytes) -> str:
        """Store a list action's result; return its name (a SHA-256)."""
        name = hashlib.sha256(payload).hexdigest()
        results = self.directory / RESULTS_DIR
        # The queue directory is synced even when results/ exists, because a
        # process that created it may have crashed before syncing its entry.
        with contextlib.suppress(FileExistsError):
            durable.ops.mkdir(str(results))
        durable.fsync_dir(self.directory)
        durable.atomic_write(results / f"{name}.msgpack", payload)
        return name

    def read_result(self, name: str) -> bytes:
        return (self.directory / RESULTS_DIR / f"{name}.msgpack").read_bytes()

    @property
    def syncs(self) -> int:
        return self._journal.syncs

    def close(self) -> None:
        """Flush the journal, stop its writer and release the lock."""
        if self._closed:
            return
        # A failed snapshot (disk full, a poisoned journal) must still
        # release the lock, or the process keeps the queue until it exits.
        try:
            grown = self._journal.bytes_written - self._snapshot_mark
            if (
                grown >= CLOSE_SNAPSHOT_BYTES
                or self._journal.sealed_segments >= CLOSE_SNAPSHOT_SEGMENTS
            ):
                self.take_snapshot()
        finally:
            self._closed = True
            try:
                self._journal.close()
            finally:
                self._lock.release()
