"""Queues written in format 1.2 still decode to the same state.

The golden files under ``golden/format-1.2/`` were written once by
``golden_queue.py``, which documents them; nothing here rewrites them.
Each test reads a copy, because opening a queue for writing changes its
files. A change to the records, the journal, the snapshot payload or the
inbox that breaks one of these tests breaks every queue users already
have on disk.

The last tests append a frame with a record tag this version does not
know, as a newer journalq with a new record type would write it.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner
from golden_queue import (
    BIG,
    BIG_KEY,
    BIG_SIZE,
    COPY,
    COPY_KEY,
    FIRST_SESSION,
    GONE,
    HANDED,
    HANDED_OFF,
    LATER,
    LIST,
    LISTING,
    LISTING_NAME,
    MKDIR,
    PART_SIZE,
    SECOND_SESSION,
    SYNC,
    SYNC_NEW,
    SYNC_OLD,
    THIRD_SESSION,
    TREE,
    TREE_X,
    TREE_Y,
    TREE_Z,
    at,
    created,
)

from journalq import inbox, snapshot
from journalq.cli import cli
from journalq.cli.exits import ExitCode
from journalq.errors import CorruptionError, FormatVersionError
from journalq.journal import Journal, scan
from journalq.journal import format as fmt
from journalq.records import (
    FORMAT_MINOR,
    Canceled,
    Digested,
    Identity,
    Kind,
    Outcome,
    Part,
    Record,
    Service,
    SnapshotTaken,
    decode_batch,
)
from journalq.replay import CompactAction, QueueState, Status, decode_state
from journalq.store import QueueStore, read_format, read_state

GOLDEN = Path(__file__).parent / "golden" / "format-1.2"
VARIANTS = ("plain", "compacted")
#: The queue ids the generator drew, as each FORMAT file has them.
QUEUE_IDS = {
    "plain": "b2fe9f8c8a0b4ef2a2109c68e2794fea",
    "compacted": "ad4ee46595164a8ca9a77a2e8fe70422",
}
#: The record the snapshot of ``compacted/`` left in its journal.
SNAPSHOT_TAKEN = SnapshotTaken(39, "snap-0000000000000027.jqs", 1565660591)
INBOX_REQUEST = "01796422834693786509-0000009029-3e792f70.req"
#: The last sequence number of each queue's journal.
LAST_LSN = {"plain": 47, "compacted": 48}

#: Every action in journal order: kind, status, attempts, bytes, source
#: path and destination path.
ACTIONS = {
    COPY: (Kind.COPY_FILE, Status.COMPLETED, 1, 6, "/data/a.txt", "/backup/a.txt"),
    TREE: (Kind.COPY_TREE, Status.COMPLETED, 1, 0, "/data/tree", "/backup/tree"),
    TREE_X: (
        Kind.COPY_FILE,
        Status.COMPLETED,
        1,
        10,
        "/data/tree/x.txt",
        "/backup/tree/x.txt",
    ),
    TREE_Y: (
        Kind.COPY_FILE,
        Status.COMPLETED,
        2,
        20,
        "/data/tree/sub/y.txt",
        "/backup/tree/sub/y.txt",
    ),
    TREE_Z: (
        Kind.COPY_FILE,
        Status.CANCELED,
        0,
        0,
        "/data/tree/z.txt",
        "/backup/tree/z.txt",
    ),
    SYNC: (Kind.SYNC, Status.INPROGRESS, 1, 0, "/data/photos", "/backup/photos"),
    SYNC_NEW: (
        Kind.COPY_FILE,
        Status.WAITING,
        0,
        0,
        "/data/photos/new.jpg",
        "/backup/photos/new.jpg",
    ),
    SYNC_OLD: (
        Kind.DELETE,
        Status.WAITING,
        0,
        0,
        "/data/photos/old.jpg",
        "/backup/photos/old.jpg",
    ),
    MKDIR: (Kind.MKDIR, Status.COMPLETED, 1, 0, None, "/backup/empty"),
    LIST: (Kind.LIST, Status.COMPLETED, 1, 0, "/data", None),
    GONE: (Kind.COPY_FILE, Status.FAILED, 2, 0, "/data/gone.txt", "/backup/gone.txt"),
    BIG: (
        Kind.COPY_FILE,
        Status.INPROGRESS,
        1,
        2 * PART_SIZE,
        "/data/big.iso",
        "/backup/big.iso",
    ),
    LATER: (
        Kind.COPY_FILE,
        Status.WAITING,
        0,
        0,
        "/data/later.txt",
        "/backup/later.txt",
    ),
    HANDED: (
        Kind.COPY_FILE,
        Status.WAITING,
        0,
        0,
        "/data/handed.txt",
        "/backup/handed.txt",
    ),
}
#: The actions of ``compacted/``: the same but the hand-off, which only
#: ``plain/`` has.
COMPACTED_ACTIONS = {key: value for key, value in ACTIONS.items() if key != HANDED}
#: The tree children that the snapshot of ``compacted/`` packed.
PACKED = {TREE_X, TREE_Z}


def expected_actions(variant: str) -> dict[str, tuple]:
    return ACTIONS if variant == "plain" else COMPACTED_ACTIONS


@pytest.fixture(params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def queue(variant: str, tmp_path: Path) -> Path:
    """A copy of the golden queue ``variant``."""
    return Path(shutil.copytree(GOLDEN / variant, tmp_path / variant))


def facts(state: QueueState) -> dict[str, tuple]:
    """Return each action as the rows of :data:`ACTIONS` read."""
    rows = {}
    for action_id, action in state.actions.items():
        source, destination = state.paths(action)
        rows[action_id] = (
            action.kind,
            action.status,
            action.attempts,
            action.bytes,
            source,
            destination,
        )
    return rows


def tree_digest(directory: Path) -> dict[str, str]:
    """Return the SHA-256 of every file under ``directory`` by relative path."""
    return {
        path.relative_to(directory).as_posix(): hashlib.sha256(
            path.read_bytes()
        ).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def journal_records(queue: Path, after_lsn: int = 0) -> list[tuple[int, Record]]:
    """Decode every record of the queue's journal with its sequence number."""
    queue_id = bytes.fromhex(read_format(queue).queue_id)
    result = scan(queue / "journal", queue_id, after_lsn=after_lsn)
    assert result.torn_tail is None
    return [
        (lsn, record)
        for frame in result.frames
        for lsn, record in enumerate(decode_batch(frame.payload), frame.first_lsn)
    ]


