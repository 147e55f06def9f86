"""The fold from journal records to queue state."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journalq.records import (
    ActionAdded,
    Canceled,
    Completed,
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
    Returned,
    Started,
)
from journalq.replay import (
    CRASH_LOOP,
    CRASHED,
    QueueState,
    Status,
    decode_state,
    encode_state,
    fold,
    reset_interrupted,
)


def added(action_id: str, key: str | None = None, **fields) -> ActionAdded:
    return ActionAdded(
        action_id,
        Kind.COPY_FILE,
        key or f"key-{action_id}",
        source=f"/src/{action_id}",
        destination=f"/dst/{action_id}",
        **fields,
    )


def recount(state: QueueState) -> dict[Status, int]:
    counts = dict.fromkeys(Status, 0)
    for action in state.actions.values():
        counts[action.status] += 1
    return counts


def test_added_action_waits():
    state = fold([added("a")])
    assert state.actions["a"].status is Status.WAITING
    assert state.status_counts()["waiting"] == 1
    assert state.status_counts()["length"] == 1


def test_duplicate_add_is_ignored():
    state = fold([added("a"), Started("a", 1), added("a")])
    assert len(state.actions) == 1
    assert state.actions["a"].status is Status.INPROGRESS
    assert state.generations["key-a"] == 1


def test_completed_is_terminal():
    records = [
        added("a"),
        Started("a", 1),
        Completed("a", 1, Outcome.COPIED, bytes=10),
        Started("a", 2),
        Failed("a", 2, "OSError", "late", retryable=False),
        Canceled("a"),
    ]
    state = fold(records)
    action = state.actions["a"]
    assert action.status is Status.COMPLETED
    assert action.error is None
    assert state.bytes == 10


def test_retryable_failure_waits_again():
    state = fold(
        [added("a"), Started("a", 1), Failed("a", 1, "TimeoutError", "t", True)]
    )
    action = state.actions["a"]
    assert action.status is Status.WAITING
    assert action.attempts == 1
    assert action.error is not None
    assert action.error.error == "TimeoutError"


def test_permanent_failure_is_terminal():
    state = fold(
        [
            added("a"),
            Started("a", 1),
            Failed("a", 1, "FileNotFoundError", "gone", False),
            Started("a", 2),
        ]
    )
    assert state.actions["a"].status is Status.FAILED
    assert state.counts[Status.FAILED] == 1
    assert state.counts[Status.INPROGRESS] == 0


def test_skipped_counts_as_completed():
    state = fold(
        [added("a"), Started("a", 1), Completed("a", 1, Outcome.SKIPPED, "xxh128")]
    )
    counts = state.status_counts()
    assert counts["completed"] == 1
    assert counts["skipped"] == 1
    assert counts["bytes"] == 0


def skipping_tree() -> list:
    """Return a tree whose listing skipped 3 files; its 1 child is skipped too."""
    parent = ActionAdded(
        "t", Kind.SYNC, "kt", source="/src/tree", destination="/dst/tree"
    )
    child = ActionAdded("c", Kind.COPY_FILE, "kc", parent="t", relpath="c")
    return [
        parent,
        child,
        Expanded("t", 1, "digest", skipped=3, method="size"),
        Started("t", 1),
        Completed("t", 1, Outcome.DONE),
        Started("c", 1),
        Completed("c", 1, Outcome.SKIPPED, "xxh128"),
    ]


def test_listing_skips_counted_apart():
    counts = fold(skipping_tree()).status_counts()

    assert counts["length"] == 2
    statuses = ("waiting", "inprogress", "completed", "failed", "canceled")
    assert sum(counts[status] for status in statuses) == counts["length"]
    assert counts["skipped"] == 4
    assert counts["identical_when_listed"] == 3


def test_redecided_file_leaves_listing_skips():
    redecided = ActionAdded(
        "r", Kind.COPY_FILE, "kr", parent="t", relpath="r", redecided=True
    )

    counts = fold([*skipping_tree(), redecided]).status_counts()

    assert counts["skipped"] == 3
    assert counts["identical_when_listed"] == 2


def test_listing_skips_survive_snapshot():
    state = fold(skipping_tree())

    restored = decode_state(encode_state(state))

    assert "actions" not in restored.__dict__  # the totals came from the head
    assert restored.status_counts() == state.status_counts()


def test_old_snapshot_listing_skips_recounted():
    """A snapshot written before identical_when_listed was kept lacks it."""
    state = fold(skipping_tree())
    payload = encode_state(state)
    old = msgspec.msgpack.decode(payload)
    # identical_when_listed, then part_bytes and part_copies.
    assert old[-3:] == [3, 0, 0]
    old_payload = msgspec.msgpack.encode(old[:-3])

    restored = decode_state(old_payload)

    assert restored.status_counts() == state.status_counts()


def test_cancel_waiting_action():
    state = fold([added("a"), added("b"), Canceled("a")])
    assert state.actions["a"].status is Status.CANCELED
    assert state.actions["b"].status is Status.WAITING


def test_cancel_drops_failed_action():
    state = fold(
        [
            added("a"),
            Started("a", 1),
            Failed("a", 1, "FileNotFoundError", "gone", False),
            Canceled("a", "user"),
        ]
    )
    assert state.actions["a"].status is Status.CANCELED
    assert state.counts[Status.FAILED] == 0
    assert state.counts[Status.CANCELED] == 1


def test_cancel_ends_nothing_after_completion():
    state = fold([added("a"), Completed("a", 1, Outcome.COPIED), Canceled("a", "user")])
    assert state.actions["a"].status is Status.COMPLETED


def test_cancel_of_failed_item_reopens_tree():
    tree = ActionAdded("t", Kind.COPY_TREE, "key-t", source="/src", destination="/dst")
    items = [
        ActionAdded(name, Kind.COPY_FILE, "", parent="t", relpath=name)
        for name in ("x", "y")
    ]
    records = [
        tree,
        *items,
        Expanded("t", 2, ""),
        Completed("x", 1, Outcome.COPIED),
        Failed("y", 1, "FileNotFoundError", "gone", False),
        Failed("t", 1, "ChildrenFailed", "1 of 2 items failed", False),
    ]

    state = fold([*records, Canceled("y", "user")])

    assert state.actions["y"].status is Status.CANCELED
    assert state.actions["t"].status is Status.WAITING
    assert recount(state) == dict(state.counts)


def test_progress_tracks_inprogress_bytes():
    state = fold([added("a"), Started("a", 1), Progress("a", 1, 4096)])
    assert state.actions["a"].bytes == 4096


def test_handed_out_folds_as_started():
    state = fold([added("a"), added("b"), added("c"), Canceled("c")])
    state.apply(HandedOut(("a", "b", "c", "unknown"), 1, 5))
    assert state.actions["a"].status is Status.INPROGRESS
    assert state.actions["a"].attempts == 1
    assert state.actions["b"].status is Status.INPROGRESS
    assert state.actions["c"].status is Status.CANCELED
    assert recount(state) == state.counts


def test_returned_waits_with_attempts_before():
    state = fold([added("a"), added("b"), HandedOut(("a", "b"), 1)])
    state.apply(Completed("b", 1, Outcome.COPIED))
    state.apply(Returned(("a", "b"), 1))
    assert state.actions["a"].status is Status.WAITING
    assert state.actions["a"].attempts == 0
    assert state.actions["b"].status is Status.COMPLETED
    assert recount(state) == state.counts


def test_returned_ignores_later_attempt():
    state = fold([added("a"), HandedOut(("a",), 1), Started("a", 2)])
    state.apply(Returned(("a",), 1))
    assert state.actions["a"].status is Status.INPROGRESS
    assert state.actions["a"].attempts == 2


def test_handed_out_crash_returns_without_count():
    """A crash of the coordinator is not held against a copy process's batch."""
    state = fold(
        [
            *(added("a"), added("b"), added("c"), HandedOut(("a", "b"), 1)),
            *(Failed("c", 1, "OSError", "", retryable=True), HandedOut(("c",), 2)),
        ]
    )
    records = reset_interrupted(state, max_attempts=2)
    assert records == [Returned(("a", "b"), 1), Returned(("c",), 2)]
    state.apply_all(records)
    for action_id, attempts in (("a", 0), ("b", 0), ("c", 1)):
        action = state.actions[action_id]
        assert action.status is Status.WAITING
        assert action.attempts == attempts
        assert action.crashes == 0


