"""Large copies in journaled parts: resume after a kill, changes, damage."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import msgspec
import pytest
import xxhash

from journalq import RunSummary, StorageQueue, faults, parts
from journalq.journal.reader import scan
from journalq.records import Completed, PartsPlanned, PartWritten, decode_batch
from journalq.replay import decode_state, encode_state
from journalq.store import JOURNAL_DIR, read_state

MIB = 1024 * 1024
#: A 6.5 MiB file in 1 MiB parts: seven parts, the last one short.
SIZE = 6 * MIB + MIB // 2


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of 1 MiB, so a file of a few MiB has several."""
    monkeypatch.setattr(parts, "PART_SIZE", MIB)


def journal_records(queue_dir: Path, kind: type) -> list:
    """Return the records of type ``kind`` in the queue's journal, in order."""
    header = msgspec.msgpack.decode((queue_dir / "FORMAT").read_bytes())
    result = scan(queue_dir / JOURNAL_DIR, bytes.fromhex(header["queue_id"]))
    return [
        record
        for frame in result.frames
        for record in decode_batch(frame.payload)
        if isinstance(record, kind)
    ]


def run_copy(tmp_path: Path, **extra: object) -> RunSummary:
    with StorageQueue(
        tmp_path / "src", tmp_path / "dst", tmp_path / "q", part_threshold=MIB
    ) as queue:
        queue.copy_file("big.bin", "big.bin")
        summary = queue.run(**extra)
    assert summary.failed == 0
    return summary


def killed_copy(tmp_path: Path, crash_at: str) -> int:
    """Run the copy in a child that SIGKILLs itself at ``crash_at``."""
    script = textwrap.dedent(
        f"""
        import sys
        from journalq import StorageQueue, parts
        parts.PART_SIZE = {MIB}
        with StorageQueue(sys.argv[1], sys.argv[2], sys.argv[3],
                          part_threshold={MIB}) as queue:
            queue.copy_file("big.bin", "big.bin")
            queue.run()
        """
    )
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            tmp_path / "src",
            tmp_path / "dst",
            tmp_path / "q",
        ],
        env={**os.environ, "JOURNALQ_CRASH_AT": crash_at},
        capture_output=True,
        check=False,
    )
    return child.returncode


@pytest.fixture
def source(tmp_path: Path) -> bytes:
    data = os.urandom(SIZE)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(data)
    return data


def test_large_copy_goes_in_parts(tmp_path: Path, source: bytes) -> None:
    run_copy(tmp_path)

    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    state = read_state(tmp_path / "q")
    (action,) = list(state.actions.values())
    assert action.completed is not None
    assert action.parts is None
    written = journal_records(tmp_path / "q", PartWritten)
    assert [record.part.number for record in written] == list(range(7))
    assert written[-1].part.size == MIB // 2
    assert len(journal_records(tmp_path / "q", PartsPlanned)) == 1
    # The digest is the whole file's, as in a copy in one piece.
    (completed,) = journal_records(tmp_path / "q", Completed)
    assert completed.source.digest == f"xxh128:{xxhash.xxh128(source).hexdigest()}"
    assert os.listdir(tmp_path / "dst") == ["big.bin"]


def test_killed_copy_resends_one_part(tmp_path: Path, source: bytes) -> None:
    # Killed after the fourth part is durable but before its record.
    assert killed_copy(tmp_path, "parts.before_record:4") == -9
    before = len(journal_records(tmp_path / "q", PartWritten))
    assert before == 3

    summary = run_copy(tmp_path)

    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    # The three journaled parts were not sent again, so they are not counted.
    assert summary.bytes == SIZE - 3 * MIB
    written = journal_records(tmp_path / "q", PartWritten)
    resent = [record.part.number for record in written[before:]]
    assert resent == [3, 4, 5, 6]
    assert len(journal_records(tmp_path / "q", PartsPlanned)) == 1
    assert sorted(os.listdir(tmp_path / "dst")) == ["big.bin"]


