"""Property: any records, in any batches and segment sizes, replay identically."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from journal_helpers import QUEUE_ID, replay

from journalq import records
from journalq.journal import Journal, scan
from journalq.journal import format as fmt

text = st.text(max_size=40)
identifiers = st.text(alphabet="0123456789abcdef", min_size=1, max_size=32)
counts = st.integers(min_value=0, max_value=2**40)

added = st.builds(
    records.ActionAdded,
    action_id=identifiers,
    kind=st.sampled_from(records.Kind),
    key=text,
    source=st.none() | text,
    destination=st.none() | text,
    size=st.none() | counts,
    depends_on=st.lists(identifiers, max_size=3).map(tuple),
    added_ns=counts,
)
started = st.builds(
    records.Started, action_id=identifiers, attempt=st.integers(1, 9), started_ns=counts
)
identity = st.builds(
    records.Identity, size=counts, digest=st.none() | st.just("xxh128:00ff")
)
completed = st.builds(
    records.Completed,
    action_id=identifiers,
    attempt=st.integers(1, 9),
    outcome=st.sampled_from(records.Outcome),
    bytes=counts,
    source=st.none() | identity,
    finished_ns=counts,
)
batches = st.lists(st.lists(added | started | completed, max_size=12), max_size=25)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    sessions=st.lists(st.tuples(batches, st.booleans()), min_size=1, max_size=3),
    segment_bytes=st.integers(min_value=fmt.HEADER_SIZE + 1, max_value=4096),
)
def test_records_replay_identically(
    sessions: list[tuple[list[list[records.Record]], bool]],
    segment_bytes: int,
) -> None:
    """Each session opens the journal, appends its batches and closes it.

    Nothing is synced, to keep each example fast: the framing and rolling
    logic is the same with syncs, which the other tests cover.
    """
    written: list[records.Record] = []
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary) / "journal"
        for session, durable in sessions:
            journal = Journal.open(
                directory,
                QUEUE_ID,
                scan(directory, QUEUE_ID),
                encode_batch=records.encode_batch,
                segment_bytes=segment_bytes,
                sync="none",
            )
            with journal:
                for batch in session:
                    last = journal.append(batch, durable=durable)
                    written.extend(batch)
                    assert last == len(written)

        result = scan(directory, QUEUE_ID)
        assert result.torn_tail is None
        assert result.next_lsn == len(written) + 1
        assert replay(result) == written
