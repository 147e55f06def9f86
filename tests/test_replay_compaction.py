"""Compaction of terminal tree children: the state reads the same after it."""

from __future__ import annotations

import threading

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journalq.records import (
    ActionAdded,
    Canceled,
    Completed,
    Digested,
    Expanded,
    Failed,
    HandedOut,
    Identity,
    Kind,
    Outcome,
    Returned,
    Service,
    Started,
)
from journalq.replay import (
    ActionState,
    CompactAction,
    QueueState,
    decode_state,
    encode_state,
    fold,
)

# Trees t1 and t2 share their roots, t3's source root is inside theirs.
TREES = {
    "t1": ("/src", "/dst"),
    "t2": ("/src", "/dst"),
    "t3": ("/src/sub", "/other/"),
}
RELPATHS = ["a.bin", "sub/b.bin", "sub/c/d.bin"]


def tree(tree_id: str) -> ActionAdded:
    source, destination = TREES[tree_id]
    return ActionAdded(
        tree_id,
        Kind.COPY_TREE,
        f"key-{tree_id}",
        source=source,
        destination=destination,
    )


def child(
    tree_id: str,
    relpath: str,
    kind: Kind = Kind.COPY_FILE,
    *,
    in_the_way: bool = False,
    redecided: bool = False,
    listed: Identity | None = None,
) -> ActionAdded:
    return ActionAdded(
        f"{tree_id}:{relpath}",
        kind,
        "",
        parent=tree_id,
        relpath=relpath,
        size=len(relpath),
        compare="size",
        in_the_way=in_the_way,
        redecided=redecided,
        listed=listed,
    )


def every_path() -> list[tuple[Service, str]]:
    keys = []
    for source, destination in TREES.values():
        for relpath in RELPATHS:
            joined = destination.rstrip("/") + "/" + relpath
            keys += [(Service.SOURCE, f"{source}/{relpath}")]
            keys += [(Service.DESTINATION, joined)]
    keys += [(Service.SOURCE, "/elsewhere/file")]
    return keys


child_ids = st.sampled_from([f"{t}:{r}" for t in TREES for r in RELPATHS])
batches = st.lists(child_ids, min_size=1, max_size=3, unique=True).map(tuple)
digest_keys = st.sampled_from(every_path())
records = st.one_of(
    st.sampled_from(list(TREES)).map(tree),
    st.builds(
        child,
        st.sampled_from(list(TREES)),
        st.sampled_from(RELPATHS),
        st.sampled_from([Kind.COPY_FILE, Kind.DELETE]),
        in_the_way=st.booleans(),
        redecided=st.booleans(),
        listed=st.sampled_from([None, Identity(5, 7), Identity(5, None, etag='"e"')]),
    ),
    st.builds(
        Expanded,
        st.sampled_from(list(TREES)),
        st.integers(0, 3),
        st.just(""),
        st.integers(0, 3),
        st.sampled_from(["", "size", "xxh128"]),
    ),
    st.builds(Started, child_ids, st.integers(1, 3)),
    st.builds(
        Completed,
        child_ids,
        st.integers(1, 3),
        st.sampled_from([Outcome.COPIED, Outcome.SKIPPED]),
        st.just("xxh128"),
        st.integers(0, 9),
        st.just(Identity(9, 5, "xxh128:00")),
        st.just(Identity(9, 5, "xxh128:00")),
        finished_ns=st.integers(0, 9),
    ),
    st.builds(
        Failed, child_ids, st.integers(1, 3), st.just("E"), st.just("m"), st.booleans()
    ),
    st.builds(Canceled, child_ids),
    st.builds(HandedOut, batches, st.integers(1, 3)),
    st.builds(Returned, batches, st.integers(1, 3)),
    digest_keys.flatmap(
        lambda key: st.builds(
            Digested,
            st.just(key[0]),
            st.just(key[1]),
            st.integers(0, 2),
            st.integers(0, 2),
            st.sampled_from(["xxh128:aa", "xxh128:bb"]),
            st.integers(0, 2),
        )
    ),
)


def assert_same_state(restored: QueueState, full: QueueState) -> None:
    assert restored.actions == full.actions
    assert list(restored.actions) == list(full.actions)
    assert restored.counts == full.counts
    assert restored.bytes == full.bytes
    assert restored.skipped == full.skipped
    assert restored.by_key == full.by_key
    assert restored.generations == full.generations
    for tree_id in TREES:
        if tree_id in full.actions:
            method = full.actions[tree_id].skip_method
            assert restored.actions[tree_id].skip_method == method
    finders = {
        state: {service: state.digests.finder(service) for service in Service}
        for state in (restored, full)
    }
    for key in every_path():
        assert restored.digests.get(key) == full.digests.get(key), key
        for state, by_service in finders.items():
            # The lookup that planned skips use finds what get() finds.
            assert by_service[key[0]](key[1]) == state.digests.get(key), key


