"""Helpers of the tests that SIGKILL a copy whose source read hangs.

A FIFO with no writer stands for such a source: its copy has opened the
temporary file beside the destination and waits for data.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from journalq.replay import Status
from journalq.store import read_state

#: Seconds a child may take to start, lock the queue and open its copy.
#: Starting Python and importing journalq takes about 0.7 s on 2 cores.
START_TIMEOUT = 60.0


def start_script(script: str, *arguments: str) -> subprocess.Popen:
    """Start ``python -c SCRIPT ARGUMENTS``, its stderr piped for failures."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_temporary(
    directory: Path, queue: Path | str, process: subprocess.Popen, attempt: int = 1
) -> Path:
    """Wait for the temporary copy in ``directory`` of an attempt in progress.

    The ``started`` record is appended without waiting for the disk, and
    the journal writes it within its linger time (10 ms). So the file may
    appear first, and this waits for both.
    """
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = sorted(directory.glob(f".*.jq-*-{attempt}.tmp"))
        if found and _in_progress(queue, attempt):
            return found[0]
        if process.poll() is not None:
            _, stderr = process.communicate()
            raise AssertionError(f"the copy ended early: {stderr}")
        time.sleep(0.05)
    raise AssertionError(f"no copy in progress wrote into {directory}")


def _in_progress(queue: Path | str, attempt: int) -> bool:
    return any(
        action.status is Status.INPROGRESS and action.attempts == attempt
        for action in read_state(queue).actions.values()
    )


def kill(process: subprocess.Popen) -> None:
    """Kill ``process`` with SIGKILL and reap it."""
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