# The files ------------------------------------------------------------------


def test_golden_format_file(variant: str, queue: Path) -> None:
    header = read_format(queue)

    assert header is not None
    assert header.magic == "journalq-queue"
    assert header.major == 1
    assert header.minor == 2
    assert header.queue_id == QUEUE_IDS[variant]


def test_golden_plain_journal_records(tmp_path: Path) -> None:
    queue = Path(shutil.copytree(GOLDEN / "plain", tmp_path / "plain"))
    history = [
        created(QUEUE_IDS["plain"]),
        *FIRST_SESSION,
        *SECOND_SESSION,
        *THIRD_SESSION,
    ]

    found = journal_records(queue)

    assert [lsn for lsn, _ in found] == list(range(1, 48))
    assert [record for _, record in found] == history


def test_golden_plain_segments(tmp_path: Path) -> None:
    """One segment per session, each sealed by the close that ended it."""
    queue = Path(shutil.copytree(GOLDEN / "plain", tmp_path / "plain"))
    result = scan(queue / "journal", bytes.fromhex(QUEUE_IDS["plain"]))

    assert [segment.first_lsn for segment in result.segments] == [1, 23, 40]
    assert [segment.sealed for segment in result.segments] == [True, True, True]
    assert result.next_lsn == 48


def test_golden_compacted_journal_records(tmp_path: Path) -> None:
    """The first segment is gone; the second, the snapshot record, the third."""
    queue = Path(shutil.copytree(GOLDEN / "compacted", tmp_path / "compacted"))
    history = [*SECOND_SESSION, SNAPSHOT_TAKEN, *THIRD_SESSION]

    # The snapshot's sequence number would skip the frames it covers.
    found = journal_records(queue, after_lsn=len(FIRST_SESSION) + 1)

    assert [lsn for lsn, _ in found] == list(range(23, 49))
    assert [record for _, record in found] == history


