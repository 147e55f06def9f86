"""The histories behind the golden queues, and the script that wrote them.

``tests/journal/golden/format-X.Y/`` contains two queue directories that
journalq wrote in format X.Y (journal format X.Y, snapshot format 1).
Both contain the same history, written by the real :class:`QueueStore`,
journal writer and snapshot writer, one session (one journal segment)
after another:

* ``plain/``: one segment per session, no snapshot, and one request left
  in the inbox, so every record type except ``SnapshotTaken`` is read from
  a journal frame;
* ``compacted/``: the same sessions with one snapshot taken in the course
  of one of them (see :class:`History`). The snapshot deleted the sealed
  segments it covers and compacted the finished files of the trees.

Format 1.2 has three sessions. They copy a file and a tree (with a
retryable failure and a cancel), and add a sync, a mkdir and a list with
a stored result. A copy fails for good, is retried and fails again, and
a large copy stays in progress with two parts written. The snapshot of
1.2 follows the second session. Format 1.3 keeps those three sessions
and adds two runs that hand batches of tree files to a copy process
(``HandedOut``), get files back unstarted (``Returned``) and end a tree
with a failed file. A cancel of that file then reopens the tree
(``ActionState.reopened_by_cancel``), and the last run is killed with a
file handed out, which the next open returns without a crash counted.
Both trees journal the mtimes of their source directories
(``Expanded.directory_mtimes``). The snapshot of 1.3 is taken in the
last session while files are handed out, so it encodes
``ActionState.handed_out``.

``tests/journal/test_journal_golden.py`` (format 1.2) and
``tests/journal/test_journal_golden_1_3.py`` check that these files decode
to the expected state. A change to the format must keep reading them:
never rewrite them. When the format changes, add a history for the new
version to :data:`HISTORIES`, write its set with::

    .venv/bin/python tests/journal/golden_queue.py X.Y tests/journal/golden/format-X.Y

and copy the new queue ids, snapshot CRCs and inbox file names into a
test of that set. A second run writes new queue ids and nonces, so the
bytes differ while the decoded history stays the same. The files carry
the format version of the journalq that runs the script, so a set of
format X.Y can only be written by journalq X.Y. Given an older version,
the script writes that version's history in the current format.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import NamedTuple

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
# Action ids and request keys of the 1.3 history, derived by journalq.plan
# when its golden files were written.
ALBUM_KEY, ALBUM = "25c75b63f0b28248", "b51e51f339c64a90"
COVER, RAW_A, RAW_B = "dbf48c054749593d", "8829acef1b3413a5", "44921d6f1c571a45"
NOTES, RAW_C = "469c30aab53ec259", "bdd556bb370d8ff1"
DOCS_KEY, DOCS = "07e0e4eeb56140d4", "dc844b3bec7a5948"
README, SECRET = "65561116281a4f86", "28af24b4d33adcce"

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


def _child(
    parent: str, action_id: str, relpath: str, size: int, compare: str = "checksum"
) -> ActionAdded:
    """Return a file found by listing the tree ``parent``, with its compare policy."""
    return ActionAdded(
        action_id,
        Kind.COPY_FILE,
        "",
        parent=parent,
        relpath=relpath,
        size=size,
        compare=compare,
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

#: The fourth session (format 1.3): a run that hands the five files of a
#: tree to a copy process. The process copies one of them. Another
#: process adds a second tree through the inbox, so the copy process
#: hands the other four back unstarted. The run copies one of those
#: itself, after a retryable failure, and hands out the second tree's
#: files. The copy process copies one and returns the other without an
#: outcome. That file fails for good here, and so its tree fails. Three
#: files of the first tree still wait when the run stops.
FOURTH_SESSION: list[Record] = [
    ActionAdded(
        ALBUM,
        Kind.COPY_TREE,
        ALBUM_KEY,
        source="/data/album",
        destination="/backup/album",
        recursive=True,
        compare="size",
        added_ns=at(60),
    ),
    _child(ALBUM, COVER, "cover.jpg", 100, compare="size"),
    _child(ALBUM, RAW_A, "raw/a.cr2", 200, compare="size"),
    _child(ALBUM, RAW_B, "raw/b.cr2", 300, compare="size"),
    _child(ALBUM, NOTES, "notes.txt", 40, compare="size"),
    _child(ALBUM, RAW_C, "raw/c.cr2", 500, compare="size"),
    Expanded(
        ALBUM,
        5,
        "f2cdcdece4c0ad22429cd908dfd3ba93",
        1,
        "size",
        {"": at(-20), "raw": at(-21), "raw/old": at(-22)},
    ),
    HandedOut((COVER, RAW_A, RAW_B, NOTES, RAW_C), 1, at(61)),
    Completed(COVER, 1, Outcome.COPIED, "size", 100, finished_ns=at(62)),
    Returned((RAW_A, RAW_B, NOTES, RAW_C), 1),
    ActionAdded(
        DOCS,
        Kind.COPY_TREE,
        DOCS_KEY,
        source="/data/docs",
        destination="/backup/docs",
        recursive=True,
        compare="size",
        added_ns=at(62),
    ),
    _child(DOCS, README, "readme.md", 12, compare="size"),
    _child(DOCS, SECRET, "secret.pdf", 34, compare="size"),
    Expanded(DOCS, 2, "fc0003587136a64557864566da093929", 0, "", {"": at(-10)}),
    Started(RAW_A, 1, at(63)),
    Failed(
        RAW_A,
        1,
        "ConnectionResetError",
        "[Errno 104] Connection reset by peer",
        True,
        finished_ns=at(63),
    ),
    Started(RAW_A, 2, at(64)),
    Completed(RAW_A, 2, Outcome.COPIED, "size", 200, finished_ns=at(65)),
    HandedOut((README, SECRET), 1, at(66)),
    Completed(README, 1, Outcome.COPIED, "size", 12, finished_ns=at(67)),
    Returned((SECRET,), 1),
    Started(SECRET, 1, at(68)),
    Failed(
        SECRET,
        1,
        "PermissionError",
        "[Errno 13] Permission denied: '/data/docs/secret.pdf'",
        False,
        finished_ns=at(68),
    ),
    Failed(
        DOCS,
        1,
        "ChildrenFailed",
        "1 of 2 items failed; see `journalq actions --status failed --queue golden`",
        False,
        finished_ns=at(69),
    ),
]

#: The fifth session (format 1.3): a run journals a cancel of the failed
#: file from the inbox, which reopens its tree. It hands out two of the
#: waiting files and is killed after the copy process copied one of them.
#: So the other stays in progress through the hand-out, and the third
#: waiting file still waits.
FIFTH_SESSION: list[Record] = [
    Canceled(SECRET, "user"),
    HandedOut((RAW_B, RAW_C), 1, at(71)),
    Completed(RAW_B, 1, Outcome.COPIED, "size", 300, finished_ns=at(72)),
]

#: The request left in the inbox of ``plain/``, as ``journalq add`` posts
#: it while another process runs the queue.
HANDED_OFF: list[Record] = [_copy_of(HANDED, HANDED_KEY, "handed.txt", 8, 50)]


class History(NamedTuple):
    """The sessions of one format's golden queues."""

    sessions: tuple[list[Record], ...]
    #: Where ``compacted/`` takes its snapshot: the index of the session,
    #: and how many of its records are journaled before the snapshot.
    snapshot_at: tuple[int, int]


