"""Real ``journalq`` processes side by side, and the hygiene of a queue.

Concurrency: a second run on a held queue is rejected at once, naming the
holder. An add or a cancel from another process while a run is going takes
effect and loses nothing. Ctrl-C twice stops a run at once, and the next
run finishes it. Hygiene: the queue's files are private to their owner, a
symlink loop in the source ends, a sync whose source is missing deletes
nothing, and ``--max-delete`` rejects a sync that would delete more.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from survival_helpers import (
    DESTINATION_TEMPORARY,
    check_completed_copies,
    terminal_records,
)

from journalq import StorageQueue, inbox
from journalq.records import Canceled, Kind, Started, encode_batch
from journalq.replay import Status
from journalq.store import QueueStore, read_state

#: Files of the tree a held run copies: enough that it still has waiting
#: actions when the test has read its first event and stopped it.
FILES = 800
LOCKED = 3
INTERRUPTED = 130


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for index in range(FILES):
        path = root / f"d{index % 8}" / f"f{index:04d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"%d\n" % index * (index % 50))
    return root


def _journalq(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "journalq", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _start_sync(source: Path, destination: Path, queue: Path) -> subprocess.Popen:
    """Start `journalq sync --json -j 1`, its events on a pipe."""
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "journalq", "sync", str(source), str(destination)),
            *("--queue", str(queue), "--json", "-j", "1"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(process: subprocess.Popen, event: str, kind: str | None = None) -> None:
    """Read the events of ``process`` until one of type ``event`` (and kind)."""
    assert process.stdout is not None
    for line in process.stdout:
        found = json.loads(line)
        if found["event"] == event and kind in (None, found["kind"]):
            return
    raise AssertionError(f"the run ended without a {event!r} event")


#: Files of the tree a cancel races: enough that the copy processes are
#: still busy when the first group of completions is reported (512 files).
CANCEL_FILES = 4_000


@pytest.fixture
def big_tree(tmp_path: Path) -> Path:
    root = tmp_path / "big"
    for index in range(CANCEL_FILES):
        path = root / f"d{index % 8}" / f"f{index:04d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"%d\n" % index)
    return root


@pytest.fixture
def held(tree: Path, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A sync that has copied a file, frozen with SIGSTOP."""
    yield from _held(tree, tmp_path)


