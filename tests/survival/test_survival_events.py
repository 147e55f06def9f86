"""The events of a run that meets faults, from the library and from ``--json``.

The source is ``faultymemory://`` (see faulty.py), whose first read of each
file fails with a reset connection, a mock because no real filesystem fails
a chosen read once. The destination is a local folder. The queue has a tree
of two files and one that vanishes after the listing, and a single file
already identical at the destination, so one run emits every event type:
``started``, ``retried``, ``progress``, ``completed``, ``skipped`` and
``failed``. The ``--json`` stream of the same run is checked against the
tables of docs/json.md.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from faulty import MEMORY_PROTOCOL
from fsspec.implementations.memory import MemoryFileSystem

from journalq import StorageQueue
from journalq.cli import cli
from journalq.cli.exits import ExitCode
from journalq.events import EventType

JSON_DOC = Path(__file__).resolve().parents[2] / "docs" / "json.md"
#: Source options under which the first read of each file fails with a reset.
READ_FAILS_ONCE = {"faults": "reset", "fault_operations": "cat_file", "fault_first": 1}
BIG = b"a" * 300_000
SMALL = b"bravo\n"
SAME = b"same\n"
VANISHED = b"gone after the listing"


@pytest.fixture
def paths(tmp_path: Path, memory: MemoryFileSystem) -> dict[str, str]:
    """Write the source files and the identical destination file."""
    memory.pipe_file("/src/tree/big.bin", BIG)
    memory.pipe_file("/src/tree/small.txt", SMALL)
    memory.pipe_file("/src/tree/vanished.txt", VANISHED)
    memory.pipe_file("/src/same.txt", SAME)
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "same.txt").write_bytes(SAME)
    return {
        "queue": str(tmp_path / "queue"),
        "tree": str(destination / "tree"),
        "same": str(destination / "same.txt"),
    }


def add_actions(memory: MemoryFileSystem, paths: dict[str, str]) -> None:
    """Create the queue, add the tree and the file, then remove one source."""
    with StorageQueue(
        f"{MEMORY_PROTOCOL}://",
        "file://",
        name=paths["queue"],
        source_options=READ_FAILS_ONCE,
    ) as queue:
        queue.copy_tree("/src/tree", paths["tree"])
        queue.copy_file("/src/same.txt", paths["same"])
    memory.rm_file("/src/tree/vanished.txt")


def by_source(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group event dicts by source path, in the order they came."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        grouped[event["source"]].append(event)
    return grouped


def steps(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Return (event, attempt) of each event, without repeated progress."""
    found: list[tuple[str, int]] = []
    for event in events:
        step = (event["event"], event["attempt"])
        if step[0] == "progress" and found and found[-1] == step:
            continue
        found.append(step)
    return found


def check_copied(events: list[dict[str, Any]], data: bytes) -> None:
    """Check a file whose first read failed, then copied on attempt 2."""
    assert steps(events) == [
        ("started", 1),
        ("retried", 1),
        ("started", 2),
        ("progress", 2),
        ("completed", 2),
    ]
    retried = events[1]
    assert retried["error"] == (
        f"[Errno 104] injected reset fault in cat_file of {events[0]['source']}"
    )
    progress = [event["bytes"] for event in events if event["event"] == "progress"]
    assert progress == sorted(progress)
    assert progress[-1] == len(data)
    completed = events[-1]
    assert completed["bytes"] == len(data)
    assert completed["method"] == "xxh128"
    assert completed["error"] is None
    for event in events:
        assert event["total"] == len(data)
        assert event["kind"] == "copy_file"
        assert event["id"] == events[0]["id"]


def check_events(events: list[dict[str, Any]], paths: dict[str, str]) -> None:
    """Check every event of the run, action by action."""
    grouped = by_source(events)

    assert set(grouped) == {
        "/src/tree/big.bin",
        "/src/tree/small.txt",
        "/src/tree/vanished.txt",
        "/src/same.txt",
    }
    check_copied(grouped["/src/tree/big.bin"], BIG)
    check_copied(grouped["/src/tree/small.txt"], SMALL)
    assert grouped["/src/tree/big.bin"][0]["destination"] == f"{paths['tree']}/big.bin"

    # The listing saw the vanished file, so its copy was added. Its read
    # finds no file, a permanent error, so it is not retried.
    vanished = grouped["/src/tree/vanished.txt"]
    assert steps(vanished) == [("started", 1), ("failed", 1)]
    assert vanished[1]["error"].startswith(
        "source file not found: /src/tree/vanished.txt; "
    )
    assert vanished[1]["total"] == len(VANISHED)
    assert vanished[1]["bytes"] == 0
    assert vanished[1]["method"] is None

    # Reading the source to compare digests failed once too.
    same = grouped["/src/same.txt"]
    assert steps(same) == [
        ("started", 1),
        ("retried", 1),
        ("started", 2),
        ("skipped", 2),
    ]
    assert same[-1]["method"] == "xxh128"
    assert same[-1]["bytes"] == 0
    assert same[-1]["destination"] == paths["same"]
    # A single file added by path has no size from a listing.
    assert same[-1]["total"] is None