@pytest.mark.parametrize(
    "ending",
    [
        Returned(("a",), 1),
        Failed("a", 1, "OSError", "", retryable=True),
        Completed("a", 1, Outcome.COPIED, "xxh128", 1),
    ],
)
def test_handed_out_cleared_when_ended(ending):
    """The flag lasts only while the hand-out does, so compaction keeps equality."""
    state = fold([added("a"), HandedOut(("a",), 1), ending])
    assert state.actions["a"].handed_out is False


def test_handed_out_then_started_counts_crash():
    """An action handed back and then run by the coordinator itself counts."""
    state = fold(
        [added("a"), HandedOut(("a",), 1), Returned(("a",), 1), Started("a", 1)]
    )
    records = reset_interrupted(state, max_attempts=5)
    assert [type(record) for record in records] == [Failed]
    assert records[0].reason == CRASHED
    state.apply_all(records)
    assert state.actions["a"].crashes == 1


def test_reset_interrupted_keeps_attempts():
    state = fold([added("a"), Started("a", 2)])
    failures = reset_interrupted(state, max_attempts=5)
    assert [f.reason for f in failures] == [CRASHED]
    state.apply_all(failures)
    assert state.actions["a"].status is Status.WAITING
    assert state.actions["a"].attempts == 2
    assert state.actions["a"].crashes == 1


