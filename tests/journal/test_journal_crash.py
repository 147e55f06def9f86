"""Process crashes: a child appends and is killed with SIGKILL at a crash point.

The child prints each LSN once its durable append returned. After the kill
the parent scans: every acknowledged record must be there, and what is
there must be a prefix of what the child appended. A process kill leaves the
page cache intact, so these tests check the order of steps, not fsync
placement.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from journal_helpers import QUEUE_ID, replay

from journalq import records
from journalq.journal import Journal, scan

CHILD = """
import sys
from journalq import records
from journalq.journal import Journal, scan

directory, count, segment_bytes, delete_at = sys.argv[1:5]
queue_id = bytes.fromhex(sys.argv[5])
journal = Journal.open(
    directory, queue_id, scan(directory, queue_id),
    encode_batch=records.encode_batch, segment_bytes=int(segment_bytes),
)
for index in range(int(count)):
    record = records.Started(action_id=f"child-{index}", attempt=1)
    print(journal.append([record], durable=True), flush=True)
    if index == int(delete_at):
        print("snapshot", journal.next_lsn - 1, flush=True)
        journal.delete_through(journal.next_lsn - 1)
journal.close()
print("done", flush=True)
"""

COUNT = 40
SEGMENT_BYTES = 64 + 200


def run_child(directory: Path, point: str, delete_at: int = -1) -> list[str]:
    arguments = [str(directory), str(COUNT), str(SEGMENT_BYTES), str(delete_at)]
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, *arguments, QUEUE_ID.hex()],
        env={**os.environ, "JOURNALQ_CRASH_AT": point},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == -signal.SIGKILL, completed.stderr
    return completed.stdout.split("\n")


def expected_records() -> list[records.Record]:
    return [
        records.Started(action_id=f"child-{index}", attempt=1) for index in range(COUNT)
    ]


@pytest.mark.parametrize(
    "point",
    [
        "journal.before_write:7",
        "journal.after_write:7",
        "journal.after_sync:7",
        "journal.segment_created:3",
    ],
)
def test_kill_during_append(journal_dir: Path, point: str) -> None:
    lines = run_child(journal_dir, point)
    acknowledged = [int(line) for line in lines if line.isdigit()]
    assert acknowledged, "the child was killed before any append returned"

    result = scan(journal_dir, QUEUE_ID)
    recovered = replay(result)
    assert recovered == expected_records()[: len(recovered)]
    assert len(recovered) >= max(acknowledged)

    with Journal.open(
        journal_dir, QUEUE_ID, result, encode_batch=records.encode_batch
    ) as journal:
        extra = records.Started(action_id="after-crash", attempt=2)
        journal.append([extra], durable=True)
    again = scan(journal_dir, QUEUE_ID)
    assert again.torn_tail is None
    assert replay(again) == [*recovered, extra]


@pytest.mark.parametrize("point", ["journal.before_delete:2", "journal.after_delete:1"])
def test_kill_during_delete(journal_dir: Path, point: str) -> None:
    lines = run_child(journal_dir, point, delete_at=30)
    snapshot = next(
        int(line.split()[1]) for line in lines if line.startswith("snapshot")
    )

    # The kill came before any append after the snapshot.
    result = scan(journal_dir, QUEUE_ID, after_lsn=snapshot)
    assert replay(result, snapshot) == []
    assert result.next_lsn == snapshot + 1

    with Journal.open(
        journal_dir, QUEUE_ID, result, encode_batch=records.encode_batch
    ) as journal:
        journal.delete_through(snapshot)
        extra = records.Started(action_id="after-crash", attempt=2)
        assert journal.append([extra], durable=True) == snapshot + 1
    again = scan(journal_dir, QUEUE_ID, after_lsn=snapshot)
    assert replay(again, snapshot) == [extra]
    assert [segment.first_lsn for segment in again.segments] == [snapshot + 1]