def test_library_events_of_faulty_run(
    memory: MemoryFileSystem, paths: dict[str, str]
) -> None:
    add_actions(memory, paths)
    events = []

    with StorageQueue(name=paths["queue"]) as queue:
        summary = queue.run(on_event=events.append)

    check_events([event.to_dict() for event in events], paths)
    assert summary.copied == 2
    assert summary.skipped == 1
    assert summary.failed == 1
    assert summary.retried == 3
    assert summary.bytes == len(BIG) + len(SMALL)
    assert {event.type for event in events} == set(EventType)


# The --json stream -----------------------------------------------------------

#: How the type column of docs/json.md reads, as a check of a value.
DOC_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda value: isinstance(value, str),
    "string or null": lambda value: value is None or isinstance(value, str),
    "int": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "int or null": lambda value: (
        value is None or (isinstance(value, int) and not isinstance(value, bool))
    ),
    "bool": lambda value: isinstance(value, bool),
    "float": lambda value: isinstance(value, float),
    "list": lambda value: isinstance(value, list),
}
ROW = re.compile(r"^\| `(\w+)` \| ([^|]+) \|")


def documented_tables() -> list[dict[str, str]]:
    """Return the field tables of the run section of docs/json.md.

    Each table maps a field to its type column: the ``run`` line, the
    event lines and the ``summary`` line, in that order.
    """
    text = JSON_DOC.read_text(encoding="utf-8")
    section = text.split("## Runs", 1)[1].split("\n## ", 1)[0]
    tables: list[dict[str, str]] = []
    previous_was_row = False
    for line in section.splitlines():
        row = ROW.match(line)
        if row is None:
            previous_was_row = previous_was_row and line.startswith("|")
            continue
        if not previous_was_row:
            tables.append({})
        tables[-1][row.group(1)] = row.group(2).strip()
        previous_was_row = True
    return tables


def check_line(line: dict[str, Any], table: dict[str, str]) -> None:
    """Check one JSON line against one table of docs/json.md."""
    assert set(line) == set(table), line
    for field, kind in table.items():
        if kind.startswith("`"):
            assert line[field] == kind.strip('`"'), (field, line)
        else:
            assert DOC_TYPES[kind](line[field]), (field, kind, line[field])


def test_json_stream_of_faulty_run(
    memory: MemoryFileSystem,
    paths: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOURNALQ_HOME", str(tmp_path / "home"))
    add_actions(memory, paths)
    run_table, event_table, summary_table = documented_tables()

    result = CliRunner().invoke(
        cli, ["run", "--queue", paths["queue"], "--json"], catch_exceptions=False
    )
    lines = [msgspec.json.decode(line) for line in result.stdout.splitlines()]
    first, events, summary = lines[0], lines[1:-1], lines[-1]

    assert result.exit_code == ExitCode.FAILED, result.output
    check_line(first, run_table)
    assert first["files"] == 4
    assert first["bytes"] == len(BIG) + len(SMALL) + len(VANISHED)
    for event in events:
        check_line(event, event_table)
        assert event["event"] in set(EventType)
    check_events(events, paths)
    check_line(summary, summary_table)
    assert summary["copied"] == 2
    assert summary["skipped"] == 1
    assert summary["failed"] == 1
    assert summary["retried"] == 3
    assert summary["bytes"] == len(BIG) + len(SMALL)
    assert summary["remaining"] == 0
    assert summary["queue"] == paths["queue"]
    assert summary["resume"] is None
    failed = {failure["source"]: failure for failure in summary["failures"]}
    assert failed["/src/tree/vanished.txt"]["status"] == "failed"
    assert failed["/src/tree"]["kind"] == "copy_tree"
