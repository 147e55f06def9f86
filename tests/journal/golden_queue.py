"""The history behind the golden queues, and the script that wrote them.

``tests/journal/golden/format-1.2/`` contains two queue directories that
journalq wrote in format 1.2 (journal format 1.2, snapshot format 1).
Both contain the same history, written by the real :class:`QueueStore`,
journal writer and snapshot writer, in three sessions (one journal segment
each):

* ``plain/``: three segments, no snapshot, and one request left in the
  inbox, so every record type except ``SnapshotTaken`` is read from a
  journal frame;
* ``compacted/``: a snapshot taken after the second session, which deleted
  the first segment and compacted the finished files of the tree, then the
  third session.

``tests/journal/test_journal_golden.py`` checks that these files decode to
the expected state. A change to the format must keep reading them: never
rewrite them. When the format changes, add a set for the new version with::

    .venv/bin/python tests/journal/golden_queue.py tests/journal/golden/format-X.Y

and copy the new queue ids, snapshot CRCs and inbox file names into that
test. A second run writes new queue ids and nonces, so the bytes differ
while the decoded history stays the same.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import msgspec

from journalq import inbox
from journalq.records import (
    ActionAdded,
    Canceled,
    Completed,
    Digested,
    Endpoint,
    Expanded,
    Failed,
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
    Service,
    Started,
    encode_batch,
)
from journalq.store import QueueStore

#: Nanoseconds since the epoch of the first record (2025-01-01 00:00 UTC).
T0 = 1_735_689_600_000_000_000
SECOND = 1_000_000_000

# Action ids and request keys, as journalq.plan derived them when the
# golden files were written (generation 0 of each key).
COPY_KEY, COPY = "3cbb0ee907a9aa40", "7347518c4eb181f2"
TREE_KEY, TREE = "807a86806dce9f3c", "729d93e3e9297322"
TREE_X, TREE_Y, TREE_Z = "b885e4409c83c728", "fc8fccf20ca983d6", "1f148248dab1917f"
SYNC_KEY, SYNC = "51b3a24f939ac286", "d34924fbf89004a1"
SYNC_NEW, SYNC_OLD = "35e39a013313203a", "ac53d8339317ed25"
MKDIR_KEY, MKDIR = "8da983a856248233", "21e9acea7799d806"
LIST_KEY, LIST = "820d03fe2fecc654", "56541d6a930e53a5"
GONE_KEY, GONE = "847dea8e488c6922", "ae01c2a7ff2fa935"
BIG_KEY, BIG = "701226fb620e6bec", "0c8058aaa22405db"
LATER_KEY, LATER = "cbca2cca696f29a4", "3ae38195cbdd4643"
HANDED_KEY, HANDED = "73fe5a7944e023bc", "03208e2059a72599"

A_DIGEST = "xxh128:890c8a5c5ad2a8a2edba9e94785346a3"
X_DIGEST = "xxh128:ee4ccafab07fa397ff5b6aade33b391f"
Y_DIGEST = "xxh128:5e46945d46769f2e67f4237ba01e45da"
#: What the list action stored, and its name: the SHA-256 of those bytes.
LISTING = [
    {"name": "/data/a.txt", "type": "file", "size": 6},
    {"name": "/data/tree", "type": "directory", "size": 0},
]
LISTING_NAME = "e48a7824e69a89f40921cbf98d418947f7f9cf904619c728241a5d1bf50ee322"
PART_SIZE = 64 * 1024 * 1024
BIG_SIZE = 300 * 1024 * 1024
QUEUE_NAME = "golden"


def at(seconds: float) -> int:
    """Return the timestamp ``seconds`` after :data:`T0`, in nanoseconds."""
    return T0 + int(seconds * SECOND)


def created(queue_id: str) -> QueueCreated:
    """Return the first record of a golden queue with id ``queue_id``."""
    return QueueCreated(
        queue_id,
        QUEUE_NAME,
        Endpoint("file://"),
        Endpoint("s3://", {"endpoint_url": "http://127.0.0.1:9000"}),
        parallelism=4,
        created_ns=at(0),
        compare="checksum",
        max_attempts=5,
    )


def _copy_of(action_id: str, key: str, name: str, size: int, second: float):
    return ActionAdded(
        action_id,
        Kind.COPY_FILE,
        key,
        source=f"/data/{name}",
        destination=f"/backup/{name}",
        size=size,
        added_ns=at(second),
    )


def _child(parent: str, action_id: str, relpath: str, size: int) -> ActionAdded:
    return ActionAdded(
        action_id,
        Kind.COPY_FILE,
        "",
        parent=parent,
        relpath=relpath,
        size=size,
        compare="checksum",
    )


#: The first session, after the ``QueueCreated`` record: a file copied, a
#: tree expanded with one file copied, one copied after a retryable
#: failure and one canceled.
FIRST_SESSION: list[Record] = [
    _copy_of(COPY, COPY_KEY, "a.txt", 6, 1),
    Started(COPY, 1, at(2)),
    Progress(COPY, 1, 6),
    Digested(Service.SOURCE, "/data/a.txt", 6, at(-60), A_DIGEST, at(2)),
    Digested(Service.DESTINATION, "/backup/a.txt", 6, at(-60), A_DIGEST, at(2)),
    Completed(
        COPY,
        1,
        Outcome.COPIED,
        "xxh128",
        6,
        Identity(6, at(-60), A_DIGEST),
        Identity(6, at(-60), A_DIGEST, "etag-a"),
        finished_ns=at(3),
    ),
    ActionAdded(
        TREE,
        Kind.COPY_TREE,
        TREE_KEY,
        source="/data/tree",
        destination="/backup/tree",
        recursive=True,
        compare="checksum",
        added_ns=at(4),
    ),
    Started(TREE, 1, at(5)),
    _child(TREE, TREE_X, "x.txt", 10),
    _child(TREE, TREE_Y, "sub/y.txt", 20),
    _child(TREE, TREE_Z, "z.txt", 30),
    Expanded(TREE, 3, "blake2b:00112233445566778899aabbccddeeff", 1, "size"),
    Started(TREE_X, 1, at(6)),
    Digested(Service.SOURCE, "/data/tree/x.txt", 10, at(-50), X_DIGEST, at(6)),
    Completed(TREE_X, 1, Outcome.COPIED, "xxh128", 10, finished_ns=at(7)),
    Started(TREE_Y, 1, at(6)),
    Failed(
        TREE_Y,
        1,
        "ConnectionResetError",
        "[Errno 104] Connection reset by peer",
        True,
        finished_ns=at(7),
    ),
    Started(TREE_Y, 2, at(8)),
    Completed(TREE_Y, 2, Outcome.COPIED, "xxh128", 20, finished_ns=at(9)),
    Canceled(TREE_Z, "journalq cancel"),
    Completed(TREE, 1, Outcome.DONE, "tree", finished_ns=at(10)),
]

#: The second session: a sync with a new file and an extraneous one, a
#: mkdir, a list with a stored result, and a copy that failed for good,
#: was retried and failed again.
SECOND_SESSION: list[Record] = [
    ActionAdded(
        SYNC,
        Kind.SYNC,
        SYNC_KEY,
        source="/data/photos",
        destination="/backup/photos",
        recursive=True,
        delete_extraneous=True,
        compare="size",
        added_ns=at(20),
    ),
    Started(SYNC, 1, at(21)),
    ActionAdded(
        SYNC_NEW,
        Kind.COPY_FILE,
        "",
        parent=SYNC,
        relpath="new.jpg",
        size=2_000_000,
        compare="size",
    ),
    ActionAdded(
        SYNC_OLD,
        Kind.DELETE,
        "",
        service=Service.DESTINATION,
        parent=SYNC,
        relpath="old.jpg",
        compare="size",
    ),
    Expanded(SYNC, 2, "blake2b:ffeeddccbbaa99887766554433221100", 3, "size"),
    ActionAdded(
        MKDIR,
        Kind.MKDIR,
        MKDIR_KEY,
        destination="/backup/empty",
        service=Service.DESTINATION,
        added_ns=at(22),
    ),
    Started(MKDIR, 1, at(23)),
    Completed(MKDIR, 1, Outcome.DONE, "mkdir", finished_ns=at(23)),
    ActionAdded(
        LIST,
        Kind.LIST,
        LIST_KEY,
        source="/data",
        service=Service.SOURCE,
        recursive=True,
        added_ns=at(24),
    ),
    Started(LIST, 1, at(25)),
    Completed(LIST, 1, Outcome.DONE, "list", result=LISTING_NAME, finished_ns=at(26)),
    _copy_of(GONE, GONE_KEY, "gone.txt", 5, 27),
    Started(GONE, 1, at(28)),
    Failed(
        GONE,
        1,
        "FileNotFoundError",
        "source file not found: /data/gone.txt",
        False,
        finished_ns=at(28),
    ),
    Retried(GONE, at(30)),
    Started(GONE, 2, at(31)),
    Failed(
        GONE,
        2,
        "FileNotFoundError",
        "source file not found: /data/gone.txt",
        False,
        finished_ns=at(31),
    ),
]

#: The third session: a large copy left in progress with two parts
#: durable, as a killed run leaves it, a copy still waiting, and the first
#: copy added again, which changes nothing.
THIRD_SESSION: list[Record] = [
    _copy_of(BIG, BIG_KEY, "big.iso", BIG_SIZE, 40),
    Started(BIG, 1, at(41)),
    PartsPlanned(
        BIG,
        1,
        PART_SIZE,
        "/backup/.big.iso.journalq-parts",
        Identity(BIG_SIZE, at(-100), None),
        at(41),
    ),
    PartWritten(BIG, 1, Part(1, 0, PART_SIZE, "crc32c:0a1b2c3d")),
    PartWritten(BIG, 1, Part(2, PART_SIZE, PART_SIZE, "crc32c:4e5f6a7b", "etag-2")),
    Progress(BIG, 1, 2 * PART_SIZE),
    _copy_of(LATER, LATER_KEY, "later.txt", 7, 42),
    _copy_of(COPY, COPY_KEY, "a.txt", 6, 43),
]

#: The request left in the inbox of ``plain/``, as ``journalq add`` posts
#: it while another process runs the queue.
HANDED_OFF: list[Record] = [_copy_of(HANDED, HANDED_KEY, "handed.txt", 8, 50)]


def _session(
    directory: Path, records: list[Record], *, listing: bool, snapshot: bool
) -> None:
    """Open the queue (creating it), journal ``records`` durably, close it.

    ``listing`` also stores the result file that the list action's
    ``Completed`` names; ``snapshot`` takes a snapshot before closing.
    """
    store = QueueStore.open(directory, create=created)
    try:
        store.append(records, durable=True)
        if listing:
            name = store.write_result(msgspec.msgpack.encode(LISTING))
            if name != LISTING_NAME:
                raise RuntimeError(f"the listing was stored as {name}")
        if snapshot:
            store.take_snapshot()
    finally:
        store.close()


def write_golden(directory: Path) -> None:
    """Write ``plain/`` and ``compacted/`` under ``directory``."""
    for variant in ("plain", "compacted"):
        queue = directory / variant
        shutil.rmtree(queue, ignore_errors=True)
        compacted = variant == "compacted"
        _session(queue, FIRST_SESSION, listing=False, snapshot=False)
        _session(queue, SECOND_SESSION, listing=True, snapshot=compacted)
        _session(queue, THIRD_SESSION, listing=False, snapshot=False)
    inbox.post(directory / "plain", encode_batch(HANDED_OFF))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DIRECTORY")
    write_golden(Path(sys.argv[1]))
