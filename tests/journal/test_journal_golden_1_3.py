"""Queues written in format 1.3 still decode to the same state.

The golden files under ``golden/format-1.3/`` were written once by
``golden_queue.py``, which documents their history: the 1.2 history, then
two runs that hand tree files to a copy process. Nothing here rewrites
them, and each test reads a copy, because opening a queue for writing
changes its files. These tests check what format minor 3 added: the
``HandedOut`` and ``Returned`` records, ``Expanded.directory_mtimes``,
and the ``reopened_by_cancel``, ``directory_mtimes`` and ``handed_out``
fields of a snapshot's action state.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner
from golden_queue import (
    ALBUM,
    ALBUM_KEY,
    BIG,
    COVER,
    DOCS,
    FIFTH_SESSION,
    FIRST_SESSION,
    FOURTH_SESSION,
    HANDED,
    HANDED_OFF,
    LATER,
    LISTING,
    LISTING_NAME,
    NOTES,
    PART_SIZE,
    RAW_A,
    RAW_B,
    RAW_C,
    README,
    SECOND_SESSION,
    SECRET,
    SYNC,
    THIRD_SESSION,
    TREE,
    TREE_X,
    TREE_Z,
    at,
    created,
    write_golden,
)
from test_journal_golden import ACTIONS as ACTIONS_1_2
from test_journal_golden import GOLDEN as GOLDEN_1_2
from test_journal_golden import facts, journal_records, tree_digest

from journalq import inbox, snapshot
from journalq.cli import cli
from journalq.cli.exits import ExitCode
from journalq.failures import tree_endings
from journalq.journal import scan
from journalq.records import (
    Canceled,
    Completed,
    Failed,
    HandedOut,
    Kind,
    Outcome,
    Returned,
    SnapshotTaken,
    decode_batch,
)
from journalq.replay import (
    CRASHED,
    CompactAction,
    Status,
    decode_state,
    reset_interrupted,
)
from journalq.store import QueueStore, read_format, read_state

GOLDEN = Path(__file__).parent / "golden" / "format-1.3"
VARIANTS = ("plain", "compacted")
#: The queue ids the generator drew, as each FORMAT file has them.
QUEUE_IDS = {
    "plain": "cd1df73864d142bea80d11e2b4536b5a",
    "compacted": "d438c5ff5e134b01be4871241560e321",
}
#: The record the snapshot of ``compacted/`` left in its journal. The
#: snapshot follows the fifth session's hand-out of RAW_B and RAW_C.
SNAPSHOT_TAKEN = SnapshotTaken(73, "snap-0000000000000049.jqs", 1528185349)
INBOX_REQUEST = "01796472407580839832-0000027238-0dd40e3f.req"
#: The last sequence number of each queue's journal.
LAST_LSN = {"plain": 74, "compacted": 75}
#: The first sequence number of each session's segment in ``plain/``.
SEGMENT_STARTS = [1, 23, 40, 48, 72]
#: The mtimes of the album's source directories that its expansion journaled.
ALBUM_MTIMES = {"": at(-20), "raw": at(-21), "raw/old": at(-22)}


def _album(status: Status, attempts: int, size: int, relpath: str) -> tuple:
    return (
        Kind.COPY_FILE,
        status,
        attempts,
        size,
        f"/data/album/{relpath}",
        f"/backup/album/{relpath}",
    )


#: Every action in journal order, as :func:`facts` reads it: the actions
#: of the 1.2 history, then those of the fourth session, then the hand-off.
ACTIONS = {
    **{key: value for key, value in ACTIONS_1_2.items() if key != HANDED},
    ALBUM: (Kind.COPY_TREE, Status.WAITING, 0, 0, "/data/album", "/backup/album"),
    COVER: _album(Status.COMPLETED, 1, 100, "cover.jpg"),
    RAW_A: _album(Status.COMPLETED, 2, 200, "raw/a.cr2"),
    RAW_B: _album(Status.COMPLETED, 1, 300, "raw/b.cr2"),
    # Handed back unstarted in the fourth session, so no attempt is used.
    NOTES: _album(Status.WAITING, 0, 0, "notes.txt"),
    # Handed out in the fifth session, which was killed.
    RAW_C: _album(Status.INPROGRESS, 1, 0, "raw/c.cr2"),
    # Failed at its first end, reopened by the cancel of SECRET.
    DOCS: (Kind.COPY_TREE, Status.WAITING, 1, 0, "/data/docs", "/backup/docs"),
    README: (
        Kind.COPY_FILE,
        Status.COMPLETED,
        1,
        12,
        "/data/docs/readme.md",
        "/backup/docs/readme.md",
    ),
    SECRET: (
        Kind.COPY_FILE,
        Status.CANCELED,
        1,
        0,
        "/data/docs/secret.pdf",
        "/backup/docs/secret.pdf",
    ),
    HANDED: ACTIONS_1_2[HANDED],
}
#: The actions of ``compacted/``: the same but the hand-off, which only
#: ``plain/`` has.
COMPACTED_ACTIONS = {key: value for key, value in ACTIONS.items() if key != HANDED}
#: The tree children that the snapshot of ``compacted/`` packed: those
#: that ended without a failure before it.
PACKED = {TREE_X, TREE_Z, COVER, README}


def expected_actions(variant: str) -> dict[str, tuple]:
    return ACTIONS if variant == "plain" else COMPACTED_ACTIONS


@pytest.fixture(params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def queue(variant: str, tmp_path: Path) -> Path:
    """A copy of the golden queue ``variant``."""
    return Path(shutil.copytree(GOLDEN / variant, tmp_path / variant))


def raw_records(queue: Path) -> list[list]:
    """Decode every record of the queue's journal as a plain MessagePack array."""
    queue_id = bytes.fromhex(read_format(queue).queue_id)
    result = scan(queue / "journal", queue_id)
    return [
        record
        for frame in result.frames
        for record in msgspec.msgpack.decode(frame.payload)
    ]