def test_reset_interrupted_fails_crash_loop():
    state = fold([added("a")])
    for attempt in range(1, 6):
        state.apply(Started("a", attempt))
        state.apply_all(reset_interrupted(state, max_attempts=5))
    action = state.actions["a"]
    assert action.status is Status.FAILED
    assert action.error is not None
    assert action.error.reason == CRASH_LOOP
    assert recount(state) == state.counts


def test_durable_part_starts_the_crash_count_again():
    """A large copy killed more often than max_attempts, but making progress
    each time, is no crash loop: it waits again, and it can finish."""
    identity = Identity(64, 1_000, None)
    state = fold([added("a"), PartsPlanned("a", 1, 8, "upload", identity)])
    for attempt in range(1, 9):
        state.apply(Started("a", attempt))
        state.apply(PartWritten("a", attempt, Part(attempt, 8 * attempt, 8, "c:0")))
        state.apply_all(reset_interrupted(state, max_attempts=5))
    action = state.actions["a"]
    assert action.status is Status.WAITING
    assert action.crashes == 1
    assert len(action.parts.written) == 8


def large_copy(*written: int) -> list:
    """Return a copy in parts of 8 bytes that journaled the parts ``written``."""
    identity = Identity(64, 1_000, None)
    return [
        added("a"),
        Started("a", 1),
        PartsPlanned("a", 1, 8, "upload", identity),
        *(
            PartWritten("a", 1, Part(number, 8 * number, 8, "c:0"))
            for number in written
        ),
    ]


def test_parts_counted_until_completed():
    state = fold(large_copy(0, 1, 2))
    counted = (state.part_bytes, state.part_copies, state.bytes)

    state.apply(Completed("a", 1, Outcome.COPIED, "xxh128", bytes=64))

    assert counted == (24, 1, 0)
    assert (state.part_bytes, state.part_copies, state.bytes) == (0, 0, 64)


def test_part_written_again_counted_once():
    state = fold([*large_copy(0, 1), PartWritten("a", 2, Part(1, 8, 8, "c:1"))])

    assert state.part_bytes == 16
    assert state.part_copies == 1


def test_parts_of_new_plan_replace_old():
    new_plan = PartsPlanned("a", 2, 8, "upload-2", Identity(72, 2_000, None))

    state = fold([*large_copy(0, 1, 2), new_plan])

    assert state.part_bytes == 0
    assert state.part_copies == 0
    state.apply(PartWritten("a", 2, Part(0, 0, 8, "c:0")))
    assert state.part_bytes == 8
    assert state.part_copies == 1


def test_parts_of_canceled_copy_not_counted():
    stopped = Failed("a", 1, "Interrupted", "m", True)

    state = fold([*large_copy(0, 1), stopped, Canceled("a")])

    assert state.actions["a"].parts is not None
    assert state.part_bytes == 0
    assert state.part_copies == 0