def test_golden_snapshot_file(tmp_path: Path) -> None:
    queue = Path(shutil.copytree(GOLDEN / "compacted", tmp_path / "compacted"))
    queue_id = bytes.fromhex(QUEUE_IDS["compacted"])

    loaded = snapshot.load_latest(queue / "snapshots", queue_id, tidy=False)

    assert loaded is not None
    info, payload = loaded
    assert info.last_lsn == SNAPSHOT_TAKEN.last_lsn
    assert info.name == SNAPSHOT_TAKEN.name
    assert info.crc == SNAPSHOT_TAKEN.crc
    state = decode_state(payload)
    assert state.last_lsn == SNAPSHOT_TAKEN.last_lsn
    assert state.created == created(QUEUE_IDS["compacted"])
    assert state.snapshot is None
    # The snapshot contains the first two sessions: none of the third.
    assert list(state.actions) == list(COMPACTED_ACTIONS)[:11]
    packed = {
        action_id
        for action_id, action in state.actions.items()
        if isinstance(action, CompactAction)
    }
    assert packed == PACKED


def test_golden_inbox_request(tmp_path: Path) -> None:
    queue = Path(shutil.copytree(GOLDEN / "plain", tmp_path / "plain"))

    pending = inbox.pending(queue)

    assert [name for name, _ in pending] == [INBOX_REQUEST]
    assert decode_batch(pending[0][1]) == HANDED_OFF


def test_golden_list_result(queue: Path) -> None:
    stored = queue / "results" / f"{LISTING_NAME}.msgpack"

    assert msgspec.msgpack.decode(stored.read_bytes()) == LISTING


# The state ------------------------------------------------------------------


def test_golden_state_actions(variant: str, queue: Path) -> None:
    state = read_state(queue)

    assert facts(state) == expected_actions(variant)
    assert list(state.actions) == list(expected_actions(variant))


def test_golden_state_totals(variant: str, queue: Path) -> None:
    state = read_state(queue)
    waiting = 4 if variant == "plain" else 3

    assert state.status_counts() == {
        "length": len(expected_actions(variant)),
        "waiting": waiting,
        "inprogress": 2,
        "completed": 6,
        "failed": 1,
        "canceled": 1,
        "skipped": 4,
        "bytes": 36,
        # The one file of TREE and the three of SYNC that their listings
        # skipped; the golden queue has no action skipped when run.
        "identical_when_listed": 4,
        # The two parts that BIG journaled before its copy stopped.
        "part_bytes": 2 * PART_SIZE,
        "part_copies": 1,
        # Only a read of a queue's inbox without its lock counts cancels.
        "cancels_requested": 0,
    }
    assert state.created == created(QUEUE_IDS[variant])
    assert state.last_lsn == LAST_LSN[variant]


def test_golden_state_snapshot_record(variant: str, queue: Path) -> None:
    state = read_state(queue)
    expected = SNAPSHOT_TAKEN if variant == "compacted" else None

    assert state.snapshot == expected


def test_golden_state_details(queue: Path) -> None:
    """The fields each kind of record leaves in the state."""
    state = read_state(queue)
    actions = state.actions

    copied = actions[COPY].completed
    assert copied is not None
    assert copied.outcome is Outcome.COPIED
    assert copied.method == "xxh128"
    assert copied.finished_ns == at(3)
    # The state drops the identities of a completed record.
    assert copied.source is None
    assert copied.destination is None
    assert actions[TREE].children == 3
    assert actions[TREE].skipped == 1
    assert actions[SYNC].children == 2
    assert actions[SYNC].skipped == 3
    assert actions[SYNC].added.delete_extraneous
    assert actions[SYNC_OLD].added.service is Service.DESTINATION
    listed = actions[LIST].completed
    assert listed is not None
    assert listed.result == LISTING_NAME
    assert actions[TREE_Z].completed is None