# The files ------------------------------------------------------------------


def test_golden_format_file(variant: str, queue: Path) -> None:
    header = read_format(queue)

    assert header is not None
    assert header.magic == "journalq-queue"
    assert header.major == 1
    assert header.minor == 3
    assert header.queue_id == QUEUE_IDS[variant]


def test_golden_plain_journal_records(tmp_path: Path) -> None:
    queue = Path(shutil.copytree(GOLDEN / "plain", tmp_path / "plain"))
    history = [
        created(QUEUE_IDS["plain"]),
        *FIRST_SESSION,
        *SECOND_SESSION,
        *THIRD_SESSION,
        *FOURTH_SESSION,
        *FIFTH_SESSION,
    ]

    found = journal_records(queue)

    assert [lsn for lsn, _ in found] == list(range(1, 75))
    assert [record for _, record in found] == history


def test_golden_plain_segments(tmp_path: Path) -> None:
    """One segment per session, each sealed by the close that ended it."""
    queue = Path(shutil.copytree(GOLDEN / "plain", tmp_path / "plain"))
    result = scan(queue / "journal", bytes.fromhex(QUEUE_IDS["plain"]))

    assert [segment.first_lsn for segment in result.segments] == SEGMENT_STARTS
    assert all(segment.sealed for segment in result.segments)
    assert result.next_lsn == 75


def test_golden_compacted_journal_records(tmp_path: Path) -> None:
    """Only the fifth session's segment is left, with the snapshot record in it."""
    queue = Path(shutil.copytree(GOLDEN / "compacted", tmp_path / "compacted"))
    history = [*FIFTH_SESSION[:2], SNAPSHOT_TAKEN, *FIFTH_SESSION[2:]]

    # The segments before the fifth session are gone.
    found = journal_records(queue, after_lsn=SEGMENT_STARTS[-1] - 1)

    assert [lsn for lsn, _ in found] == list(range(72, 76))
    assert [record for _, record in found] == history


def test_golden_new_records_on_disk(tmp_path: Path) -> None:
    """The tags and field positions of what format minor 3 added.

    Decoded without the record classes, so reordering a field of one of
    them fails here even where the fold happens to read the same.
    """
    queue = Path(shutil.copytree(GOLDEN / "plain", tmp_path / "plain"))
    records = raw_records(queue)
    first_out = [COVER, RAW_A, RAW_B, NOTES, RAW_C]

    handed_out = [record for record in records if record[0] == 14]
    returned = [record for record in records if record[0] == 15]
    album = [record for record in records if record[0] == 3 and record[1] == ALBUM]

    assert handed_out == [
        [14, first_out, 1, at(61)],
        [14, [README, SECRET], 1, at(66)],
        [14, [RAW_B, RAW_C], 1, at(71)],
    ]
    assert returned == [[15, [RAW_A, RAW_B, NOTES, RAW_C], 1], [15, [SECRET], 1]]
    assert album == [
        [3, ALBUM, 5, "f2cdcdece4c0ad22429cd908dfd3ba93", 1, "size", ALBUM_MTIMES]
    ]


