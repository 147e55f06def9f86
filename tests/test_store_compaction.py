"""A queue whose snapshot compacted its finished files works as before."""

from __future__ import annotations

import os
import time
from pathlib import Path

from journalq import StorageQueue
from journalq.records import Service
from journalq.replay import CompactAction
from journalq.store import read_state

FILES = {f"d{n % 3}/file-{n:02d}.bin": bytes([n]) * (100 + n) for n in range(12)}


def make_tree(root: Path) -> None:
    """Write FILES, dated a day back so that their digests are cached."""
    day_ago = time.time() - 86_400
    for relpath, data in FILES.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (day_ago, day_ago))


def test_resync_after_compaction_copies_nothing(tmp_path):
    source, destination, queue_dir = (tmp_path / n for n in ("src", "dst", "q"))
    make_tree(source)
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.sync(str(source), str(destination))
        first = queue.run()
        before = queue.get_actions()
        queue.compact()

    with StorageQueue(name=str(queue_dir)) as queue:
        compacted = [
            action
            for action in queue.state.actions.values()
            if isinstance(action, CompactAction)
        ]
        after = queue.get_actions()
        queue.sync(str(source), str(destination))
        second = queue.run()

    assert first.copied == len(FILES)
    assert len(compacted) == len(FILES) + 3
    assert after == before
    assert second.copied == 0
    assert second.skipped == len(FILES)


def test_compacted_queue_finds_digests(tmp_path):
    source, destination, queue_dir = (tmp_path / n for n in ("src", "dst", "q"))
    make_tree(source)
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.copy_tree(str(source), str(destination))
        queue.run()
        entries = queue.state.digests.entries()
        queue.compact()
        assert queue.state.digests.compacted == len(entries)

    state = read_state(queue_dir)
    assert len(entries) == 2 * len(FILES)
    assert state.digests.entries() == []
    for entry in entries:
        key = (entry.service, entry.path)
        assert state.digests.get(key) == entry, key
    assert state.digests.get((Service.SOURCE, str(source / "missing"))) is None


def test_read_state_leaves_temporary_snapshot(tmp_path):
    """A reader without the lock must not delete the holder's next snapshot."""
    source, destination, queue_dir = (tmp_path / n for n in ("src", "dst", "q"))
    make_tree(source)
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.copy_tree(str(source), str(destination))
        queue.run()
        queue.compact()
    unfinished = queue_dir / "snapshots" / "snap-00000000000fffff.jqs.tmp"
    unfinished.write_bytes(b"partial")

    state = read_state(queue_dir)

    assert unfinished.exists()
    assert state.status_counts()["completed"] == len(FILES) + 4


def test_run_compacts_without_snapshot(tmp_path, monkeypatch):
    """Files finished during a long run are compacted before any snapshot."""
    monkeypatch.setattr("journalq.store.COMPACT_BYTES", 512)
    source, destination, queue_dir = (tmp_path / n for n in ("src", "dst", "q"))
    make_tree(source)
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.copy_tree(str(source), str(destination))
        queue.run()
        compacted = [
            action
            for action in queue.state.actions.values()
            if isinstance(action, CompactAction)
        ]
        snapshots = list((queue_dir / "snapshots").glob("*.jqs"))
        entries = len(queue.state.digests.entries())
        reads = queue.state.digests.compacted

    assert snapshots == []
    assert len(compacted) >= len(FILES) // 2
    assert reads + entries == 2 * len(FILES)
    state = read_state(queue_dir)
    assert state.status_counts()["completed"] == len(FILES) + 4
