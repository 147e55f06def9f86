"""What the survival tests share: the workload's files, its child process,
and the invariants that every crash, kill and power cut must keep."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from journalq import StorageQueue, snapshot
from journalq.errors import QueueError
from journalq.journal import scan
from journalq.records import Canceled, Completed, Failed, Kind, decode_batch
from journalq.replay import TERMINAL, QueueState, Status, decode_state
from journalq.store import JOURNAL_DIR, RESULTS_DIR, read_state

SOAK = os.environ.get("JOURNALQ_SOAK") == "1"
CHILD = Path(__file__).with_name("survival_child.py")
#: Files of the tree every round copies. At about 0.4 ms per file on the
#: 2-core test machine a run copies it in about 0.5 s, so random kills land
#: in start-up, expansion, copying and the re-check of later rounds.
TREE_FILES = 1_200
#: Rounds whose extra files exist, more than any test runs.
MAX_ROUNDS = 400
#: Name patterns of leftover temporaries: journalq's copies at the
#: destination, and segments, snapshots and inbox requests in the queue.
DESTINATION_TEMPORARY = ".*.jq-*.tmp"
QUEUE_TEMPORARY = "*.tmp"


@dataclass
class Acknowledged:
    """Records that a workload saw made durable, by action id."""

    adds: set[str] = field(default_factory=set)
    cancels: set[str] = field(default_factory=set)
    completions: set[str] = field(default_factory=set)
    finished: bool = False

    def read(self, output: str) -> None:
        """Take the acknowledgements of a child's stdout; a cut line is not one."""
        lines = output.split("\n")
        for line in lines[:-1] if not output.endswith("\n") else lines:
            kind, _, action_id = line.partition(" ")
            if kind == "add":
                self.adds.add(action_id)
            elif kind == "cancel":
                self.cancels.add(action_id)
            elif kind == "done":
                self.completions.add(action_id)
            elif kind == "finished":
                self.finished = True