def test_parts_of_failed_copy_counted():
    failed = Failed("a", 1, "OSError", "m", False)

    state = fold([*large_copy(0, 1), failed])

    assert state.actions["a"].status is Status.FAILED
    assert state.part_bytes == 16
    assert state.part_copies == 1


def test_old_snapshot_parts_recounted():
    """A snapshot written before the part totals were kept lacks them."""
    state = fold([*large_copy(0, 1), added("b")])
    old = msgspec.msgpack.decode(encode_state(state))
    assert old[-2:] == [16, 1]

    restored = decode_state(msgspec.msgpack.encode(old[:-2]))

    assert restored.part_bytes == 16
    assert restored.part_copies == 1
    assert "actions" not in decode_state(encode_state(state)).__dict__


def test_stopped_attempt_is_not_a_crash():
    state = fold(
        [added("a"), Started("a", 1), Failed("a", 1, "Interrupted", "m", True)]
    )
    assert state.actions["a"].crashes == 0
    assert reset_interrupted(state, max_attempts=1) == []


def test_child_paths_join_parent_roots():
    parent = ActionAdded(
        "t", Kind.COPY_TREE, "kt", source="/src/tree", destination="/dst/tree"
    )
    child = ActionAdded("c", Kind.COPY_FILE, "kc", parent="t", relpath="a/b c.txt")
    state = fold([parent, child, Expanded("t", 1, "digest")])
    assert state.paths(state.actions["c"]) == (
        "/src/tree/a/b c.txt",
        "/dst/tree/a/b c.txt",
    )
    assert state.actions["t"].children == 1


def test_same_key_counts_generations():
    state = fold(
        [
            added("a1", key="k"),
            Started("a1", 1),
            Completed("a1", 1, Outcome.COPIED),
            added("a2", key="k"),
        ]
    )
    assert state.by_key["k"] == "a2"
    assert state.generations["k"] == 2


def test_first_record_creates_queue():
    created = QueueCreated(
        "id", "q", Endpoint("file:///s"), Endpoint("memory://d"), 4, 1
    )
    state = fold([created, created])
    assert state.created == created


ids = st.sampled_from(["a", "b", "c", "d"])
attempts = st.integers(min_value=1, max_value=6)
records = st.one_of(
    ids.map(added),
    st.builds(Started, ids, attempts),
    st.builds(Progress, ids, attempts, st.integers(0, 1000)),
    st.builds(
        Completed,
        ids,
        attempts,
        st.sampled_from(list(Outcome)),
        bytes=st.integers(0, 99),
    ),
    st.builds(Failed, ids, attempts, st.just("E"), st.just("m"), st.booleans()),
    st.builds(Canceled, ids),
    st.builds(
        PartsPlanned, ids, attempts, st.just(8), st.just("u"), st.just(Identity(64))
    ),
    st.builds(
        PartWritten,
        ids,
        attempts,
        st.builds(Part, st.integers(0, 7), st.just(0), st.integers(1, 8), st.just("c")),
    ),
)


def recount_parts(state: QueueState) -> tuple[int, int]:
    """Return ``part_bytes`` and ``part_copies`` counted from the actions."""
    sizes = [
        sum(part.size for part in action.parts.written.values())
        for action in state.actions.values()
        if action.parts is not None
        and action.parts.written
        and action.status is not Status.CANCELED
    ]
    return sum(sizes), len(sizes)


@settings(max_examples=300)
@given(st.lists(records, max_size=40))
def test_fold_counts_match_statuses(sequence):
    state = fold(sequence)
    assert recount(state) == state.counts
    assert recount_parts(state) == (state.part_bytes, state.part_copies)


@settings(max_examples=300)
@given(st.lists(records, max_size=40), st.integers(0, 40))
def test_snapshot_then_tail_equals_full_fold(sequence, cut):
    full = fold(sequence)
    restored = decode_state(encode_state(fold(sequence[:cut])))
    restored.apply_all(sequence[cut:])
    assert restored.actions == full.actions
    assert restored.counts == full.counts
    assert restored.bytes == full.bytes
    assert restored.part_bytes == full.part_bytes
    assert restored.part_copies == full.part_copies
    assert restored.skipped == full.skipped
    assert restored.by_key == full.by_key
    assert restored.generations == full.generations
