"""Files a tree's listing skipped, compared again by a run with another policy.

A listing skips files it finds identical under the policy of that moment
(the queue's). A run with a stricter ``compare`` adds them back as actions
of the tree, so its own policy decides; a run whose policy accepts the
skips leaves them alone.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from tree_helpers import write_tree as write

from journalq import StorageQueue
from journalq.compare import Policy
from journalq.expansion import planned_skip
from journalq.queue import _skips_hold
from journalq.records import ActionAdded, Digested, Kind, Service
from journalq.replay import DigestCache
from journalq.store import read_state

#: One hour in nanoseconds: files this old have digests the cache trusts.
HOUR_NS = 3600 * 1_000_000_000


def age(*roots: Path) -> None:
    """Give every file under ``roots`` the same mtime, one hour old."""
    old = time.time_ns() - HOUR_NS
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                os.utime(path, ns=(old, old))


@pytest.mark.parametrize(
    ("method", "policy", "holds"),
    [
        ("xxh128", Policy.CHECKSUM, True),
        ("xxh128", Policy.SIZE, True),
        ("xxh128", Policy.SIZE_MTIME, False),
        ("xxh128", Policy.ALWAYS, False),
        ("size", Policy.SIZE, True),
        ("size", Policy.CHECKSUM, False),
        ("size", Policy.SIZE_MTIME, False),
        ("size+mtime", Policy.SIZE_MTIME, True),
        ("size+mtime", Policy.CHECKSUM, False),
        ("size+mtime", Policy.SIZE, True),
        ("", Policy.CHECKSUM, False),
    ],
)
def test_skips_hold_table(method, policy, holds):
    assert _skips_hold(method, policy) is holds


def test_checksum_run_redecides_size_skips(tmp_path):
    source = write(tmp_path / "src", {"same.txt": b"same", "differs.txt": b"new!"})
    destination = write(tmp_path / "dst", {"same.txt": b"same", "differs.txt": b"old!"})
    queue_dir = tmp_path / "queue"
    with StorageQueue(
        str(source), str(destination), name=str(queue_dir), compare="size"
    ) as queue:
        queue.sync(str(source), str(destination))
        assert queue.status()["skipped"] == 2
        summary = queue.run(compare="checksum")
        status = queue.status()
    assert summary.copied == 1
    assert summary.skipped == 1
    assert status["skipped"] == 1
    assert (destination / "differs.txt").read_bytes() == b"new!"


def test_size_run_keeps_checksum_skips(tmp_path):
    source = write(tmp_path / "src", {"a.txt": b"a" * 10, "b.txt": b"b" * 10})
    destination = tmp_path / "dst"
    queue_dir = tmp_path / "queue"
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.sync(str(source), str(destination))
        queue.run()
        age(source, destination)
        queue.sync(str(source), str(destination))
        queue.run()
        tree = queue.sync(str(source), str(destination))
        planned = queue.state.actions[tree].skipped
        length = queue.status()["length"]
        summary = queue.run(compare="size")
        added = queue.status()["length"] - length
    assert planned == 2
    assert summary.skipped == 2
    assert summary.copied == 0
    assert added == 0


def test_redecided_files_survive_reopen(tmp_path):
    source = write(tmp_path / "src", {"a.txt": b"a" * 10, "b.txt": b"b" * 10})
    destination = write(tmp_path / "dst", {"a.txt": b"A" * 10, "b.txt": b"b" * 10})
    queue_dir = tmp_path / "queue"
    stop_at_once = threading.Event()
    stop_at_once.set()
    with StorageQueue(
        str(source), str(destination), name=str(queue_dir), compare="size"
    ) as queue:
        tree = queue.sync(str(source), str(destination))
        # A stopped run adds the files back, then runs none of them.
        queue.run(compare="always", stop=stop_at_once)
    state = read_state(queue_dir)
    assert state.actions[tree].skipped == 0
    assert state.skipped == 0
    waiting = [a for a in state.actions.values() if a.added.parent == tree]
    assert len(waiting) == 2
    assert all(action.added.redecided for action in waiting)
    with StorageQueue(name=str(queue_dir)) as queue:
        summary = queue.run(compare="always")
    assert summary.copied == 2
    assert (destination / "a.txt").read_bytes() == b"a" * 10


@pytest.mark.parametrize(
    ("listed_size", "listed_etag", "method"),
    [
        (5, '"etag-1"', "xxh128"),
        (5, '"etag-2"', None),
        (5, None, None),
        (6, '"etag-1"', None),
    ],
)
def test_planned_skip_etag_table(listed_size, listed_etag, method):
    """A destination entry with an ETag is valid while its size and ETag are listed.

    Its mtime plays no part: the listed one (the object's LastModified)
    differs from the cached one, which is the source's.
    """
    parent = ActionAdded(
        "tree", Kind.SYNC, "key", source="/data", destination="bucket/out"
    )
    digests = DigestCache({})
    old = time.time_ns() - HOUR_NS
    digests[(Service.SOURCE, "/data/a.txt")] = Digested(
        Service.SOURCE, "/data/a.txt", 5, old, "xxh128:ab", old + HOUR_NS, 1, 2
    )
    digests[(Service.DESTINATION, "bucket/out/a.txt")] = Digested(
        Service.DESTINATION,
        "bucket/out/a.txt",
        5,
        old,
        "xxh128:ab",
        time.time_ns(),
        etag='"etag-1"',
    )
    etags = {"a.txt": listed_etag} if listed_etag else {}
    identical = planned_skip(parent, Policy.CHECKSUM, digests, etags=({}, etags))
    assert identical is not None
    decided = identical("a.txt", (5, old, 1, 2), (listed_size, time.time_ns()))
    assert decided == method