def make_source(root: Path, tree_files: int = TREE_FILES, seed: int = 1_729) -> Path:
    """Write the workload's source tree under ``root`` and return ``root``."""
    rng = random.Random(seed)
    for index in range(tree_files):
        folder = root / "tree" / f"group{index % 6}"
        if index % 40 == 0:
            folder = folder / "deep"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.choice((0, rng.randrange(1, 2048), rng.randrange(2048, 40_000)))
        (folder / f"file{index:05d}.bin").write_bytes(rng.randbytes(size))
    extra = root / "extra"
    extra.mkdir()
    for number in range(MAX_ROUNDS):
        for index in range(4):
            (extra / f"{number}-{index}.bin").write_bytes(
                rng.randbytes(rng.randrange(0, 9_000))
            )
    return root


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` (relative path -> content) under ``root``; return it."""
    for relpath, data in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def grow_source(root: Path, number: int, count: int, rng: random.Random) -> None:
    """Add ``count`` new files to the tree, for round ``number`` to copy.

    Files are only ever added, never changed: a tree listed before a change
    rightly keeps the old copy, which would make the content check moot.
    """
    folder = root / "tree" / "new" / str(number)
    folder.mkdir(parents=True)
    for index in range(count):
        size = rng.randrange(0, 8_000)
        (folder / f"file{index:04d}.bin").write_bytes(rng.randbytes(size))


def child_command(
    source: Path, destination: Path, queue: Path, first_round: int, rounds: int = 1
) -> list[str]:
    """Return the command line of a workload child."""
    arguments = [source, destination, queue, first_round, rounds]
    return [sys.executable, str(CHILD), *map(str, arguments)]


def run_child(
    command: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a workload child to its end (or its crash point)."""
    return subprocess.run(
        command,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def recovered_state(queue: Path) -> QueueState | None:
    """Fold the queue without the lock; None when no queue was created yet.

    A :class:`CorruptionError` propagates: after a kill or a power cut with
    syncs in place, recovery must never report corruption.
    """
    try:
        return read_state(queue)
    except QueueError as exc:
        if "no FORMAT file" in str(exc):
            return None
        raise


def terminal_records(queue: Path) -> Counter[str]:
    """Count the terminal records of every action, snapshot and journal."""
    header = msgspec.msgpack.decode((queue / "FORMAT").read_bytes())
    queue_id = bytes.fromhex(header["queue_id"])
    counts: Counter[str] = Counter()
    after_lsn = 0
    loaded = snapshot.load_latest(queue / snapshot.SNAPSHOT_DIR, queue_id, tidy=False)
    if loaded is not None:
        info, payload = loaded
        after_lsn = info.last_lsn
        for action in decode_state(payload).actions.values():
            if action.status in TERMINAL:
                counts[action.action_id] += 1
    result = scan(queue / JOURNAL_DIR, queue_id, after_lsn=after_lsn)
    for frame in result.frames:
        for offset, record in enumerate(decode_batch(frame.payload)):
            terminal = isinstance(record, Completed | Canceled) or (
                isinstance(record, Failed) and not record.retryable
            )
            if terminal and frame.first_lsn + offset > after_lsn:
                counts[record.action_id] += 1
    return counts


def check_acknowledged(state: QueueState, acknowledged: Acknowledged) -> None:
    """Check that every acknowledged record is in ``state``."""
    lost_adds = sorted(acknowledged.adds - state.actions.keys())
    assert lost_adds == [], f"acknowledged adds lost: {lost_adds}"
    for action_id in acknowledged.cancels:
        status = state.actions[action_id].status
        assert status is Status.CANCELED, f"canceled {action_id} is {status}"
    for action_id in acknowledged.completions:
        status = state.actions[action_id].status
        assert status is Status.COMPLETED, f"completed {action_id} is {status}"
    both = sorted(acknowledged.cancels & acknowledged.completions)
    assert both == [], f"actions both canceled and completed: {both}"


def read_local(path: str) -> bytes | None:
    """Return the bytes of the local file ``path``, or None when it is missing."""
    return Path(path).read_bytes() if os.path.exists(path) else None


def check_completed_copies(
    state: QueueState, read: Callable[[str], bytes | None] = read_local
) -> int:
    """Check that every completed copy's destination has the source's bytes.

    ``read`` returns the bytes of a destination path, or None when nothing
    is there. Returns how many completed copies were checked.
    """
    checked = 0
    for action in state.actions.values():
        if action.kind is not Kind.COPY_FILE or action.status is not Status.COMPLETED:
            continue
        source, destination = state.paths(action)
        assert source is not None
        assert destination is not None
        copied = read(destination)
        assert copied == Path(source).read_bytes(), f"{destination} differs"
        checked += 1
    return checked


def check_completed_results(state: QueueState, queue: Path) -> None:
    """Check that every completed list action's stored result is readable."""
    for action in state.actions.values():
        if action.kind is Kind.LIST and action.status is Status.COMPLETED:
            name = action.completed.result
            assert (queue / RESULTS_DIR / f"{name}.msgpack").is_file(), name


def check_completed_directories(state: QueueState) -> None:
    """Check that every completed mkdir's directory exists."""
    for action in state.actions.values():
        if action.kind is Kind.MKDIR and action.status is Status.COMPLETED:
            _, path = state.paths(action)
            assert path is not None
            assert os.path.isdir(path), f"completed mkdir of {path} is gone"


def check_no_temporaries(destination: Path, queue: Path) -> None:
    leftovers = [
        *destination.rglob(DESTINATION_TEMPORARY),
        *queue.rglob(QUEUE_TEMPORARY),
    ]
    assert leftovers == [], f"temporary files left: {leftovers}"


def check_finished_journal(
    queue: Path,
    acknowledged: Acknowledged,
    read: Callable[[str], bytes | None] = read_local,
) -> QueueState:
    """Check the journal of a queue whose last run finished; return its state.

    Every acknowledged record is there, no action waits, runs or failed,
    every completed copy has its bytes at the destination (read with
    ``read``) and no action has two terminal records.
    """
    state = read_state(queue)
    check_acknowledged(state, acknowledged)
    counts = state.status_counts()
    assert counts["waiting"] == 0
    assert counts["inprogress"] == 0
    failed = [
        (action.added.kind, action.added.relpath, action.error)
        for action in state.actions.values()
        if action.status is Status.FAILED
    ]
    assert failed == [], f"failed actions: {failed[:5]}"
    assert check_completed_copies(state, read) > 0
    check_completed_results(state, queue)
    repeated = {key: n for key, n in terminal_records(queue).items() if n > 1}
    assert repeated == {}
    return state


def check_finished_queue(
    destination: Path,
    queue: Path,
    acknowledged: Acknowledged,
    *,
    directories: bool = True,
) -> None:
    """Check every invariant of a queue whose last run finished.

    ``directories=False`` leaves out the check that completed mkdirs exist.
    """
    state = check_finished_journal(queue, acknowledged)
    if directories:
        check_completed_directories(state)

    children = Counter(
        (action.added.parent, action.added.relpath)
        for action in state.actions.values()
        if action.added.parent is not None
    )
    duplicated = [child for child, n in children.items() if n > 1]
    assert duplicated == [], f"tree files added twice: {duplicated[:5]}"
    check_no_temporaries(destination, queue)

    with StorageQueue(name=str(queue)) as again:
        summary = again.run()
    assert summary.copied == 0
    assert summary.bytes == 0
    assert summary.failed == 0