def test_golden_state_failures(queue: Path) -> None:
    state = read_state(queue)
    retried_first = state.actions[TREE_Y].error
    gone = state.actions[GONE].error

    # A retryable failure stays as the last error after a later success.
    assert retried_first is not None
    assert retried_first.error == "ConnectionResetError"
    assert retried_first.retryable
    assert gone is not None
    assert gone.attempt == 2
    assert gone.error == "FileNotFoundError"
    assert gone.message == "source file not found: /data/gone.txt"
    assert not gone.retryable
    assert state.actions[GONE].crashes == 0


def test_golden_state_parts(queue: Path) -> None:
    action = read_state(queue).actions[BIG]

    assert action.parts is not None
    assert action.parts.plan.part_size == PART_SIZE
    assert action.parts.plan.source == Identity(BIG_SIZE, at(-100))
    assert action.parts.plan.upload == "/backup/.big.iso.journalq-parts"
    assert action.parts.written == {
        1: Part(1, 0, PART_SIZE, "crc32c:0a1b2c3d"),
        2: Part(2, PART_SIZE, PART_SIZE, "crc32c:4e5f6a7b", "etag-2"),
    }


def test_golden_state_keys(queue: Path) -> None:
    """Adding the first copy again in the third session added nothing."""
    state = read_state(queue)

    assert state.by_key[COPY_KEY] == COPY
    assert state.generations[COPY_KEY] == 1
    assert state.by_key[BIG_KEY] == BIG
    # Tree children are found by listing and have no request key.
    assert "" not in state.by_key


def test_golden_state_digests(queue: Path) -> None:
    """The digest cache finds packed and unpacked entries alike."""
    digests = read_state(queue).digests

    source = digests.get((Service.SOURCE, "/data/a.txt"))
    child = digests.get((Service.SOURCE, "/data/tree/x.txt"))

    assert source == FIRST_SESSION[3]
    assert digests.get((Service.DESTINATION, "/backup/a.txt")) == FIRST_SESSION[4]
    assert child is not None
    assert child == Digested(
        Service.SOURCE, "/data/tree/x.txt", 10, at(-50), child.digest, at(6)
    )
    assert child.digest == "xxh128:ee4ccafab07fa397ff5b6aade33b391f"
    assert digests.get((Service.SOURCE, "/data/tree/sub/y.txt")) is None


# Opening and writing on ------------------------------------------------------


def test_golden_queue_opens_and_continues(variant: str, queue: Path) -> None:
    """This version appends to an old journal, and reads it all back."""
    store = QueueStore.open(queue)
    try:
        opened = facts(store.state)
        canceled = store.cancel([LATER], by="test")
    finally:
        store.close()
    state = read_state(queue)
    expected = dict(expected_actions(variant))
    expected[LATER] = (
        Kind.COPY_FILE,
        Status.CANCELED,
        0,
        0,
        "/data/later.txt",
        "/backup/later.txt",
    )

    # Opening journaled the hand-off waiting in the inbox of plain/.
    assert opened == expected_actions(variant)
    assert canceled == [LATER]
    assert facts(state) == expected
    assert not (queue / "inbox" / INBOX_REQUEST).exists()
    records = journal_records(queue, after_lsn=SNAPSHOT_TAKEN.last_lsn)
    assert records[-1][1] == Canceled(LATER, "test")


@pytest.mark.parametrize("command", ["status", "fsck", "actions"])
def test_golden_queue_cli(command: str, queue: Path) -> None:
    before = tree_digest(queue)

    result = CliRunner().invoke(cli, [command, "--queue", str(queue)])

    assert result.exit_code == ExitCode.OK, result.output
    assert tree_digest(queue) == before