@settings(max_examples=400)
@given(st.lists(records, max_size=60), st.integers(0, 60), st.integers(0, 60))
def test_compaction_keeps_fold(sequence, first, second):
    full = fold(sequence)
    first, second = sorted((first, second))
    state = fold(sequence[:first])
    state.compact()
    state.apply_all(sequence[first:second])
    state.compact()
    state.apply_all(sequence[second:])
    assert_same_state(state, full)


@settings(max_examples=400)
@given(st.lists(records, max_size=60), st.integers(0, 60), st.integers(0, 60))
def test_compacted_snapshot_then_tail(sequence, first, second):
    full = fold(sequence)
    first, second = sorted((first, second))
    state = fold(sequence[:first])
    state.compact()
    restored = decode_state(encode_state(state))
    restored.apply_all(sequence[first:second])
    restored.compact()
    restored = decode_state(encode_state(restored))
    restored.apply_all(sequence[second:])
    assert_same_state(restored, full)


def finished_tree() -> list:
    records = [tree("t1"), child("t1", "a.bin"), child("t1", "d", Kind.MKDIR)]
    records += [
        Started("t1:a.bin", 1),
        Digested(Service.SOURCE, "/src/a.bin", 5, 7, "xxh128:aa", 8),
        Digested(Service.DESTINATION, "/dst/a.bin", 5, 7, "xxh128:aa", 8),
        Completed(
            "t1:a.bin",
            1,
            Outcome.COPIED,
            "xxh128",
            5,
            Identity(5, 7, "xxh128:aa"),
            Identity(5, 7, "xxh128:aa"),
            finished_ns=9,
        ),
        Canceled("t1:d"),
    ]
    return records


def test_compact_packs_terminal_children():
    state = fold(finished_tree())
    assert state.compact() == 2
    action = state.actions["t1:a.bin"]
    assert isinstance(action, CompactAction)
    assert isinstance(state.actions["t1"], ActionState)
    assert state.digests.entries() == []
    assert state.digests.compacted == 2


def test_compacted_child_reads_the_same():
    full = fold(finished_tree())
    state = fold(finished_tree())
    state.compact()
    action = state.actions["t1:a.bin"]
    assert action == full.actions["t1:a.bin"]
    assert not action != full.actions["t1:a.bin"]  # noqa: SIM202
    assert action != state.actions["t1:d"]
    assert action.bytes == 5
    assert action.terminal
    assert action.error is None
    assert action.added == full.actions["t1:a.bin"].added
    assert action.completed == full.actions["t1:a.bin"].completed
    assert action.kind is Kind.COPY_FILE
    assert state.actions["t1:d"].kind is Kind.MKDIR
    assert state.actions["t1:d"].completed is None
    assert state.paths(action) == ("/src/a.bin", "/dst/a.bin")


def test_handed_out_child_compacts_equal():
    """A child that completed in a copy process compacts like any other.

    Whether an action is out at a copy process matters only while it is in
    progress, so a finished one compares equal to its compacted form.
    """
    records = [tree("t1"), child("t1", "a.bin"), child("t1", "d", Kind.MKDIR)]
    records += [
        HandedOut(("t1:a.bin", "t1:d"), 1),
        Returned(("t1:d",), 1),
        Completed("t1:a.bin", 1, Outcome.COPIED, "xxh128", 5, finished_ns=9),
        Canceled("t1:d"),
    ]
    full = fold(records)
    state = fold(records)
    assert state.compact() == 2
    assert_same_state(state, full)
    assert_same_state(decode_state(encode_state(state)), full)


def test_completed_drops_identities():
    state = fold(finished_tree())
    completed = state.actions["t1:a.bin"].completed
    assert completed is not None
    assert completed.source is None
    assert completed.destination is None
    assert completed.bytes == 5


def test_compacted_digest_lookup():
    state = fold(finished_tree())
    state.compact()
    found = state.digests.get((Service.DESTINATION, "/dst/a.bin"))
    assert found == Digested(Service.DESTINATION, "/dst/a.bin", 5, 7, "xxh128:aa", 8)
    assert (Service.SOURCE, "/src/a.bin") in state.digests
    assert (Service.SOURCE, "/src/missing.bin") not in state.digests
    assert state.digests.get((Service.SOURCE, "/elsewhere")) is None
    find = state.digests.finder(Service.DESTINATION)
    assert find("/dst/a.bin") == found
    assert state.digests.finder(Service.SOURCE)("/src/missing.bin") is None