#: Format version -> its golden history.
HISTORIES: dict[str, History] = {
    "1.2": History(
        (FIRST_SESSION, SECOND_SESSION, THIRD_SESSION), (1, len(SECOND_SESSION))
    ),
    # The snapshot follows the hand-out of RAW_B and RAW_C, so both are in
    # progress through it, and RAW_B's completion is replayed after it.
    "1.3": History(
        (FIRST_SESSION, SECOND_SESSION, THIRD_SESSION, FOURTH_SESSION, FIFTH_SESSION),
        (4, 2),
    ),
}
#: The session whose records include the list action's ``Completed``.
LISTING_SESSION = 1


def _session(
    directory: Path,
    records: list[Record],
    *,
    listing: bool,
    snapshot_after: int | None,
) -> None:
    """Open the queue (creating it), journal ``records`` durably, close it.

    ``listing`` also stores the result file that the list action's
    ``Completed`` names. ``snapshot_after`` takes a snapshot once that
    many of the records are journaled (and the listing stored), then
    journals the rest.
    """
    store = QueueStore.open(directory, create=created)
    try:
        split = len(records) if snapshot_after is None else snapshot_after
        store.append(records[:split], durable=True)
        if listing:
            name = store.write_result(msgspec.msgpack.encode(LISTING))
            if name != LISTING_NAME:
                raise RuntimeError(f"the listing was stored as {name}")
        if snapshot_after is not None:
            store.take_snapshot()
        if records[split:]:
            store.append(records[split:], durable=True)
    finally:
        store.close()


def write_golden(directory: Path, version: str) -> None:
    """Write ``plain/`` and ``compacted/`` of format ``version`` under ``directory``."""
    history = HISTORIES[version]
    for variant in ("plain", "compacted"):
        queue = directory / variant
        shutil.rmtree(queue, ignore_errors=True)
        for index, records in enumerate(history.sessions):
            snapshot_session, snapshot_after = history.snapshot_at
            take = variant == "compacted" and index == snapshot_session
            _session(
                queue,
                records,
                listing=index == LISTING_SESSION,
                snapshot_after=snapshot_after if take else None,
            )
    inbox.post(directory / "plain", encode_batch(HANDED_OFF))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in HISTORIES:
        versions = "|".join(HISTORIES)
        sys.exit(f"usage: {sys.argv[0]} {{{versions}}} DIRECTORY")
    write_golden(Path(sys.argv[2]), sys.argv[1])
