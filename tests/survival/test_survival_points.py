"""Kill the workload at each named crash point, then recover and finish.

``JOURNALQ_CRASH_AT=NAME:N`` makes a child SIGKILL itself the N-th time it
reaches ``faults.point(NAME)``. A census run counts how often the two-round
workload reaches each point, and the crash comes half-way through those
passes. Points that only a recovery reaches (sealing a crashed segment,
cutting a torn tail) crash in a round that follows a kill, and the inbox
points in a process that hands an add to a running holder. After each crash
a last round must finish with every invariant of a finished queue.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from survival_child import CENSUS_VARIABLE
from survival_helpers import (
    Acknowledged,
    check_acknowledged,
    check_finished_queue,
    child_command,
    make_source,
    recovered_state,
    run_child,
)

from journalq.journal import format as journal_format
from journalq.store import JOURNAL_DIR

#: Files in the tree: two expansion chunks' worth, so a crash can fall
#: between chunks, and few enough that a test takes about 3 s.
TREE_FILES = 450
KILLED = -9

#: Points the two-round workload passes through.
WORKLOAD_POINTS = [
    "journal.before_write",
    "journal.after_write",
    "journal.after_sync",
    "journal.segment_created",
    "journal.before_segment_rename",
    "journal.before_delete",
    "journal.after_delete",
    "snapshot.before_replace",
    "snapshot.after_replace",
    "store.snapshot_written",
    "durable.before_replace",
    "durable.after_replace",
    "transfer.before_rename",
    "transfer.after_rename",
    "queue.expansion_chunk",
    "executor.before_directory_mtimes",
]
#: Points only the recovery after a crash reaches, with what prepares them:
#: a killed round, or a killed round whose last segment then got a torn tail.
RECOVERY_POINTS = [
    ("journal.before_seal", "killed"),
    ("journal.tail_saved", "torn"),
]
#: Points of handing an add to the holder through the inbox.
INBOX_POINTS = ["inbox.before_rename", "store.inbox_drained"]
#: Points of a large copy in parts to a local disk, which this workload's
#: small files never reach: tests/test_parts.py kills a copy at each of them
#: and resumes it.
PARTS_POINTS = ["parts.before_record", "parts.before_rename"]
#: Points in journalq/backends, by file. The workload copies between local
#: disks, so it reaches none of them, whatever their names.
#: tests/backends/test_backend_kills.py kills a small upload at each commit
#: point of s3.py, gcs.py and sftp.py, and
#: tests/backends/test_parts_remote.py a large one at each point of the
#: ``*_parts.py`` files. Each test then resumes the copy.
BACKEND_POINTS = {
    "s3.py": ["transfer.before_rename", "transfer.after_rename"],
    "gcs.py": ["transfer.before_rename", "transfer.after_rename"],
    "sftp.py": ["transfer.before_rename", "transfer.after_rename"],
    "s3_parts.py": ["s3.upload_created", "parts.before_rename", "parts.after_complete"],
    "gcs_parts.py": ["parts.before_rename", "parts.after_complete"],
    "sftp_parts.py": ["parts.before_rename", "parts.after_complete"],
}

#: Points of a sync's deletes, which this workload never reaches:
#: tests/test_delete_conflict.py kills a run there and resumes it.
DELETE_POINTS = ["executor.before_delete"]
#: Points of `journalq drop`, which this workload never reaches:
#: tests/cli/test_cli_drop.py kills a drop there.
DROP_POINTS = ["drop.renamed", "drop.hidden"]

#: A process that holds the queue's lock until its stdin closes.
HOLDER = """
import sys
from journalq.store import QueueStore
store = QueueStore.open(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
store.close()
"""


#: A process that adds a copy to a queue another process holds, so the add
#: goes through the inbox, and prints the new action's id.
POSTER = """
import sys
from journalq import StorageQueue
queue, source, destination = sys.argv[1:]
with StorageQueue(name=queue) as handoff:
    assert handoff.handoff
    print(handoff.copy_file(source, destination), flush=True)
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("survival-points")
    return make_source(root / "source", TREE_FILES)


@pytest.fixture(scope="module")
def census(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Counter[str]:
    """How often an uninterrupted two-round workload reaches each point."""
    root = tmp_path_factory.mktemp("census")
    counts = root / "counts.json"
    command = child_command(source, root / "destination", root / "queue", 0, 2)
    completed = run_child(command, env={CENSUS_VARIABLE: str(counts)})
    assert completed.returncode == 0, completed.stderr
    return Counter(json.loads(counts.read_text()))


def _crash(command: list[str], point: str, count: int) -> subprocess.CompletedProcess:
    armed = f"{point}:{count}"
    crashed = run_child(command, env={"JOURNALQ_CRASH_AT": armed})
    assert crashed.returncode == KILLED, f"{armed} not reached\n{crashed.stderr}"
    return crashed


def _crash_half_way(
    command: list[str], point: str, passes: int, tmp_path: Path
) -> subprocess.CompletedProcess:
    """Crash at ``point`` half-way through the ``passes`` of the census.

    How often a run passes the journal's points depends on timing, because
    a group of copies is journaled when it is full or 0.25 s old. A run
    that ends before the count starts over in an empty directory with
    half the count.
    """
    count = (passes + 1) // 2
    while True:
        armed = f"{point}:{count}"
        crashed = run_child(command, env={"JOURNALQ_CRASH_AT": armed})
        if crashed.returncode != 0 or count == 1:
            break
        for name in ("destination", "queue"):
            shutil.rmtree(tmp_path / name, ignore_errors=True)
        count = (count + 1) // 2
    assert crashed.returncode == KILLED, f"{armed} not reached\n{crashed.stderr}"
    return crashed


def _finish(source: Path, tmp_path: Path, acknowledged: Acknowledged) -> None:
    """Recover from the crash, run a last round, check every invariant."""
    destination, queue = tmp_path / "destination", tmp_path / "queue"
    state = recovered_state(queue)
    if state is not None:
        check_acknowledged(state, acknowledged)
    final = run_child(child_command(source, destination, queue, 10))
    acknowledged.read(final.stdout)
    assert final.returncode == 0, final.stderr
    check_finished_queue(destination, queue, acknowledged)


@pytest.mark.parametrize("point", WORKLOAD_POINTS)
def test_crash_at_point(
    point: str, census: Counter[str], source: Path, tmp_path: Path
) -> None:
    passes = census[point]
    assert passes > 0, f"the workload never reaches {point}"
    command = child_command(source, tmp_path / "destination", tmp_path / "queue", 0, 2)
    acknowledged = Acknowledged()

    crashed = _crash_half_way(command, point, passes, tmp_path)
    acknowledged.read(crashed.stdout)

    _finish(source, tmp_path, acknowledged)


@pytest.mark.parametrize(("point", "preparation"), RECOVERY_POINTS)
def test_crash_in_recovery(
    point: str, preparation: str, source: Path, tmp_path: Path
) -> None:
    destination, queue = tmp_path / "destination", tmp_path / "queue"
    acknowledged = Acknowledged()
    command = child_command(source, destination, queue, 0)
    first = _crash(command, "journal.after_sync", 5)
    acknowledged.read(first.stdout)
    if preparation == "torn":
        _tear_last_segment(queue / JOURNAL_DIR)

    crashed = _crash(child_command(source, destination, queue, 1), point, 1)
    acknowledged.read(crashed.stdout)

    _finish(source, tmp_path, acknowledged)


def _tear_last_segment(journal: Path) -> None:
    """Append half a frame of garbage, as a write cut short by a crash leaves."""
    last = sorted(journal.glob(f"*{journal_format.SUFFIX}"))[-1]
    with last.open("ab") as file:
        file.write(b"\x5a" * 37)


@pytest.fixture
def holder(source: Path, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A process holding the lock of a queue that one round has run."""
    destination, queue = tmp_path / "destination", tmp_path / "queue"
    first = run_child(child_command(source, destination, queue, 0))
    assert first.returncode == 0, first.stderr
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(queue)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "locked\n"
    yield process
    if process.poll() is None:
        process.communicate(timeout=60)


def _handoff_command(source: Path, tmp_path: Path) -> list[str]:
    relpath = "extra/99-0.bin"
    destination = tmp_path / "destination" / relpath
    arguments = [tmp_path / "queue", source / relpath, destination]
    return [sys.executable, "-c", POSTER, *map(str, arguments)]


@pytest.mark.parametrize("point", INBOX_POINTS)
def test_crash_in_handoff(
    point: str, holder: subprocess.Popen, source: Path, tmp_path: Path
) -> None:
    queue = tmp_path / "queue"
    acknowledged = Acknowledged()
    command = _handoff_command(source, tmp_path)
    if point == "inbox.before_rename":
        _crash(command, point, 1)
        holder.communicate(timeout=60)
    else:
        posted = run_child(command)
        assert posted.returncode == 0, posted.stderr
        acknowledged.adds.add(posted.stdout.strip())
        holder.communicate(timeout=60)
        round_command = child_command(source, tmp_path / "destination", queue, 1)
        crashed = _crash(round_command, point, 1)
        acknowledged.read(crashed.stdout)

    _finish(source, tmp_path, acknowledged)


def test_every_point_has_a_test() -> None:
    """Every ``faults.point`` in journalq is in one of the lists above.

    A point in journalq/backends counts only under its own file in
    BACKEND_POINTS, never because a local point has the same name.
    """
    package = Path(__file__).parents[2] / "journalq"
    backends = package / "backends"
    pattern = re.compile(r"faults\.point\(\"([\w.]+)\"\)")
    found = set()
    found_in_backends = set()
    for path in package.rglob("*.py"):
        for name in pattern.findall(path.read_text()):
            if path.parent == backends:
                found_in_backends.add((path.name, name))
            else:
                found.add(name)
    tested = {
        *WORKLOAD_POINTS,
        *(point for point, _ in RECOVERY_POINTS),
        *INBOX_POINTS,
        *PARTS_POINTS,
        *DELETE_POINTS,
        *DROP_POINTS,
    }
    tested_in_backends = {
        (file, name) for file, names in BACKEND_POINTS.items() for name in names
    }
    assert found - tested == set()
    assert tested - found == set()
    assert found_in_backends - tested_in_backends == set()
    assert tested_in_backends - found_in_backends == set()