def test_golden_snapshot_file(tmp_path: Path) -> None:
    """The snapshot encodes the fields of the action state added in 1.3."""
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
    assert list(state.actions) == list(COMPACTED_ACTIONS)
    packed = {
        action_id
        for action_id, action in state.actions.items()
        if isinstance(action, CompactAction)
    }
    assert packed == PACKED
    # RAW_B completes only after the snapshot.
    assert state.actions[RAW_B].status is Status.INPROGRESS
    assert state.actions[RAW_B].handed_out
    assert state.actions[RAW_C].status is Status.INPROGRESS
    assert state.actions[RAW_C].handed_out
    assert not state.actions[BIG].handed_out
    assert state.actions[DOCS].reopened_by_cancel
    assert not state.actions[TREE].reopened_by_cancel
    assert state.actions[ALBUM].directory_mtimes == ALBUM_MTIMES
    assert state.actions[DOCS].directory_mtimes == {"": at(-10)}
    assert state.actions[TREE].directory_mtimes is None
    assert state.counts[Status.INPROGRESS] == 4


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
    waiting = 7 if variant == "plain" else 6

    assert state.status_counts() == {
        "length": len(expected_actions(variant)),
        "waiting": waiting,
        # SYNC and BIG from the 1.2 history, and RAW_C, handed out.
        "inprogress": 3,
        "completed": 10,
        "failed": 1,
        "canceled": 2,
        # One file of each of TREE and ALBUM and three of SYNC were
        # identical when listed.
        "skipped": 5,
        "bytes": 36 + 100 + 200 + 300 + 12,
        "identical_when_listed": 5,
        "part_bytes": 2 * PART_SIZE,
        "part_copies": 1,
        "cancels_requested": 0,
    }
    assert state.created == created(QUEUE_IDS[variant])
    assert state.last_lsn == LAST_LSN[variant]


def test_golden_state_snapshot_record(variant: str, queue: Path) -> None:
    state = read_state(queue)
    expected = SNAPSHOT_TAKEN if variant == "compacted" else None

    assert state.snapshot == expected


def test_golden_state_handed_out(queue: Path) -> None:
    """Only the file still out at a copy process reads as handed out."""
    actions = read_state(queue).actions

    in_progress = {
        action_id
        for action_id, action in actions.items()
        if action.status is Status.INPROGRESS
    }
    handed_out = {
        action_id for action_id in in_progress if actions[action_id].handed_out
    }

    assert in_progress == {SYNC, BIG, RAW_C}
    assert handed_out == {RAW_C}
    # A started record after the return clears the mark.
    assert not actions[RAW_A].handed_out
    assert actions[RAW_C].attempts == 1
    assert actions[RAW_C].error is None
    assert actions[RAW_C].crashes == 0


def test_golden_state_returned(queue: Path) -> None:
    """Files handed back unstarted wait, or ran again, with no attempt used."""
    actions = read_state(queue).actions
    retried = actions[RAW_A].error

    assert actions[NOTES].status is Status.WAITING
    assert actions[NOTES].attempts == 0
    assert actions[NOTES].error is None
    assert retried is not None
    assert retried.attempt == 1
    assert retried.retryable
    assert actions[RAW_A].completed == Completed(
        RAW_A, 2, Outcome.COPIED, "size", 200, finished_ns=at(65)
    )
    assert actions[RAW_B].completed is not None
    assert actions[RAW_B].completed.attempt == 1


def test_golden_state_reopened_by_cancel(queue: Path) -> None:
    actions = read_state(queue).actions
    failure = actions[DOCS].error
    canceled = actions[SECRET].error

    assert actions[DOCS].reopened_by_cancel
    assert failure is not None
    assert failure.error == "ChildrenFailed"
    assert not failure.retryable
    assert actions[SECRET].status is Status.CANCELED
    assert canceled is not None
    assert canceled.error == "PermissionError"
    assert not actions[ALBUM].reopened_by_cancel


def test_golden_state_directory_mtimes(queue: Path) -> None:
    """An expanded record's mtimes reach its tree, and an empty map leaves None."""
    actions = read_state(queue).actions

    assert actions[ALBUM].directory_mtimes == ALBUM_MTIMES
    assert actions[ALBUM].children == 5
    assert actions[ALBUM].skipped == 1
    assert actions[ALBUM].skip_method == "size"
    assert actions[DOCS].directory_mtimes == {"": at(-10)}
    assert actions[TREE].directory_mtimes is None
    assert actions[SYNC].directory_mtimes is None


def test_golden_state_keys(queue: Path) -> None:
    state = read_state(queue)

    assert state.by_key[ALBUM_KEY] == ALBUM
    assert state.generations[ALBUM_KEY] == 1


