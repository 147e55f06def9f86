"""Time whole processes, summarize rounds and describe the machine.

Every figure is a whole process, start to exit, as a user would see it.
Wall-clock seconds come from ``time.perf_counter`` taken before the process
is started and after it is reaped. CPU seconds and peak resident memory are
what the kernel reports through ``os.wait4``, which includes the descendants
the process waited for, so ``sh -c 'cp ... && sync'`` counts both.

The machines these benchmarks run on are shared and noisy, and a large copy
on them varies 2-3x from run to run because fresh memory pages are slow to
fault in. So the harness never trusts one absolute time: the tools run
interleaved in rounds (A B C, A B C, ...), a ratio between two tools is taken
within each round, and the page reports medians with their min-max spread.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import re
import select
import signal
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """Resources one finished process used."""

    wall: float
    """Seconds from start to reap."""
    user: float
    system: float
    max_rss_kib: int
    """Peak resident memory of the largest process in the tree, in KiB."""
    exit_code: int
    """Exit status, or minus the signal number that ended the process."""

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def then(self, later: Measurement) -> Measurement:
        """Combine two runs of one task: times add up, memory is the peak."""
        return Measurement(
            wall=self.wall + later.wall,
            user=self.user + later.user,
            system=self.system + later.system,
            max_rss_kib=max(self.max_rss_kib, later.max_rss_kib),
            exit_code=later.exit_code,
        )


class TimedProcess:
    """A child process whose wall time and resource usage are measured.

    Its output, standard error included, is appended to ``log_path``. A
    pidfd refers to the child, so a timeout or a kill can never signal an
    unrelated process that reused the pid.
    """

    def __init__(self, argv: Sequence[str], log_path: Path) -> None:
        with log_path.open("ab") as log:
            log.write(f"$ {subprocess.list2cmdline(argv)}\n".encode())
            log.flush()
            self.started = time.perf_counter()
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self._pidfd = os.pidfd_open(self._process.pid)
        self.log_path = log_path

    def wait(self, timeout: float | None) -> Measurement | None:
        """Reap the process if it exits within ``timeout`` seconds, else None."""
        readable, _, _ = select.select([self._pidfd], [], [], timeout)
        if not readable:
            return None
        return self._reap()

    def kill(self) -> Measurement:
        """Send SIGKILL and reap the process."""
        signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        return self._reap()

    def _reap(self) -> Measurement:
        _, status, usage = os.wait4(self._process.pid, 0)
        wall = time.perf_counter() - self.started
        os.close(self._pidfd)

        # Popen did not reap the child itself, so tell it the exit status,
        # or it would try to reap the pid again later.
        exit_code = os.waitstatus_to_exitcode(status)
        self._process.returncode = exit_code
        return Measurement(
            wall=wall,
            user=usage.ru_utime,
            system=usage.ru_stime,
            max_rss_kib=usage.ru_maxrss,
            exit_code=exit_code,
        )


def run_process(argv: Sequence[str], log_path: Path, timeout: float) -> Measurement:
    """Run ``argv`` to completion and measure it.

    Raises ``TimeoutError`` after killing a process that ran longer than
    ``timeout`` seconds, and ``OSError`` when the program cannot be started.
    """
    process = TimedProcess(argv, log_path)
    measurement = process.wait(timeout)
    if measurement is None:
        process.kill()
        raise TimeoutError(f"timed out after {timeout:g} s (output in {log_path})")
    logger.debug("%.3f s, exit %d: %s", measurement.wall, measurement.exit_code, argv)
    return measurement


ERROR_LINE = re.compile(r"error|exception|failed|invalid|not found|denied", re.I)


def describe_exit(measurement: Measurement, log_path: Path) -> str:
    """Describe how a failed process ended, with a line of its output.

    The line is the last one that mentions an error, else the last one.
    """
    if measurement.exit_code < 0:
        ending = f"killed by signal {-measurement.exit_code}"
    else:
        ending = f"exit status {measurement.exit_code}"
    lines = log_path.read_text(errors="replace").splitlines()
    printed = [line.strip() for line in lines if not line.startswith("$ ")]
    printed = [line for line in printed if line]
    if not printed:
        return ending
    errors = [line for line in printed if ERROR_LINE.search(line)]
    cause = errors[-1] if errors else printed[-1]
    return f"{ending}: {cause[:200]}"


@dataclass(frozen=True)
class Summary:
    """Median and spread of one figure over the rounds that produced it."""

    median: float
    minimum: float
    maximum: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(
            median=statistics.median(values),
            minimum=min(values),
            maximum=max(values),
            count=len(values),
        )


def round_ratios(
    numerators: dict[int, float], denominators: dict[int, float]
) -> list[float]:
    """Divide figures of the same round, for every round that has both."""
    rounds = sorted(numerators.keys() & denominators.keys())
    return [numerators[index] / denominators[index] for index in rounds]


def describe_machine(work_dir: Path) -> list[tuple[str, str]]:
    """List the facts about this machine that the figures depend on."""
    return [
        ("cores", str(os.cpu_count())),
        ("memory", _memory_total()),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("filesystem of the work folder", _filesystem_of(work_dir)),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
    ]


def describe_tools(repository: Path) -> list[tuple[str, str]]:
    """List the version of every tool the benchmarks run."""
    return [
        ("cp", _first_line(["cp", "--version"])),
        ("rsync", _first_line(["rsync", "--version"])),
        ("rclone", _first_line(["rclone", "version"])),
        ("fsspec", _package_version("fsspec")),
        ("journalq", f"{_package_version('journalq')}, {_git_commit(repository)}"),
    ]


def _memory_total() -> str:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024**2:.1f} GiB"
    return "unknown: no MemTotal in /proc/meminfo"


def _filesystem_of(path: Path) -> str:
    """Return the /proc/mounts entry of the mount that contains ``path``."""
    target = str(path.resolve())
    best: list[str] = []
    with open("/proc/mounts") as mounts:
        for line in mounts:
            # The fields are device, mount point, type, options, dump and
            # pass. The kernel writes a space inside a field as \040.
            fields = [field.replace("\\040", " ") for field in line.split()]
            point = fields[1]
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            longer = not best or len(point) > len(best[1])
            if inside and longer:
                best = fields
    if not best:
        return "unknown: no entry in /proc/mounts"
    device, point, kind, options = best[:4]
    return f"{kind} on {device} mounted at {point} ({options})"


def _first_line(argv: list[str]) -> str:
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        return f"not installed ({exc.strerror})"
    lines = (completed.stdout or completed.stderr).splitlines()
    return lines[0].strip() if lines else f"no output, exit {completed.returncode}"


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_commit(repository: Path) -> str:
    argv = ["git", "-C", str(repository), "describe", "--always", "--dirty"]
    return f"commit {_first_line(argv)}"