@pytest.fixture
def held_big(big_tree: Path, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A sync of :data:`CANCEL_FILES` files that has copied some, stopped."""
    yield from _held(big_tree, tmp_path)


def _held(tree: Path, tmp_path: Path) -> Iterator[subprocess.Popen]:
    process = _start_sync(tree, tmp_path / "out", tmp_path / "queue")
    _wait_for(process, "completed", str(Kind.COPY_FILE))
    process.send_signal(signal.SIGSTOP)
    yield process
    if process.returncode is None:
        process.send_signal(signal.SIGCONT)
        process.communicate(timeout=120)


def _tree_files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file()
    }


def test_second_run_rejected_naming_holder(held: subprocess.Popen, tmp_path: Path):
    started = time.monotonic()
    second = _journalq("run", "--queue", str(tmp_path / "queue"))
    elapsed = time.monotonic() - started

    assert second.returncode == LOCKED, second.stderr
    assert f"pid {held.pid}" in second.stderr
    assert socket.gethostname() in second.stderr
    # Starting the interpreter is most of this. The lock is never waited for.
    assert elapsed < 10


def test_cancel_during_run(held_big: subprocess.Popen, tmp_path: Path):
    held = held_big
    queue = tmp_path / "queue"
    canceled = _journalq("cancel", "--all", "--queue", str(queue))
    held.send_signal(signal.SIGCONT)
    _, stderr = held.communicate(timeout=120)
    state = read_state(queue)
    files = [a for a in state.actions.values() if a.kind is Kind.COPY_FILE]
    statuses = {action.action_id: action.status for action in files}

    assert canceled.returncode == 0, canceled.stderr
    assert held.returncode in (0, 1), stderr
    assert set(statuses.values()) <= {Status.COMPLETED, Status.CANCELED}
    completed = [i for i, status in statuses.items() if status is Status.COMPLETED]
    assert 0 < len(completed) < CANCEL_FILES
    assert check_completed_copies(state) == len(completed)
    for action in files:
        _, destination = state.paths(action)
        assert destination is not None
        if action.status is Status.CANCELED:
            assert not os.path.exists(destination), destination
    assert max(terminal_records(queue).values()) == 1


def test_add_during_live_run(tree: Path, tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    late = tmp_path / "late.txt"
    late.write_bytes(b"added while the run was going")
    process = _start_sync(tree, tmp_path / "out", queue)
    _wait_for(process, "completed")

    added = _journalq(
        "add", "copy", str(late), str(tmp_path / "out-late.txt"), "--queue", str(queue)
    )
    _, stderr = process.communicate(timeout=120)
    again = _journalq("run", "--queue", str(queue))

    assert added.returncode == 0, added.stderr
    assert process.returncode == 0, stderr
    assert again.returncode == 0, again.stderr
    action = read_state(queue).actions[added.stdout.strip()]
    assert action.status is Status.COMPLETED
    assert (tmp_path / "out-late.txt").read_bytes() == late.read_bytes()


def test_ctrl_c_twice_then_resume(tree: Path, tmp_path: Path) -> None:
    queue, destination = tmp_path / "queue", tmp_path / "out"
    process = _start_sync(tree, destination, queue)
    _wait_for(process, "completed")

    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    elapsed = time.monotonic() - started
    resumed = _journalq("run", "--queue", str(queue))

    # A second Ctrl-C that arrives after the run stopped, while the process
    # exits, ends it by the signal itself, which shells also report as 130.
    assert process.returncode in (INTERRUPTED, -signal.SIGINT), stderr
    assert elapsed < 5
    assert "Traceback" not in stderr
    assert resumed.returncode == 0, resumed.stderr
    assert _tree_files(destination) == _tree_files(tree)
    assert list(destination.rglob(DESTINATION_TEMPORARY)) == []


def test_queue_files_private(tree: Path, tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    synced = _journalq("sync", str(tree), str(tmp_path / "out"), "--queue", str(queue))
    compacted = _journalq("compact", "--queue", str(queue))
    paths = [queue, *queue.rglob("*")]

    assert synced.returncode == 0, synced.stderr
    assert compacted.returncode == 0, compacted.stderr
    assert len(paths) > 4
    readable = [
        f"{path} {stat.filemode(path.stat().st_mode)}"
        for path in paths
        if path.stat().st_mode & 0o077
    ]
    assert readable == []


def test_symlink_loop_in_source_ends(tree: Path, tmp_path: Path) -> None:
    (tree / "d0" / "loop").symlink_to("..")
    synced = _journalq(
        "sync", str(tree), str(tmp_path / "out"), "--queue", str(tmp_path / "q")
    )

    assert synced.returncode in (0, 1), synced.stderr
    assert "Traceback" not in synced.stderr
    assert (tmp_path / "out" / "d1" / "f0001.txt").exists()


def test_missing_source_deletes_nothing(tree: Path, tmp_path: Path) -> None:
    before = _tree_files(tree)

    synced = _journalq(
        *("sync", str(tmp_path / "missing"), str(tree), "--delete"),
        *("--force", "--queue", str(tmp_path / "q")),
    )

    assert synced.returncode != 0
    assert "Traceback" not in synced.stderr
    assert _tree_files(tree) == before


def test_max_delete_rejects_sync(tree: Path, tmp_path: Path) -> None:
    destination = tmp_path / "out"
    destination.mkdir()
    for name in ("old1", "old2", "old3"):
        (destination / name).write_text(name)

    synced = _journalq(
        *("sync", str(tree), str(destination), "--delete", "--max-delete", "2"),
        *("--queue", str(tmp_path / "q")),
    )

    assert synced.returncode != 0
    assert "more than the maximum of 2" in synced.stderr
    assert sorted(path.name for path in destination.iterdir()) == [
        "old1",
        "old2",
        "old3",
    ]


def test_handoff_cancel_spares_started_action(tmp_path: Path) -> None:
    """A poster picks cancels from the journal on disk, which lags behind the
    holder. A cancel of an action that started meanwhile must be dropped."""
    source = tmp_path / "file.txt"
    source.write_text("content")
    queue_dir = tmp_path / "queue"
    with StorageQueue(str(tmp_path), str(tmp_path / "out"), name=str(queue_dir)) as q:
        action_id = q.copy_file("file.txt", "file.txt")
    store = QueueStore.open(queue_dir)
    try:
        assert store.start(action_id, Started(action_id, 1, time.time_ns()))
        inbox.post(queue_dir, encode_batch([Canceled(action_id, "user")]))

        store.drain_inbox()
        status = store.state.actions[action_id].status
    finally:
        store.close()

    assert status is Status.INPROGRESS
    assert read_state(queue_dir).actions[action_id].status is Status.INPROGRESS
    assert terminal_records(queue_dir)[action_id] == 0
