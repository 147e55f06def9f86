"""Temporary files of copies killed mid-way, whatever becomes of their action.

Each test kills a copy stalled on a FIFO (see ``stalled_helpers``). The
next process to open the queue with its lock must remove its temporary
file, also when the action is then canceled or fails for crashing too
often, because nothing looks at it after that.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

from cli_helpers import journalq_process, run_journalq
from stalled_helpers import kill, start_script, wait_for_temporary

from journalq import StorageQueue
from journalq.cli.exits import ExitCode
from journalq.replay import CRASH_LOOP, Status
from journalq.store import read_state

#: Name pattern of the temporary copies beside a destination.
TEMPORARY = ".*.jq-*.tmp"


def test_killed_copy_canceled_leaves_nothing(tmp_path: Path) -> None:
    fifo = tmp_path / "stalled"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    out.mkdir()
    queue = str(tmp_path / "q")
    process = journalq_process(
        "copy",
        str(fifo),
        str(out / "target"),
        "--queue",
        queue,
        "-j",
        "1",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    temporary = wait_for_temporary(out, queue, process)
    kill(process)

    canceled = run_journalq("cancel", "--all", "--queue", queue)
    leftovers_after_cancel = sorted(out.glob(TEMPORARY))
    resumed = run_journalq("run", "--queue", queue)

    assert temporary.name.startswith(".target.jq-")
    assert canceled.returncode == ExitCode.OK, canceled.stderr
    assert leftovers_after_cancel == []
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert sorted(out.iterdir()) == []
    statuses = {action.status for action in read_state(queue).actions.values()}
    assert statuses == {Status.CANCELED}


#: A library run of one copy into a queue that fails an action after two
#: crashes. Its arguments are the queue, the source and the destination.
CRASHING_RUN = textwrap.dedent(
    """
    import sys
    from journalq import StorageQueue

    queue_dir, source, destination = sys.argv[1:]
    with StorageQueue(source, destination, name=queue_dir, max_attempts=2) as queue:
        if not queue.state.actions:
            queue.copy_file(source, destination)
        queue.run(parallelism=1)
    """
)


def test_crash_loop_leaves_nothing(tmp_path: Path) -> None:
    fifo = tmp_path / "stalled"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    out.mkdir()
    queue = tmp_path / "q"
    temporaries = []
    for attempt in (1, 2):
        process = start_script(CRASHING_RUN, str(queue), str(fifo), str(out / "t"))
        temporaries.append(wait_for_temporary(out, queue, process, attempt).name)
        kill(process)

    # The second crash uses up the attempts: opening the queue fails it.
    with StorageQueue(name=queue, max_attempts=2) as reopened:
        action = next(iter(reopened.state.actions.values()))
        leftovers = sorted(out.glob(TEMPORARY))

    assert temporaries == [
        ".t.jq-" + action.action_id[:8] + f"-{n}.tmp" for n in (1, 2)
    ]
    assert action.status is Status.FAILED
    assert action.error is not None
    assert action.error.reason == CRASH_LOOP
    assert leftovers == []
