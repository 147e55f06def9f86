"""The journal: LSN assignment, group commit and segment rolling.

Producers call :meth:`Journal.append` from any thread. It assigns LSNs and
queues the records under one lock, so queue order is LSN order. A single
writer thread takes everything queued (up to a cap), encodes it as ONE frame,
writes it, issues ONE fdatasync and then wakes every producer waiting for
those LSNs. Records appended with ``durable=False`` ride along in the next
batch without making anyone wait.

The writer never writes batch N+1 before the sync of batch N returned, so at
most one unsynced frame exists at any time. Recovery depends on this: it is
why the scan may call a damaged last frame with nothing valid after it a torn
tail rather than lost data. Pipelining writes would break that inference.

Any failed write or sync poisons the journal. The failed batch's waiters and
every later call get :class:`JournalPoisonedError`. The sync is never
retried, because after a failed fsync the kernel may have dropped the pages,
and a second fsync could succeed without them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Literal, Self

from journalq import errors, faults

from . import format as fmt
from .reader import QUEUE_ID_SIZE, ScanResult, SegmentInfo
from .segment import (
    OpenSegment,
    Syncer,
    create_segment,
    cut_torn_tail,
    ensure_directory,
    remove_segment,
    remove_temporaries,
    seal_segment,
)

__all__ = ["SEGMENT_BYTES", "Journal", "SyncMode"]

logger = logging.getLogger(__name__)

SyncMode = Literal["batch", "none"]
"""``"batch"``: a durable append returns after the fdatasync of its batch,
which survives power loss. ``"none"``: nothing is ever synced, and a durable
append returns once its batch was written to the operating system, which
survives a crash of the process but not of the machine. After a power loss
such a journal may lose any unsynced part, and a scan may report the damage
as corruption rather than as a torn tail."""

#: Size past which the active segment is sealed and a new one started. At
#: 100 bytes per record a segment contains about 670,000 records, so rolling is
#: rare, and a scan can still read a whole segment into memory.
SEGMENT_BYTES: Final = 64 * 1024 * 1024

#: Target payload of one batch. It bounds how long a small durable append
#: waits behind a large batch: 1 MiB of journalq records (about 10,000)
#: encoded in about 2 ms with msgspec 0.23 on the 2-core development VM.
BATCH_PAYLOAD_BYTES: Final = 1024 * 1024
#: Cap on records per batch, for records so small that per-record encoding
#: time matters more than their bytes: 65,536 Progress records of 15 bytes
#: encoded in 4 ms there.
BATCH_RECORDS: Final = 65536
#: How long the writer waits, after waking the producers of a batch, for
#: them to append again before it starts the next batch. It was measured
#: with 4 producers making durable 64-record appends, as medians of 5 runs
#: on the 2-core development VM, where an fdatasync takes about 0.4 ms.
#: Without waiting they reached 216,000 records/s, 302,000 at 100 us,
#: 342,000 at 200 us and 332,000 at 400 us. A batch is delayed by at most
#: this much when the released producers do not append again.
GATHER_SECONDS: Final = 0.0002
#: How long records appended without ``durable`` wait for company before
#: the writer writes and syncs them, when no durable append or flush is
#: pending. A run journals a started and a completed record per file. On
#: the 2-core development VM, syncing each small batch of them as it came
#: cost about 1,200 fdatasyncs for 2,000 files. Lingering 10 ms cuts that to
#: one per 10 ms and delays no caller that waits.
LINGER_SECONDS: Final = 0.01
#: Bytes per record assumed before the first batch was encoded. Mixes of
#: journalq's added, started and completed records encode to 70-100 bytes.
INITIAL_RECORD_BYTES: Final = 100

_QUARANTINE = "quarantine"


class Journal:
    """An open journal with its writer thread; create it with :meth:`open`."""

    def __init__(
        self,
        directory: str,
        segment: OpenSegment,
        sealed: list[SegmentInfo],
        *,
        encode_batch: Callable[[list[Any]], bytes],
        syncer: Syncer,
        segment_bytes: int,
        queue_id: bytes,
    ) -> None:
        self._directory = directory
        self._queue_id = queue_id
        self._encode_batch = encode_batch
        self._syncer = syncer
        self._segment_bytes = segment_bytes
        self._segment = segment
        self._sealed = sealed

        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._synced = threading.Condition(self._lock)
        self._delete_lock = threading.Lock()
        self._pending: deque[tuple[list[Any], bool]] = deque()
        self._pending_records = 0
        self._linger_limit = BATCH_RECORDS
        # Durable appends and flushes waiting now; while there are none,
        # the writer lingers (see _linger()).
        self._urgent = 0
        self._next_lsn = segment.first_lsn
        self._synced_lsn = segment.first_lsn - 1
        self._closed = False
        self._poison: tuple[str, str] | None = None
        # Group-commit gathering, see _gather().
        self._appends = 0
        self._appends_at_publish = 0
        self._released = 0
        self._published_at = 0.0

        # Owned by the writer thread.
        self._written_lsn = segment.first_lsn
        self._record_bytes = INITIAL_RECORD_BYTES
        self._bytes_written = 0

        self._thread = threading.Thread(
            target=self._run, name=f"journalq-writer {directory}", daemon=True
        )
        self._thread.start()

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        queue_id: bytes,
        scan_result: ScanResult,
        *,
        encode_batch: Callable[[list[Any]], bytes],
        sync: SyncMode = "batch",
        segment_bytes: int = SEGMENT_BYTES,
        queue_dir: str | None = None,
    ) -> Journal:
        """Open the journal that ``scan_result`` describes for appending.

        Creates ``directory`` when missing and removes half-created segments.
        A torn tail is copied to ``quarantine/`` in ``queue_dir`` (default:
        the parent of ``directory``), cut off and synced. The last segment is
        sealed, because appending after a repaired tail could leave valid
        frames after garbage. Then a new active segment is created and the
        writer thread started. ``encode_batch`` turns a list of records into
        one frame payload.
        """
        if sync not in ("batch", "none"):
            raise ValueError(f"sync must be 'batch' or 'none', got {sync!r}")
        if segment_bytes <= fmt.HEADER_SIZE:
            raise ValueError(
                f"segment_bytes must exceed the {fmt.HEADER_SIZE}-byte header, "
                f"got {segment_bytes}"
            )
        if len(queue_id) != QUEUE_ID_SIZE:
            raise ValueError(
                f"queue_id must be {QUEUE_ID_SIZE} bytes, got {len(queue_id)}"
            )
        path = os.fspath(directory)
        syncer = Syncer(enabled=sync == "batch")
        ensure_directory(path, syncer)
        remove_temporaries(path, syncer)

        parent = (
            queue_dir
            if queue_dir is not None
            else os.path.dirname(os.path.abspath(path))
        )
        quarantine = os.path.join(parent, _QUARANTINE)
        sealed = _close_last_segment(scan_result, quarantine, syncer)
        listed = scan_result.segments
        number = listed[-1].number + 1 if listed else 1
        segment = create_segment(path, number, scan_result.next_lsn, queue_id, syncer)
        logger.info(
            "opened journal %s: %d sealed segments, next LSN %d",
            path,
            len(sealed),
            scan_result.next_lsn,
        )
        return cls(
            path,
            segment,
            sealed,
            encode_batch=encode_batch,
            syncer=syncer,
            segment_bytes=segment_bytes,
            queue_id=queue_id,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def next_lsn(self) -> int:
        """LSN the next appended record gets."""
        with self._lock:
            return self._next_lsn

    @property
    def bytes_written(self) -> int:
        """Bytes of batch frames written since open."""
        return self._bytes_written

    @property
    def sealed_segments(self) -> int:
        """Sealed segment files the journal still has."""
        with self._lock:
            return len(self._sealed)

    @property
    def syncs(self) -> int:
        """fsync, fdatasync and directory sync calls since open, open's included."""
        return self._syncer.count

    def append(self, records: list[Any], *, durable: bool) -> int:
        """Append ``records`` and return the LSN of the last one.

        With ``durable`` the call returns only once the batch carrying the
        records is synced (written, under ``sync="none"``). Without it, the
        call returns at once. The journal keeps a reference to ``records``
        until they are written, so the list must not change. An empty list
        returns the LSN of the last record appended before.

        Raises JournalPoisonedError once a write or sync failed, including
        for the records of the failed batch, and JournalError once closed.
        """
        with self._lock:
            self._check_open()
            last = self._next_lsn + len(records) - 1
            if records:
                self._next_lsn = last + 1
                self._pending.append((records, durable))
                self._pending_records += len(records)
                self._appends += 1
                # Waking the writer for every record would make it take the
                # GIL thousands of times a second while it lingers. It needs
                # waking only when it may be idle or must stop lingering.
                if (
                    len(self._pending) == 1
                    or self._pending_records >= self._linger_limit
                    or self._appends - self._appends_at_publish <= self._released
                ):
                    self._work.notify()
            if durable:
                self._wait_urgently(last)
        return last

    def flush(self) -> None:
        """Wait until every record appended so far is synced."""
        with self._lock:
            self._wait_urgently(self._next_lsn - 1)

    def close(self, *, seal: bool = True) -> None:
        """Write and sync everything appended, seal the segment, stop the writer.

        An active segment that got no frame is deleted instead of sealed.
        ``seal=False`` leaves the active segment unsealed, as a process that
        was killed leaves it; the tests build torn tails on such journals.

        Closing again does nothing. Raises JournalPoisonedError when records
        could not be written; the files are closed all the same.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._work.notify()
        self._thread.join()
        if self._poison is None and seal and not self._segment_written():
            # Opening and closing a queue without appending (a rejected add)
            # then leaves its files as they were. The segment before this
            # one was sealed when it was closed, or by open().
            self._segment.discard(self._syncer)
        elif self._poison is None and seal:
            # A sealed segment is read strictly, so after a clean close any
            # damage to it is reported as corruption. Only a crash can leave
            # a torn tail.
            self._sealed.append(self._segment.seal(self._written_lsn, self._syncer))
        else:
            self._segment.close()
        self.flush()
        logger.debug("closed journal %s at LSN %d", self._directory, self._synced_lsn)

    def _segment_written(self) -> bool:
        """Tell whether the active segment contains a frame after its header."""
        return self._written_lsn > self._segment.first_lsn

    def delete_through(self, lsn: int) -> list[str]:
        """Delete the sealed segments whose every LSN is at most ``lsn``.

        Deletes oldest first, then syncs the directory, and returns the
        deleted paths. Call it only once a snapshot holding ``lsn`` is
        durable: a crash part-way leaves the newer segments, which recovery
        accepts.
        """
        with self._delete_lock:
            deleted = []
            while True:
                with self._lock:
                    if not self._sealed or self._sealed[0].last_lsn > lsn:
                        break
                    oldest = self._sealed[0]
                remove_segment(oldest.path)
                deleted.append(oldest.path)
                with self._lock:
                    self._sealed.pop(0)
            if deleted:
                self._syncer.fsync_dir(self._directory)
                logger.debug("deleted segments through LSN %d: %s", lsn, deleted)
            return deleted

    def _check_open(self) -> None:
        if self._poison is not None:
            raise errors.JournalPoisonedError(*self._poison)
        if self._closed:
            raise errors.JournalError(
                self._directory, "the journal is closed; open it again to append"
            )

    def _wait_urgently(self, lsn: int) -> None:
        """Wait for ``lsn`` to be synced, telling the writer not to linger."""
        if self._synced_lsn >= lsn:
            return
        self._urgent += 1
        self._work.notify()
        try:
            self._wait_synced(lsn)
        finally:
            self._urgent -= 1

    def _wait_synced(self, lsn: int) -> None:
        while self._synced_lsn < lsn:
            if self._poison is not None:
                raise errors.JournalPoisonedError(*self._poison)
            self._synced.wait()

    # The writer thread.

    def _run(self) -> None:
        try:
            while (taken := self._take_batch()) is not None:
                self._write_batch(*taken)
        except BaseException as exc:
            # Every failure poisons, so that no waiter blocks forever.
            self._fail(exc)
            if not isinstance(exc, Exception):
                raise

    def _take_batch(self) -> tuple[list[Any], int] | None:
        """Wait for records and take up to one batch of them, in LSN order.

        Returns the records and the number of durable appends among them.
        """
        with self._lock:
            while not self._pending and not self._closed:
                self._work.wait()
            self._gather()
            limit = max(
                1, min(BATCH_RECORDS, BATCH_PAYLOAD_BYTES // self._record_bytes)
            )
            self._linger_limit = limit
            self._linger(limit)
            if not self._pending:
                return None
            records, durable = self._pending.popleft()
            batch, waiters = list(records), int(durable)
            while self._pending and len(batch) + len(self._pending[0][0]) <= limit:
                records, durable = self._pending.popleft()
                batch.extend(records)
                waiters += durable
            self._pending_records -= len(batch)
            return batch, waiters

    def _linger(self, limit: int) -> None:
        """Let records that no caller waits for gather into one batch.

        Returns at once when a durable append or a flush waits, when a full
        batch is pending, or when the journal closes; otherwise after
        :data:`LINGER_SECONDS`.
        """
        deadline = time.monotonic() + LINGER_SECONDS
        while not self._urgent and not self._closed and self._pending_records < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._work.wait(remaining)

    def _gather(self) -> None:
        """Wait briefly for the producers that the last batch released.

        Producers blocked on a durable append usually append again within
        microseconds of being woken. Without this wait they would miss the
        next batch, which already took what arrived during the sync, and the
        producers would settle into two half-full batches per round.
        """
        deadline = self._published_at + GATHER_SECONDS
        while self._appends - self._appends_at_publish < self._released:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return
            self._work.wait(remaining)

    def _write_batch(self, batch: list[Any], waiters: int) -> None:
        for first_lsn, count, payload in self._encode(batch, self._written_lsn):
            segment = self._segment
            frame = fmt.encode_frame(
                segment.seed, fmt.FRAME_BATCH, first_lsn, count, payload
            )
            segment.append(frame, self._syncer)
            self._bytes_written += len(frame)
            self._written_lsn = first_lsn + count
            self._publish(self._written_lsn - 1, waiters)
        if self._segment.size >= self._segment_bytes:
            self._roll()

    def _encode(self, batch: list[Any], first_lsn: int) -> list[tuple[int, int, bytes]]:
        """Encode ``batch`` as one payload, or halves of it when too large."""
        payload = self._encode_batch(batch)
        if len(payload) <= fmt.MAX_PAYLOAD:
            self._record_bytes = max(1, len(payload) // len(batch))
            return [(first_lsn, len(batch), payload)]
        if len(batch) == 1:
            raise ValueError(
                f"the record with LSN {first_lsn} encodes to {len(payload)} bytes, "
                f"more than the {fmt.MAX_PAYLOAD} bytes one frame can carry"
            )
        half = len(batch) // 2
        return self._encode(batch[:half], first_lsn) + self._encode(
            batch[half:], first_lsn + half
        )

    def _publish(self, lsn: int, waiters: int) -> None:
        faults.point("journal.after_sync")
        with self._lock:
            self._synced_lsn = lsn
            self._released = waiters
            self._appends_at_publish = self._appends
            self._published_at = time.monotonic()
            self._synced.notify_all()

    def _roll(self) -> None:
        """Seal the full active segment and start the next one."""
        old = self._segment
        info = old.seal(self._written_lsn, self._syncer)
        with self._lock:
            self._sealed.append(info)
        self._segment = create_segment(
            self._directory,
            old.number + 1,
            self._written_lsn,
            self._queue_id,
            self._syncer,
        )

    def _fail(self, exc: BaseException) -> None:
        cause = f"{type(exc).__name__}: {exc}"
        # The message carries the cause. A disk that is full or read-only is
        # no bug, so its traceback is for debugging only.
        logger.error(
            "journal %s: writing failed at LSN %d, no further records are accepted: %s",
            self._segment.path,
            self._written_lsn,
            cause,
        )
        logger.debug("the failed write of journal %s", self._directory, exc_info=exc)
        with self._lock:
            self._poison = (self._segment.path, cause)
            self._synced.notify_all()


def _close_last_segment(
    scan_result: ScanResult, quarantine: str, syncer: Syncer
) -> list[SegmentInfo]:
    """Repair a torn tail and seal the last segment; return the sealed list."""
    segments = list(scan_result.segments)
    tail = scan_result.torn_tail
    if tail is not None:
        if not segments or segments[-1].path != tail.path:
            raise ValueError(f"the torn tail {tail.path} is not in the last segment")
        cut_torn_tail(tail, quarantine, syncer)
        if tail.valid_end < fmt.HEADER_SIZE:
            segments.pop()
            return segments
    if segments and not segments[-1].sealed:
        last = segments[-1]
        seal_segment(last, syncer)
        segments[-1] = SegmentInfo(
            last.path,
            last.number,
            last.first_lsn,
            last.last_lsn,
            sealed=True,
            size=os.path.getsize(last.path),
            nonce=last.nonce,
        )
    return segments
