"""Files handed to copy processes, seen from other processes and after a kill.

A `journalq copy` of many small new files between local disks hands them
to forked copy processes in batches. Each batch is journaled as in
progress before it goes out, so `status` in another process shows it. A
run killed after a cancel arrived leaves its copied files started, so
the next run verifies them rather than recording them as canceled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from cli_helpers import journalq_process, json_lines, run_journalq, write_tree

from journalq import copier
from journalq.cli.exits import ExitCode
from journalq.replay import Action, QueueState, Status
from journalq.store import read_state

pytestmark = pytest.mark.skipif(
    not copier.available(), reason="copy processes exist only on Linux"
)

#: Files of the copied tree: enough for the run to fork copy processes and
#: still be copying when the test has seen the first files arrive.
FILES = 3000
#: Files at the destination after which the test stops the run.
COPIED_BEFORE_STOP = 100


def _write_source(root: Path) -> Path:
    files = {f"d{index % 10}/f{index:05d}": b"%d\n" % index for index in range(FILES)}
    return write_tree(root, files)


def _copied_names(directory: Path) -> list[str]:
    """Return the relative paths of the files in ``directory``, temporaries too."""
    if not directory.exists():
        return []
    return [
        os.path.relpath(os.path.join(root, name), directory)
        for root, _, names in os.walk(directory)
        for name in names
    ]


class StoppedCopy(NamedTuple):
    """A `journalq copy` frozen with SIGSTOP after its first files arrived."""

    process: subprocess.Popen
    destination: Path
    queue: str


@pytest.fixture
def stopped_copy(tmp_path: Path) -> Iterator[StoppedCopy]:
    source = _write_source(tmp_path / "src")
    destination = tmp_path / "dst"
    queue = str(tmp_path / "q")
    process = journalq_process(
        *("copy", f"{source}/", f"{destination}/", "--queue", queue, "-q"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_copied_names(destination)) < COPIED_BEFORE_STOP:
            assert process.poll() is None, "the run ended before it was stopped"
            assert time.monotonic() < deadline, "the run copied nothing in 120 s"
            time.sleep(0.002)
        process.send_signal(signal.SIGSTOP)
        yield StoppedCopy(process, destination, queue)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=60)


def test_status_shows_handed_out_files(stopped_copy: StoppedCopy) -> None:
    process, _, queue = stopped_copy
    status = run_journalq("status", "--json", "--queue", queue)
    listed = run_journalq(
        "actions", "--status", "inprogress", "--json", "--queue", queue
    )
    process.send_signal(signal.SIGCONT)
    _, stderr = process.communicate(timeout=120)
    after = json.loads(run_journalq("status", "--json", "--queue", queue).stdout)
    rows = json_lines(listed.stdout)
    handed = next((row["id"] for row in rows if row["kind"] == "copy_file"), "")
    shown = run_journalq("show", handed, "--queue", queue)

    assert status.returncode == ExitCode.OK, status.stderr
    counts = json.loads(status.stdout)
    assert counts["running"] is not None
    assert counts["inprogress"] > 0
    assert listed.returncode == ExitCode.OK, listed.stderr
    assert [row["status"] for row in rows] == ["inprogress"] * counts["inprogress"]
    assert "copy_file" in {row["kind"] for row in rows}
    assert process.returncode == ExitCode.OK, stderr
    assert after["inprogress"] == 0
    assert after["completed"] == after["length"]
    assert shown.returncode == ExitCode.OK, shown.stderr
    assert "started attempt 1 in a copy process" in shown.stdout


def test_kill_after_cancel_keeps_copied_files(stopped_copy: StoppedCopy) -> None:
    """A run stopped, sent `cancel --all`, then killed with SIGKILL.

    Its copy process goes on copying while the run is stopped, until the
    cancel reaches the queue's inbox, so files are in place that the run
    never journaled as completed.
    """
    process, destination, queue = stopped_copy
    canceled = run_journalq("cancel", "--all", "--queue", queue)
    # The copy process hands back the rest of its batch once the request
    # changes the inbox's mtime. This gives it the time to finish its file.
    time.sleep(0.5)
    process.kill()
    process.communicate(timeout=60)
    before = read_state(queue)
    files = [a for a in before.actions.values() if a.added.parent is not None]
    unjournaled = [
        action
        for action in files
        if action.status is not Status.COMPLETED
        and os.path.exists(_destination(before, action))
    ]
    killed_status = run_journalq("status", "--queue", queue)
    resumed = run_journalq("run", "--queue", queue)
    state = read_state(queue)
    statuses = {
        action.action_id: state.actions[action.action_id].status for action in files
    }

    assert canceled.returncode == ExitCode.OK, canceled.stderr
    assert "asked it to cancel" in canceled.stdout
    # The sequence under test happened: files in place, not journaled.
    assert unjournaled
    # No process runs the queue, so the next run is the one to read it.
    assert "not read yet by a run; the next run of the queue applies it first" in (
        killed_status.stdout
    )
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    for action in files:
        path = _destination(state, action)
        if os.path.exists(path):
            assert statuses[action.action_id] is Status.COMPLETED, path
        else:
            assert statuses[action.action_id] is Status.CANCELED, path
    assert Status.CANCELED in statuses.values()
    temporaries = [
        name for name in _copied_names(destination) if os.path.basename(name)[0] == "."
    ]
    assert temporaries == []


def _destination(state: QueueState, action: Action) -> str:
    _, path = state.paths(action)
    assert path is not None
    return path