# Opening and writing on ------------------------------------------------------


def test_golden_queue_opens_and_recovers(variant: str, queue: Path) -> None:
    """Opening for a run returns the handed-out file and fails the others.

    The test journals what :func:`reset_interrupted` returns, as opening a
    queue for a run does. A crash counts against SYNC and BIG, which the
    killed process ran itself, but not against RAW_C, which was out at its
    copy process. So RAW_C waits with the attempt count it had before the
    hand-out.
    """
    store = QueueStore.open(queue)
    try:
        opened = facts(store.state)
        resets = reset_interrupted(store.state, store.state.created.max_attempts)
        store.append(resets, durable=True)
        ended = tree_endings(store.state, [SECRET], queue)
        store.append(ended, durable=True)
        canceled = store.cancel([NOTES, LATER], by="test")
    finally:
        store.close()
    state = read_state(queue)
    actions = state.actions
    records = [record for _, record in journal_records(queue, SEGMENT_STARTS[-1])]

    # Opening journaled the hand-off waiting in the inbox of plain/.
    assert opened == expected_actions(variant)
    assert [type(record) for record in resets] == [Failed, Failed, Returned]
    assert [record.action_id for record in resets[:2]] == [SYNC, BIG]
    assert all(record.reason == CRASHED for record in resets[:2])
    assert resets[2] == Returned((RAW_C,), 1)
    assert actions[RAW_C].status is Status.WAITING
    assert actions[RAW_C].attempts == 0
    assert actions[RAW_C].crashes == 0
    assert actions[RAW_C].error is None
    assert actions[BIG].status is Status.WAITING
    assert actions[BIG].crashes == 1
    assert actions[BIG].attempts == 1
    # The reopened tree ends without an attempt, because canceling ran nothing.
    assert [type(record) for record in ended] == [Completed]
    assert ended[0].action_id == DOCS
    assert ended[0].attempt == 1
    assert actions[DOCS].status is Status.COMPLETED
    assert actions[DOCS].attempts == 1
    assert canceled == [NOTES, LATER]
    assert records[-2:] == [Canceled(NOTES, "test"), Canceled(LATER, "test")]
    assert not (queue / "inbox" / INBOX_REQUEST).exists()


def test_golden_queue_hands_out_again(queue: Path) -> None:
    """A returned file can be handed out again and completed."""
    store = QueueStore.open(queue)
    try:
        store.append(reset_interrupted(store.state, 5), durable=True)
        handed = store.hand_out([RAW_C, NOTES, RAW_B], 1)
        store.append(
            [Completed(RAW_C, 1, Outcome.COPIED, "size", 500, finished_ns=at(80))],
            durable=True,
        )
        store.hand_back([NOTES], 1)
        store.release([RAW_C, NOTES])
    finally:
        store.close()
    actions = read_state(queue).actions
    records = [record for _, record in journal_records(queue, SEGMENT_STARTS[-1])]
    handed_out = [record for record in records if isinstance(record, HandedOut)]

    # RAW_B completed before: only waiting files go out.
    assert handed == {RAW_C, NOTES}
    assert handed_out[-1].action_ids == (RAW_C, NOTES)
    assert actions[RAW_C].status is Status.COMPLETED
    assert actions[RAW_C].attempts == 1
    assert actions[NOTES].status is Status.WAITING
    assert actions[NOTES].attempts == 0


@pytest.mark.parametrize("command", ["status", "fsck", "actions"])
def test_golden_queue_cli(command: str, queue: Path) -> None:
    before = tree_digest(queue)

    result = CliRunner().invoke(cli, [command, "--queue", str(queue)])

    assert result.exit_code == ExitCode.OK, result.output
    assert tree_digest(queue) == before


# The script that wrote them ------------------------------------------------


@pytest.mark.parametrize(
    ("version", "golden", "expected"),
    [("1.2", GOLDEN_1_2, ACTIONS_1_2), ("1.3", GOLDEN, ACTIONS)],
)
def test_golden_history_written_again(
    version: str, golden: Path, expected: dict[str, tuple], tmp_path: Path
) -> None:
    """The script writes each history again, in this format, to the same state."""
    write_golden(tmp_path, version)

    for variant in VARIANTS:
        rewritten = read_state(tmp_path / variant)
        golden_state = read_state(golden / variant)

        assert facts(rewritten) == facts(golden_state)
        assert rewritten.status_counts() == golden_state.status_counts()
    assert list(facts(read_state(tmp_path / "plain"))) == list(expected)
