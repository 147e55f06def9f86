"""Journal: appends, group commit, rolling, repair on open, failures."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from journal_helpers import (
    QUEUE_ID,
    all_records,
    load_image,
    make_batches,
    replay,
    started,
    store_image,
    write_journal,
)

from journalq import durable, errors, faults, records
from journalq.journal import Journal, scan
from journalq.journal import format as fmt


def open_journal(
    directory: Path,
    *,
    sync: str = "batch",
    segment_bytes: int = 1 << 20,
    queue_dir: str | None = None,
) -> Journal:
    result = scan(directory, QUEUE_ID)
    return Journal.open(
        directory,
        QUEUE_ID,
        result,
        encode_batch=records.encode_batch,
        sync=sync,  # type: ignore[arg-type]
        segment_bytes=segment_bytes,
        queue_dir=queue_dir,
    )


def test_open_creates_directory(journal_dir: Path) -> None:
    with open_journal(journal_dir) as journal:
        assert journal.next_lsn == 1
        segments = [name for name, _ in load_image(journal_dir)]
    assert segments == [fmt.segment_name(1, 1)]
    assert journal_dir.is_dir()


def test_close_deletes_empty_segment(journal_dir: Path) -> None:
    """A journal opened and closed without an append leaves its files as
    they were, and the next open goes on from the same sequence number."""
    with open_journal(journal_dir) as journal:
        journal.append([started(0)], durable=True)
    before = load_image(journal_dir)

    with open_journal(journal_dir):
        pass
    between = load_image(journal_dir)
    with open_journal(journal_dir) as journal:
        last = journal.append([started(1)], durable=True)
    result = scan(journal_dir, QUEUE_ID)

    assert between == before
    assert last == 2
    assert [Path(segment.path).name for segment in result.segments] == [
        fmt.segment_name(1, 1),
        fmt.segment_name(2, 2),
    ]
    assert all(segment.sealed for segment in result.segments)
    assert replay(result) == [started(0), started(1)]


def test_append_returns_dense_lsns(journal_dir: Path) -> None:
    with open_journal(journal_dir) as journal:
        assert journal.append([started(0), started(1)], durable=True) == 2
        assert journal.append([started(2)], durable=False) == 3
        assert journal.append([], durable=True) == 3
        assert journal.next_lsn == 4
    result = scan(journal_dir, QUEUE_ID)
    assert replay(result) == [started(0), started(1), started(2)]
    assert result.next_lsn == 4


def test_durable_append_is_on_disk_before_return(journal_dir: Path) -> None:
    journal = open_journal(journal_dir)
    try:
        journal.append([started(0)], durable=True)
        # Read by a scan while the journal is still open.
        assert replay(scan(journal_dir, QUEUE_ID)) == [started(0)]
    finally:
        journal.close()


def test_non_durable_append_is_written_by_flush(journal_dir: Path) -> None:
    with open_journal(journal_dir) as journal:
        for index in range(50):
            journal.append([started(index)], durable=False)
        journal.flush()
        assert len(replay(scan(journal_dir, QUEUE_ID))) == 50


def test_close_is_idempotent_and_final(journal_dir: Path) -> None:
    journal = open_journal(journal_dir)
    journal.append([started(0)], durable=False)
    journal.close()
    journal.close()
    with pytest.raises(errors.JournalError, match="closed"):
        journal.append([started(1)], durable=True)
    assert replay(scan(journal_dir, QUEUE_ID)) == [started(0)]


def test_one_sync_per_batch(journal_dir: Path) -> None:
    with open_journal(journal_dir) as journal:
        before = journal.syncs
        journal.append([started(0), started(1)], durable=True)
        assert journal.syncs == before + 1
        assert journal.bytes_written > fmt.FRAME_HEADER_SIZE


def test_sync_none_never_syncs(journal_dir: Path) -> None:
    with open_journal(journal_dir, sync="none") as journal:
        journal.append([started(0)], durable=True)
        assert journal.syncs == 0
    assert replay(scan(journal_dir, QUEUE_ID)) == [started(0)]


def test_segments_roll_and_seal(journal_dir: Path) -> None:
    batches = make_batches([3] * 30)
    write_journal(journal_dir, batches, segment_bytes=fmt.HEADER_SIZE + 300)
    result = scan(journal_dir, QUEUE_ID)
    assert len(result.segments) > 3
    assert all(segment.sealed for segment in result.segments[:-1])
    assert not result.segments[-1].sealed
    assert replay(result) == all_records(batches)


def test_reopen_seals_and_continues(journal_dir: Path) -> None:
    write_journal(journal_dir, make_batches([2, 2]))
    write_journal(journal_dir, make_batches([3], start=4))
    result = scan(journal_dir, QUEUE_ID)
    assert [s.sealed for s in result.segments] == [True, False]
    assert result.segments[1].first_lsn == 5
    assert replay(result) == all_records(make_batches([2, 2, 3]))


def test_open_removes_half_created_segments(journal_dir: Path) -> None:
    write_journal(journal_dir, make_batches([1]))
    temporary = journal_dir / (fmt.segment_name(2, 2) + ".tmp")
    temporary.write_bytes(b"JOURNALQ")
    write_journal(journal_dir, [])
    assert not temporary.exists()


def test_open_repairs_torn_tail(journal_dir: Path) -> None:
    write_journal(journal_dir, make_batches([2, 3]))
    segment = journal_dir / fmt.segment_name(1, 1)
    clean = segment.read_bytes()
    garbage = b"\x07" * 40
    segment.write_bytes(clean + garbage)

    result = scan(journal_dir, QUEUE_ID)
    assert result.torn_tail is not None
    with open_journal(journal_dir) as journal:
        journal.append([started(9)], durable=True)

    quarantined = (
        journal_dir.parent / "quarantine" / f"{segment.name}.{len(clean)}.torn"
    )
    assert quarantined.read_bytes() == garbage
    assert segment.read_bytes().startswith(clean)
    after = scan(journal_dir, QUEUE_ID)
    assert after.torn_tail is None
    assert after.segments[0].sealed
    assert replay(after) == [*all_records(make_batches([2, 3])), started(9)]


def test_open_quarantines_in_queue_dir(journal_dir: Path, tmp_path: Path) -> None:
    write_journal(journal_dir, make_batches([1]))
    segment = journal_dir / fmt.segment_name(1, 1)
    segment.write_bytes(segment.read_bytes() + b"\x00" * 8)
    elsewhere = tmp_path / "elsewhere"
    with open_journal(journal_dir, queue_dir=str(elsewhere)):
        pass
    assert len(list((elsewhere / "quarantine").iterdir())) == 1


def test_open_removes_segment_cut_in_header(journal_dir: Path) -> None:
    write_journal(journal_dir, make_batches([2]))
    write_journal(journal_dir, [])
    image = load_image(journal_dir)
    name, data = image[-1]
    store_image(journal_dir, [*image[:-1], (name, data[:20])])

    with open_journal(journal_dir) as journal:
        assert journal.append([started(5)], durable=True) == 3
    assert not (journal_dir / name).exists()
    result = scan(journal_dir, QUEUE_ID)
    assert replay(result) == [started(0), started(1), started(5)]


def test_delete_through_keeps_newer_segments(journal_dir: Path) -> None:
    batches = make_batches([4] * 12)
    with open_journal(journal_dir, segment_bytes=fmt.HEADER_SIZE + 250) as journal:
        for batch in batches:
            journal.append(batch, durable=True)
        sealed = [s for s in scan(journal_dir, QUEUE_ID).segments if s.sealed]
        assert len(sealed) >= 3
        snapshot_lsn = sealed[1].last_lsn + 1  # inside the third segment

        deleted = journal.delete_through(snapshot_lsn)
        assert deleted == [sealed[0].path, sealed[1].path]
        assert journal.delete_through(snapshot_lsn) == []
        journal.append([started(99)], durable=True)

    with pytest.raises(errors.CorruptionError):
        scan(journal_dir, QUEUE_ID)
    result = scan(journal_dir, QUEUE_ID, after_lsn=snapshot_lsn)
    expected = [*all_records(batches), started(99)][snapshot_lsn:]
    assert replay(result, snapshot_lsn) == expected


def test_delete_through_never_deletes_active_segment(journal_dir: Path) -> None:
    with open_journal(journal_dir) as journal:
        journal.append([started(0)], durable=True)
        assert journal.delete_through(10**9) == []
    assert len(load_image(journal_dir)) == 1


def test_many_producers(journal_dir: Path) -> None:
    threads, appends = 8, 200
    acknowledged: list[tuple[int, records.Record]] = []
    lock = threading.Lock()

    def produce(worker: int) -> None:
        for index in range(appends):
            record = records.Started(action_id=f"w{worker}-{index}", attempt=1)
            lsn = journal.append([record], durable=index % 3 != 0)
            if index % 3 != 0:
                with lock:
                    acknowledged.append((lsn, record))

    with open_journal(journal_dir, segment_bytes=1 << 30) as journal:
        syncs_at_open = journal.syncs
        workers = [threading.Thread(target=produce, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        journal.flush()
        syncs = journal.syncs - syncs_at_open

    result = scan(journal_dir, QUEUE_ID)
    recovered = replay(result)
    assert len(recovered) == threads * appends
    assert result.next_lsn == threads * appends + 1
    for lsn, record in acknowledged:
        assert recovered[lsn - 1] == record
    first_lsns = [frame.first_lsn for frame in result.frames]
    assert first_lsns[0] == 1
    for frame, following in zip(result.frames, result.frames[1:], strict=False):
        assert following.first_lsn == frame.last_lsn + 1
    assert syncs == len(result.frames)
    assert len(result.frames) < threads * appends


def test_large_batch_is_split_below_frame_limit(
    journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frame limit is lowered so that a small batch exceeds it."""
    monkeypatch.setattr(fmt, "MAX_PAYLOAD", 2000)
    batch = [started(i) for i in range(400)]
    with open_journal(journal_dir) as journal:
        before = journal.syncs
        assert journal.append(batch, durable=True) == 400
        frames = journal.syncs - before
    result = scan(journal_dir, QUEUE_ID)
    assert replay(result) == batch
    assert frames == len(result.frames) > 1