def test_changed_source_restarts_copy(tmp_path: Path, source: bytes) -> None:
    assert killed_copy(tmp_path, "parts.before_record:3") == -9
    changed = os.urandom(SIZE)
    (tmp_path / "src" / "big.bin").write_bytes(changed)

    summary = run_copy(tmp_path)

    assert (tmp_path / "dst" / "big.bin").read_bytes() == changed
    assert summary.bytes == SIZE
    plans = journal_records(tmp_path / "q", PartsPlanned)
    assert len(plans) == 2
    assert plans[1].source.size == SIZE


def test_damaged_part_is_sent_again(tmp_path: Path, source: bytes) -> None:
    assert killed_copy(tmp_path, "parts.before_record:5") == -9
    (plan,) = journal_records(tmp_path / "q", PartsPlanned)
    with open(plan.upload, "r+b") as temporary:
        temporary.seek(MIB + 10)
        temporary.write(b"damage")
    before = len(journal_records(tmp_path / "q", PartWritten))

    summary = run_copy(tmp_path)

    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    resent = [r.part.number for r in journal_records(tmp_path / "q", PartWritten)]
    assert resent[before:] == [1, 4, 5, 6]
    # Parts 0, 2 and 3 were found intact; the damaged part 1 was sent.
    assert summary.bytes == SIZE - 3 * MIB


def test_retry_in_same_run_counts_whole_file(tmp_path: Path, source: bytes) -> None:
    """Parts sent by an earlier attempt of the same run count as sent.

    A hook at the crash point raises ConnectionError, the transient error
    of a dropped connection, which a local disk cannot be made to raise.
    """
    records = 0

    def drop_connection(name: str) -> None:
        nonlocal records
        if name == "parts.before_record":
            records += 1
            if records == 3:
                raise ConnectionError("connection reset while sending part 3")

    faults.install(drop_connection)
    try:
        summary = run_copy(tmp_path, parallelism=1)
    finally:
        faults.clear()

    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    assert summary.retried == 1
    assert summary.bytes == SIZE


def test_stopped_copy_counts_its_journaled_parts(tmp_path: Path, source: bytes) -> None:
    """A run stopped part way counts the parts it journaled, and the run
    that resumes counts the rest, so the two summaries add up to the file."""
    stop = threading.Event()
    records = 0

    def stop_at_third_part(name: str) -> None:
        nonlocal records
        if name == "parts.before_record":
            records += 1
            if records == 3:
                stop.set()

    faults.install(stop_at_third_part)
    try:
        stopped = run_copy(tmp_path, stop=stop)
    finally:
        faults.clear()
    journaled = sum(r.part.size for r in journal_records(tmp_path / "q", PartWritten))
    resumed = run_copy(tmp_path)

    assert stopped.interrupted
    assert 0 < journaled < SIZE
    assert stopped.bytes == journaled
    assert stopped.bytes + resumed.bytes == SIZE
    assert (tmp_path / "dst" / "big.bin").read_bytes() == source


def test_killed_before_rename_completes(tmp_path: Path, source: bytes) -> None:
    assert killed_copy(tmp_path, "parts.before_rename") == -9
    assert not (tmp_path / "dst" / "big.bin").exists()

    run_copy(tmp_path)

    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    written = journal_records(tmp_path / "q", PartWritten)
    assert len(written) == 7


def test_small_file_goes_whole(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(b"x" * (MIB - 1))

    run_copy(tmp_path)

    assert journal_records(tmp_path / "q", PartsPlanned) == []
    assert (tmp_path / "dst" / "big.bin").stat().st_size == MIB - 1


def test_snapshot_keeps_parts(tmp_path: Path, source: bytes) -> None:
    assert killed_copy(tmp_path, "parts.before_record:3") == -9
    state = read_state(tmp_path / "q")
    (action,) = list(state.actions.values())
    assert action.parts is not None

    restored = decode_state(encode_state(state)).actions[action.action_id]

    assert restored.parts == action.parts
    assert sorted(restored.parts.written) == [0, 1]