def test_finder_made_before_compaction_finds_moved_entries():
    """A finder looks in the compacted entries when it needs them, not when made."""
    state = fold(finished_tree())
    find = state.digests.finder(Service.SOURCE)
    assert find("/src/a.bin") is not None
    state.compact()
    assert state.digests.compacted
    assert find("/src/a.bin") == state.digests.get((Service.SOURCE, "/src/a.bin"))
    assert find("/src/a.bin") is not None


def test_newer_entry_wins_after_compaction():
    state = fold(finished_tree())
    state.compact()
    newer = Digested(Service.SOURCE, "/src/a.bin", 6, 7, "xxh128:bb", 9)
    state.apply(newer)
    assert state.digests[(Service.SOURCE, "/src/a.bin")] == newer


def test_newer_tree_shadows_compacted_child():
    """A later tree over the same roots takes the next entry for a path."""
    state = fold(finished_tree())
    state.compact()
    newer = Digested(Service.SOURCE, "/src/a.bin", 6, 7, "xxh128:bb", 9)
    state.apply_all([tree("t2"), child("t2", "a.bin"), newer])
    state.apply(Completed("t2:a.bin", 1, Outcome.COPIED, "xxh128", 6))
    state.compact()
    assert isinstance(state.actions["t2:a.bin"], CompactAction)
    assert state.digests[(Service.SOURCE, "/src/a.bin")] == newer
    restored = decode_state(encode_state(state))
    assert restored.digests[(Service.SOURCE, "/src/a.bin")] == newer


def test_failed_child_is_not_compacted():
    records = [tree("t1"), child("t1", "a.bin"), Started("t1:a.bin", 1)]
    records.append(Failed("t1:a.bin", 1, "E", "m", retryable=False))
    state = fold(records)
    assert state.compact() == 0
    assert state.actions["t1:a.bin"].error is not None


class _OldActionState(msgspec.Struct, array_like=True):
    """The nine fields snapshots held before compaction."""

    added: ActionAdded
    status: str
    attempts: int = 0
    bytes: int = 0
    completed: Completed | None = None
    error: Failed | None = None
    children: int | None = None
    crashes: int = 0
    skipped: int = 0


def test_decodes_snapshot_without_compaction_fields():
    full = fold(finished_tree())
    actions = [
        _OldActionState(
            action.added,
            str(action.status),
            action.attempts,
            action.bytes,
            action.completed,
            action.error,
            action.children,
            action.crashes,
            action.skipped,
        )
        for action in full.actions.values()
    ]
    digests = full.digests.entries()
    payload = msgspec.msgpack.encode([None, 7, actions, digests, None])
    restored = decode_state(payload)
    assert_same_state(restored, full)
    assert restored.last_lsn == 7


def test_older_tree_leaves_shadowed_entry():
    """An entry under two trees stays where the newest tree finds it."""
    key = (Service.SOURCE, "/src/a.bin")
    old = Digested(Service.SOURCE, "/src/a.bin", 5, 7, "xxh128:aa", 8)
    new = Digested(Service.SOURCE, "/src/a.bin", 6, 7, "xxh128:bb", 9)
    state = fold([tree("t1"), tree("t2"), child("t1", "a.bin"), child("t2", "a.bin")])
    state.apply_all([old, Completed("t2:a.bin", 1, Outcome.COPIED, "xxh128")])
    state.compact()
    state.apply_all([new, Completed("t1:a.bin", 1, Outcome.COPIED, "xxh128")])
    state.compact()
    assert isinstance(state.actions["t1:a.bin"], CompactAction)
    assert state.digests[key] == new
    assert decode_state(encode_state(state)).digests[key] == new


def test_decoded_state_defers_actions():
    full = fold(finished_tree())
    full.compact()
    restored = decode_state(encode_state(full))
    assert "actions" not in vars(restored)
    assert restored.status_counts() == full.status_counts()
    assert "actions" not in vars(restored)
    assert restored.actions == full.actions
    assert restored.by_key == full.by_key
    assert restored.digests[(Service.SOURCE, "/src/a.bin")].digest == "xxh128:aa"


def test_deferred_actions_load_once_across_threads():
    restored = decode_state(encode_state(fold(finished_tree())))
    seen: list[object] = []
    barrier = threading.Barrier(4)

    def read() -> None:
        barrier.wait()
        seen.append(restored.actions)
        seen.append(restored.generations)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(value) for value in seen}) == 2
    assert len(restored.actions) == 3


def test_missing_attribute_still_raises():
    state = decode_state(encode_state(fold(finished_tree())))
    with pytest.raises(AttributeError):
        _ = state.no_such_attribute