class FailingOps(durable.FileOps):
    """File operations that fail once on demand.

    A mock, because a real disk cannot be made to fail an fsync or run out
    of space at a chosen write.
    """

    def __init__(self) -> None:
        self.fail_sync = False
        self.fail_write = False

    def fdatasync(self, fd: int) -> None:
        if self.fail_sync:
            self.fail_sync = False
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().fdatasync(fd)

    def write_all(self, fd: int, data: bytes | memoryview) -> None:
        if self.fail_write:
            self.fail_write = False
            super().write_all(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().write_all(fd, data)


def test_fsync_error_poisons(journal_dir: Path) -> None:
    ops = FailingOps()
    durable.ops = ops
    journal = open_journal(journal_dir)
    journal.append([started(0), started(1)], durable=True)

    ops.fail_sync = True
    with pytest.raises(errors.JournalPoisonedError, match="Input/output error"):
        journal.append([started(2)], durable=True)
    with pytest.raises(errors.JournalPoisonedError):
        journal.append([started(3)], durable=False)
    with pytest.raises(errors.JournalPoisonedError):
        journal.flush()
    with pytest.raises(errors.JournalPoisonedError):
        journal.close()
    journal.close()

    # The failed batch was written before its sync failed, so the page
    # cache may still hold it: recovery keeps it or not, but keeps the
    # synced records either way.
    recovered = replay(scan(journal_dir, QUEUE_ID))
    assert recovered[:2] == [started(0), started(1)]
    assert recovered == [started(0), started(1), started(2)][: len(recovered)]
    with open_journal(journal_dir) as reopened:
        reopened.append([started(4)], durable=True)
    assert replay(scan(journal_dir, QUEUE_ID))[-1] == started(4)


def test_short_write_leaves_torn_tail(journal_dir: Path) -> None:
    ops = FailingOps()
    durable.ops = ops
    journal = open_journal(journal_dir)
    journal.append([started(0)], durable=True)
    ops.fail_write = True
    with pytest.raises(errors.JournalPoisonedError, match="No space left"):
        journal.append([started(1), started(2)], durable=True)
    with pytest.raises(errors.JournalPoisonedError):
        journal.close()

    result = scan(journal_dir, QUEUE_ID)
    assert result.torn_tail is not None
    assert replay(result) == [started(0)]
    with open_journal(journal_dir) as reopened:
        assert reopened.append([started(3)], durable=True) == 2
    after = scan(journal_dir, QUEUE_ID)
    assert after.torn_tail is None
    assert replay(after) == [started(0), started(3)]


def test_encode_error_poisons(journal_dir: Path) -> None:
    journal = open_journal(journal_dir)
    with pytest.raises(errors.JournalPoisonedError, match="TypeError"):
        journal.append([object()], durable=True)
    with pytest.raises(errors.JournalPoisonedError):
        journal.close()


def test_fault_hook_failure_poisons(journal_dir: Path) -> None:
    def hook(name: str) -> None:
        if name == "journal.after_write":
            raise RuntimeError("injected")

    journal = open_journal(journal_dir)
    faults.install(hook)
    with pytest.raises(errors.JournalPoisonedError, match="injected"):
        journal.append([started(0)], durable=True)
    faults.clear()
    with pytest.raises(errors.JournalPoisonedError):
        journal.close()


def test_poisoned_error_pickles(journal_dir: Path) -> None:
    import pickle

    journal = open_journal(journal_dir)
    with pytest.raises(errors.JournalPoisonedError) as info:
        journal.append([object()], durable=True)
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value)
    with pytest.raises(errors.JournalPoisonedError):
        journal.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [({"sync": "always"}, "sync must be"), ({"segment_bytes": 64}, "segment_bytes")],
)
def test_open_rejects_bad_options(
    journal_dir: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        open_journal(journal_dir, **options)


def test_open_rejects_short_queue_id(journal_dir: Path) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Journal.open(
            journal_dir,
            b"short",
            scan(journal_dir, QUEUE_ID),
            encode_batch=records.encode_batch,
        )
    assert not journal_dir.exists()


def test_clean_close_seals_last_segment(journal_dir: Path) -> None:
    journal = Journal.open(
        journal_dir,
        QUEUE_ID,
        scan(journal_dir, QUEUE_ID),
        encode_batch=records.encode_batch,
    )
    journal.append([started(index) for index in range(10)], durable=True)
    journal.close()
    result = scan(journal_dir, QUEUE_ID)
    assert result.segments[-1].sealed
    assert result.torn_tail is None


def test_flip_after_clean_close_is_corruption(journal_dir: Path) -> None:
    journal = Journal.open(
        journal_dir,
        QUEUE_ID,
        scan(journal_dir, QUEUE_ID),
        encode_batch=records.encode_batch,
    )
    journal.append([started(index) for index in range(10)], durable=True)
    journal.close()
    segment = Path(scan(journal_dir, QUEUE_ID).segments[-1].path)
    data = bytearray(segment.read_bytes())
    data[fmt.HEADER_SIZE + 30] ^= 0x01
    segment.write_bytes(bytes(data))
    with pytest.raises(errors.CorruptionError):
        scan(journal_dir, QUEUE_ID)
