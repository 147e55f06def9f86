"""SIGKILL a child process after a random delay, and know whether it was live.

A kill counts only when it ended a running process: the child's exit
status is then ``-SIGKILL``. A child that finished before its delay ran
out, or in the instant between the timeout and the signal, exits on its
own. :class:`KillTiming` then draws the next delay below the time that
child took, so the next kill is likely to land.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class KillResult:
    """How one child ended."""

    #: Whether the SIGKILL ended the child while it was running.
    landed: bool
    #: Seconds from the start of the child to its end.
    seconds: float
    stdout: str
    stderr: str
    returncode: int


def run_and_kill(command: list[str], delay: float) -> KillResult:
    """Run ``command``, SIGKILL it after ``delay`` seconds, and wait for its end.

    ``communicate()`` reads the child's pipes while it waits, so a child
    never blocks on a full pipe.
    """
    started = time.monotonic()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=delay)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return KillResult(
        landed=process.returncode == -signal.SIGKILL,
        seconds=time.monotonic() - started,
        stdout=stdout,
        stderr=stderr,
        returncode=process.returncode,
    )


class KillTiming:
    """Random kill delays in ``[low, high]`` seconds, retried after a late kill.

    After a child that finished before its kill, the next delay is drawn
    from ``[low, seconds that child ran]``; after a kill that landed, from
    the whole range again.
    """

    def __init__(self, low: float, high: float, rng: random.Random) -> None:
        self.low = low
        self.high = high
        self.rng = rng
        self._limit = high

    def next_delay(self) -> float:
        """Draw the delay of the next kill."""
        return self.rng.uniform(self.low, self._limit)

    def record(self, result: KillResult) -> None:
        """Take the outcome of the last kill into account."""
        if result.landed:
            self._limit = self.high
        else:
            self._limit = max(self.low, min(self.high, result.seconds))