# Unknown record tags ---------------------------------------------------------

#: The tag a newer journalq would give its first new record type.
NEW_TAG = 16


def append_unknown_record(queue: Path, *, minor: int) -> Path:
    """Append a frame of one record with tag :data:`NEW_TAG`; return its segment.

    The frame goes into a new segment, as every open starts one, whose
    header gets format minor version ``minor``. A journalq that added a
    record type would raise its minor version, so ``FORMAT_MINOR + 1`` is
    what it writes; ``FORMAT_MINOR`` is a writer that broke that rule.
    """
    queue_id = bytes.fromhex(read_format(queue).queue_id)
    directory = queue / "journal"
    last_lsn = 0 if not (queue / "snapshots").exists() else SNAPSHOT_TAKEN.last_lsn
    result = scan(directory, queue_id, after_lsn=last_lsn)
    unknown = msgspec.msgpack.encode([[NEW_TAG, COPY, "a field of the new record"]])
    journal = Journal.open(directory, queue_id, result, encode_batch=lambda _: unknown)
    try:
        journal.append([None], durable=True)
    finally:
        journal.close(seal=False)
    segment = sorted(directory.glob("*.jq"))[-1]
    data = bytearray(segment.read_bytes())
    header = fmt.decode_header(bytes(data[: fmt.HEADER_SIZE]))
    rewritten = msgspec.structs.replace(header, minor=minor)
    data[: fmt.HEADER_SIZE] = fmt.encode_header(rewritten)
    segment.write_bytes(bytes(data))
    return segment


def test_unknown_tag_newer_minor_rejected(queue: Path) -> None:
    """A segment of a newer minor version is refused before any record is read."""
    segment = append_unknown_record(queue, minor=FORMAT_MINOR + 1)
    before = tree_digest(queue)

    with pytest.raises(FormatVersionError) as raised:
        QueueStore.open(queue)
    result = CliRunner().invoke(cli, ["status", "--queue", str(queue)])

    assert raised.value.found == FORMAT_MINOR + 1
    assert raised.value.supported == FORMAT_MINOR
    assert raised.value.path == str(segment)
    assert "upgrade journalq" in str(raised.value)
    assert result.exit_code == ExitCode.UNUSABLE, result.output
    assert "upgrade journalq" in result.output
    assert tree_digest(queue) == before


def test_unknown_tag_current_minor_stops_open(queue: Path) -> None:
    """An unknown tag in a segment of this version stops the open, changing nothing.

    No journalq writes this: a new record type raises the minor version. So
    the frame counts as corruption, named by its segment and offset.
    """
    append_unknown_record(queue, minor=FORMAT_MINOR)
    before = tree_digest(queue)

    with pytest.raises(CorruptionError, match=f"Invalid value {NEW_TAG}") as raised:
        QueueStore.open(queue)
    with pytest.raises(CorruptionError):
        read_state(queue)

    assert raised.value.path.endswith(".jq")
    assert raised.value.offset > 0

    assert tree_digest(queue) == before
    assert not (queue / "quarantine").exists()


def test_unknown_tag_current_minor_is_corruption(queue: Path) -> None:
    """The command line reports an undecodable frame as corruption and cuts it."""
    append_unknown_record(queue, minor=FORMAT_MINOR)

    status = CliRunner().invoke(cli, ["status", "--queue", str(queue)])
    fsck = CliRunner().invoke(cli, ["fsck", "--queue", str(queue)])
    repaired = CliRunner().invoke(
        cli, ["fsck", "--queue", str(queue), "--truncate-at-corruption"]
    )
    after = CliRunner().invoke(cli, ["status", "--queue", str(queue)])

    assert status.exit_code == ExitCode.UNUSABLE, status.output
    assert "--truncate-at-corruption" in status.output
    assert fsck.exit_code == ExitCode.UNUSABLE, fsck.output
    assert repaired.exit_code == ExitCode.OK, repaired.output
    assert after.exit_code == ExitCode.OK, after.output
