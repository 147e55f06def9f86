"""Time journalq's transfers side by side with the peer tools.

Three scenarios run on each dataset, every tool as a whole process:

- copy: a full copy into an empty destination. The peers are ``cp -r``,
  ``cp -r`` followed by ``sync`` (the floor for a copy that is on disk when
  the command returns), ``rsync -a``, ``rclone copy --transfers 4`` and
  ``fsspec.generic.rsync``. journalq runs ``journalq copy`` with a fresh
  queue, and once more with SIGKILL sent when half the bytes exist at the
  destination, followed by the same command again to completion.
- noop: a re-sync onto a destination that is already identical (made with
  ``cp -a``, so sizes and mtimes match). The peers are ``rsync -a``,
  ``rsync -ac``, ``rclone sync``, ``rclone sync --checksum`` and
  ``fsspec.generic.rsync``. journalq runs ``journalq sync --compare
  checksum`` twice on one queue with the second run timed (its digest
  cache is warm), and once on a fresh queue (cold cache).
- startup: a copy of a folder holding one 4 KiB file, which is the cost of
  starting each tool and stopping it. It runs in the rounds of every
  dataset, so that a killed and resumed run, which starts twice, can be
  compared less the second start.

The procedure works around three properties of the machines it was written on:

- Their disk is ext4 without a journal, which avoids reusing inodes freed in
  the last minutes, so deleting and re-creating thousands of files in a loop
  gets 2-15x slower. So every timed copy writes into a fresh folder, and the
  old ones are deleted only when the whole run ends (earlier only when the
  disk would otherwise fill up, and the results page then notes it).
- rclone drops what it reads from the page cache, so both trees are read
  back into the cache before every timed run.
- Fresh memory pages are slow to fault in, so large copies vary 2-3x from
  run to run. The tools run interleaved within a round, and ratios are
  taken within each round.

Before every timed run ``os.sync()`` also flushes what the previous run left
dirty, so that no tool (``cp -r`` + ``sync`` above all) pays for another's
writes. After every run the destination is checked against the source: file
list, sizes and, for copies, an xxh3 digest of every file. A run that fails
or leaves a wrong destination is reported as not available with the reason,
and that tool is not run again on that dataset and scenario.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from benchmarks.datasets import (
    DatasetSpec,
    digest_files,
    ensure_dataset,
    list_files,
    list_stats,
    read_tree,
    tree_bytes,
)
from benchmarks.harness import (
    Measurement,
    TimedProcess,
    describe_exit,
    run_process,
)

logger = logging.getLogger(__name__)

PYTHON = sys.executable
JOURNALQ = os.environ.get(
    "BENCH_JOURNALQ", str(Path(sys.executable).with_name("journalq"))
)
"""The journalq executable: ``$BENCH_JOURNALQ``, else the one installed
beside the Python that runs the benchmarks."""
FSSPEC_RSYNC = (
    "import sys, fsspec.generic; fsspec.generic.rsync(sys.argv[1], sys.argv[2])"
)

RUN_TIMEOUT = 120.0
"""Seconds one run may take. The slowest peer on the full datasets took about
5 s in one round on a 2-core virtual machine (``rclone copy`` of 4 files of
256 MiB). A run 24 times slower is stuck or broken, and this bound keeps a
stuck run from holding up the benchmark for more than two minutes."""

POLL_INTERVAL = 0.005
"""Minimum seconds between two size checks of a destination about to be
killed. Each check walks the tree, which costs about 50 ms for 10,000 files,
so the interval also grows to twice the last walk's time."""

DISK_RESERVE = 4 * 1024**3
"""Bytes of free disk left to the rest of the machine while destinations
pile up. An estimate, not measured."""


@dataclass(frozen=True)
class RunPaths:
    """Folders of one timed run."""

    source: Path
    destination: Path
    queue: Path


PLACEHOLDERS = RunPaths(Path("SRC"), Path("DST"), Path("QDIR"))
SHORT_NAMES = {PYTHON: "python", JOURNALQ: "journalq"}


@dataclass(frozen=True)
class Contender:
    """One tool in one scenario: its row name, command and timing method."""

    key: str
    argv: Callable[[RunPaths], list[str]]
    method: Literal["once", "second-of-two", "kill-and-resume"] = "once"
    display_command: str | None = None
    """Command as the results page shows it, when ``argv`` is not enough."""
    requires: str | None = None
    """Key of a contender in the same scenario that must have succeeded in
    the same round for this one to run."""

    def command(self) -> str:
        """Return the command with SRC, DST and QDIR for the folders."""
        if self.display_command:
            return self.display_command
        argv = self.argv(PLACEHOLDERS)
        argv[0] = SHORT_NAMES.get(argv[0], argv[0])
        command = shlex.join(argv)
        if self.method == "second-of-two":
            command += "  (run twice on one queue, the second timed)"
        elif self.method == "kill-and-resume":
            command += "  (SIGKILL at half the bytes, then run again)"
        return command


def _slash(path: Path) -> str:
    return f"{path}/"


def _journalq_copy(paths: RunPaths) -> list[str]:
    return [
        JOURNALQ,
        *("copy", _slash(paths.source), _slash(paths.destination)),
        *("--queue", str(paths.queue), "-q"),
    ]


def _journalq_sync(paths: RunPaths) -> list[str]:
    return [
        JOURNALQ,
        *("sync", _slash(paths.source), _slash(paths.destination)),
        *("--queue", str(paths.queue), "--compare", "checksum", "-q"),
    ]


def _rsync(*options: str) -> Callable[[RunPaths], list[str]]:
    return lambda paths: [
        "rsync",
        *options,
        _slash(paths.source),
        _slash(paths.destination),
    ]


def _rclone(*words: str) -> Callable[[RunPaths], list[str]]:
    return lambda paths: ["rclone", *words, str(paths.source), str(paths.destination)]


FSSPEC = Contender(
    "fsspec.generic.rsync",
    lambda paths: [
        PYTHON,
        "-c",
        FSSPEC_RSYNC,
        str(paths.source),
        str(paths.destination),
    ],
)
RSYNC = Contender("rsync -a", _rsync("-a"))


@dataclass(frozen=True)
class Scenario:
    """A task every contender performs once per round."""

    key: str
    title: str
    contenders: tuple[Contender, ...]
    into_identical: bool
    """True: runs share a destination identical to the source, and must
    leave it unchanged. False: each run copies into a fresh, missing folder."""
    source: DatasetSpec | None = None
    """The tree every round copies, when not the dataset of the round."""


COPY = Scenario(
    "copy",
    "Full copy into an empty destination",
    (
        Contender(
            "cp -r",
            lambda paths: ["cp", "-r", str(paths.source), str(paths.destination)],
        ),
        Contender(
            "cp -r + sync",
            lambda paths: [
                "sh",
                "-c",
                'cp -r "$1" "$2" && sync',
                "sh",
                str(paths.source),
                str(paths.destination),
            ],
            display_command="cp -r SRC DST && sync",
        ),
        RSYNC,
        Contender("rclone copy", _rclone("copy", "--transfers", "4")),
        Contender(
            "rclone copy, killed and resumed",
            _rclone("copy", "--transfers", "4"),
            "kill-and-resume",
            requires="rclone copy",
        ),
        FSSPEC,
        Contender("journalq copy", _journalq_copy),
        Contender(
            "journalq copy, killed and resumed",
            _journalq_copy,
            "kill-and-resume",
            requires="journalq copy",
        ),
    ),
    into_identical=False,
)

NOOP = Scenario(
    "noop",
    "No-op re-sync onto an identical destination",
    (
        RSYNC,
        Contender("rsync -ac", _rsync("-ac")),
        Contender("rclone sync", _rclone("sync")),
        Contender("rclone sync --checksum", _rclone("sync", "--checksum")),
        FSSPEC,
        Contender("journalq sync, warm cache", _journalq_sync, "second-of-two"),
        Contender("journalq sync, cold cache", _journalq_sync),
    ),
    into_identical=True,
)

STARTUP = Scenario(
    "startup",
    "Start-up: a copy of one 4 KiB file",
    (
        Contender("rclone copy", _rclone("copy", "--transfers", "4")),
        FSSPEC,
        Contender("journalq copy", _journalq_copy),
    ),
    into_identical=False,
    source=DatasetSpec("one", 1, 4096),
)

SCENARIOS = (COPY, NOOP, STARTUP)


@dataclass(frozen=True)
class Ratio:
    """A ratio of two contenders' wall times, and the target it must meet."""

    scenario: str
    dataset: str
    numerator: str
    denominator: str
    bound: float | None = None
    """Upper bound of the median ratio, or None to report it without a target."""
    inclusive: bool = True
    less: str | None = None
    """A contender of the start-up scenario whose wall time in the same round
    is taken off the numerator's."""

    def target(self) -> str:
        if self.bound is None:
            return "none"
        return f"{'<=' if self.inclusive else '<'} {self.bound:.1f}"

    def is_met(self, value: float) -> bool:
        if self.bound is None:
            return True
        return value <= self.bound if self.inclusive else value < self.bound


RATIOS = (
    Ratio("copy", "a", "journalq copy", "rclone copy", 1.0),
    Ratio("copy", "b", "journalq copy", "rclone copy", 1.0),
    Ratio("copy", "c", "journalq copy", "cp -r + sync", 1.5),
    Ratio("copy", "c", "journalq copy", "rclone copy", 1.0, inclusive=False),
    Ratio("noop", "a", "journalq sync, warm cache", "rclone sync --checksum", 0.5),
    Ratio("noop", "a", "journalq sync, warm cache", "fsspec.generic.rsync", 1.0),
    Ratio("noop", "a", "journalq sync, cold cache", "rclone sync --checksum"),
    Ratio("noop", "a", "journalq sync, cold cache", "fsspec.generic.rsync"),
    *(
        Ratio("copy", key, "journalq copy, killed and resumed", "journalq copy", 1.2)
        for key in "abc"
    ),
    *(
        Ratio("copy", key, "rclone copy, killed and resumed", "rclone copy")
        for key in "abc"
    ),
    *(
        Ratio(
            "copy",
            key,
            "journalq copy, killed and resumed",
            "journalq copy",
            less="journalq copy",
        )
        for key in "abc"
    ),
)


@dataclass(frozen=True)
class Sample:
    """Outcome of one contender in one round: a measurement or a failure."""

    scenario: str
    dataset: str
    contender: str
    round: int
    measurement: Measurement | None
    failure: str | None = None
    note: str | None = None


@dataclass
class TransferResults:
    """Every sample of a run, with the datasets and rounds it covered."""

    specs: tuple[DatasetSpec, ...]
    rounds: int
    samples: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rss_floor_kib: int = 0
    """Peak RSS that ``true`` showed when the harness started it. Linux
    counts the forking process's pages for the child until it calls exec,
    so no figure can be lower than the harness's own resident size."""

    def select(self, scenario: str, dataset: str, contender: str) -> list[Sample]:
        return [
            sample
            for sample in self.samples
            if (sample.scenario, sample.dataset, sample.contender)
            == (scenario, dataset, contender)
        ]

    def walls(self, scenario: str, dataset: str, contender: str) -> dict[int, float]:
        """Map each round to the wall seconds of its successful sample."""
        return {
            sample.round: sample.measurement.wall
            for sample in self.select(scenario, dataset, contender)
            if sample.measurement and not sample.failure
        }

    def failure(self, scenario: str, dataset: str, contender: str) -> str | None:
        """Return why the contender produced no figure, or None if it did."""
        samples = self.select(scenario, dataset, contender)
        if not samples:
            return "not run"
        reasons = [sample.failure for sample in samples if sample.failure]
        return reasons[0] if reasons else None


class RunFailed(Exception):
    """A run that produced no valid figure, with the reason as its message."""


@dataclass(frozen=True)
class ExpectedTree:
    """Sizes and digests of a source tree, to check a destination against."""

    sizes: dict[str, int]
    digests: dict[str, str]

    @classmethod
    def of(cls, tree: Path) -> ExpectedTree:
        sizes = list_files(tree)
        return cls(sizes, digest_files(tree, sorted(sizes)))

    def check_copy(self, tree: Path) -> None:
        """Raise ``RunFailed`` unless ``tree`` contains the same files and bytes."""
        if not tree.is_dir():
            raise RunFailed("exited 0 but created no destination folder")
        actual = list_files(tree)
        if actual != self.sizes:
            raise RunFailed(self._describe_listing(actual))
        digests = digest_files(tree, sorted(actual))
        differing = sum(digests[name] != self.digests[name] for name in digests)
        if differing:
            raise RunFailed(f"{differing} files differ in content from the source")

    def _describe_listing(self, actual: dict[str, int]) -> str:
        present = actual.keys() & self.sizes.keys()
        wrong = sum(actual[name] != self.sizes[name] for name in present)
        extra = len(actual.keys() - self.sizes.keys())
        return (
            f"destination holds {len(present):,} of {len(self.sizes):,} files "
            f"({sum(actual.values()):,} of {sum(self.sizes.values()):,} bytes), "
            f"{wrong} of the wrong size and {extra} extra"
        )


class TransferBench:
    """Runner of every scenario on every dataset for a number of rounds."""

    def __init__(
        self,
        specs: tuple[DatasetSpec, ...],
        rounds: int,
        work_dir: Path,
        keep: bool = False,
    ) -> None:
        self.work_dir = work_dir
        self.run_dir = work_dir / "runs" / time.strftime("%Y%m%d-%H%M%S")
        self.rounds = rounds
        self.keep = keep
        self.results = TransferResults(specs, rounds)
        self._finished_rounds: list[Path] = []

    def run(self) -> TransferResults:
        """Run every scenario on every dataset, then delete the destinations."""
        self.run_dir.mkdir(parents=True)
        floor = run_process(["true"], self.run_dir / "true.log", RUN_TIMEOUT)
        self.results.rss_floor_kib = floor.max_rss_kib
        try:
            sync_failures = self._check_syncs()
            expected: dict[Path, ExpectedTree] = {}
            for spec in self.results.specs:
                for scenario in SCENARIOS:
                    tree = ensure_dataset(
                        scenario.source or spec, self.work_dir / "datasets"
                    )
                    if tree not in expected:
                        expected[tree] = ExpectedTree.of(tree)
                    blocked = sync_failures if scenario.into_identical else {}
                    self._run_scenario(scenario, spec, tree, expected[tree], blocked)
        finally:
            if not self.keep:
                logger.info("deleting the destinations under %s", self.run_dir)
                shutil.rmtree(self.run_dir, ignore_errors=True)
        return self.results

    def _check_syncs(self) -> dict[str, str]:
        """Check that each no-op contender repairs a damaged small tree.

        A no-op run leaves the destination unchanged whether the tool
        compared every file or did nothing at all, so a tool whose sync does
        not work would show a fine figure. Returns the reason of each failure.
        """
        check_dir = self.run_dir / "sync-check"
        source = check_dir / "source"
        source.mkdir(parents=True)
        for name in ("kept.bin", "missing.bin", "changed.bin"):
            (source / name).write_bytes(random.Random(name).randbytes(4096))
        expected = ExpectedTree.of(source)

        failures = {}
        for contender in NOOP.contenders:
            run_dir = check_dir / _slug(contender.key)
            paths = RunPaths(source, run_dir / "destination", run_dir / "queue")
            _copy_identical(source, paths.destination)
            (paths.destination / "missing.bin").unlink()
            (paths.destination / "changed.bin").write_bytes(b"an older version")
            try:
                _run_checked(contender.argv(paths), run_dir / "output.log")
                expected.check_copy(paths.destination)
            except (RunFailed, TimeoutError, OSError) as exc:
                failures[contender.key] = self._relative(
                    f"failed to repair a tree with one file missing and one "
                    f"changed: {exc}"
                )
                logger.info("%s: not available: %s", contender.key, exc)
        return failures

    def _run_scenario(
        self,
        scenario: Scenario,
        spec: DatasetSpec,
        source: Path,
        expected: ExpectedTree,
        blocked: dict[str, str],
    ) -> None:
        """Run the rounds, skipping each contender in ``blocked`` for its reason."""
        scenario_dir = self.run_dir / spec.key / scenario.key
        identical = None
        if scenario.into_identical:
            identical = scenario_dir / "identical"
            _copy_identical(source, identical)
        stopped: set[str] = set()

        for index in range(1, self.rounds + 1):
            round_dir = scenario_dir / f"round-{index}"
            self._make_room(scenario, spec, index)
            for contender in scenario.contenders:
                if contender.key in stopped:
                    continue
                skip_reason = blocked.get(contender.key)
                if contender.requires in stopped:
                    skip_reason = f"not run because {contender.requires} failed"
                run_dir = round_dir / _slug(contender.key)
                destination = identical or run_dir / "destination"
                paths = RunPaths(source, destination, run_dir / "queue")
                sample = self._sample(
                    scenario, spec, contender, index, paths, expected, skip_reason
                )
                self.results.samples.append(sample)
                if sample.failure:
                    stopped.add(contender.key)
            self._finished_rounds.append(round_dir)

    def _sample(
        self,
        scenario: Scenario,
        spec: DatasetSpec,
        contender: Contender,
        index: int,
        paths: RunPaths,
        expected: ExpectedTree,
        skip_reason: str | None,
    ) -> Sample:
        """Measure and check one run, or record why it is skipped."""
        if skip_reason:
            sample = Sample(
                scenario.key, spec.key, contender.key, index, None, skip_reason
            )
            _log_sample(sample, self.rounds)
            return sample

        paths.queue.parent.mkdir(parents=True, exist_ok=True)
        log_path = paths.queue.parent / "output.log"
        before = list_stats(paths.destination) if scenario.into_identical else None
        measurement = None
        note = failure = None
        try:
            measurement, note = self._measure(contender, paths, log_path, spec)
            if before is None:
                expected.check_copy(paths.destination)
            else:
                _check_unchanged(paths.source, paths.destination, before)
        except (RunFailed, TimeoutError, OSError) as exc:
            failure = self._relative(str(exc))
        sample = Sample(
            scenario.key, spec.key, contender.key, index, measurement, failure, note
        )
        _log_sample(sample, self.rounds)
        return sample

    def _measure(
        self, contender: Contender, paths: RunPaths, log_path: Path, spec: DatasetSpec
    ) -> tuple[Measurement, str | None]:
        argv = contender.argv(paths)
        if contender.method == "kill-and-resume":
            assert contender.requires is not None
            uninterrupted = self.results.walls(COPY.key, spec.key, contender.requires)
            return _kill_and_resume(argv, paths, log_path, spec, uninterrupted)

        if contender.method == "second-of-two":
            _prepare(paths)
            _run_checked(argv, log_path)
        _prepare(paths)
        return _run_checked(argv, log_path), None

    def _relative(self, text: str) -> str:
        """Shorten the paths in ``text`` to RUN/ and a path inside the run."""
        return text.replace(f"{self.run_dir}/", "RUN/")

    def _make_room(self, scenario: Scenario, spec: DatasetSpec, index: int) -> None:
        """Delete finished rounds early if this round would fill the disk."""
        if scenario.into_identical:
            return
        copied = scenario.source or spec
        needed = len(scenario.contenders) * copied.total_bytes + DISK_RESERVE
        if shutil.disk_usage(self.run_dir).free >= needed:
            return

        note = (
            f"Before round {index} of {scenario.key} {spec.label}, the destinations "
            f"of {len(self._finished_rounds)} earlier rounds were deleted to keep "
            f"{DISK_RESERVE / 1024**3:g} GiB of disk free."
        )
        logger.warning(note)
        self.results.notes.append(note)
        for round_dir in self._finished_rounds:
            shutil.rmtree(round_dir, ignore_errors=True)
        self._finished_rounds.clear()

        free = shutil.disk_usage(self.run_dir).free
        if free < needed:
            raise OSError(
                f"not enough free disk space under {self.run_dir}: {free:,} bytes "
                f"free, {needed:,} needed for one round of {spec.label}. Free some "
                f"space or pass fewer --datasets."
            )


def _run_checked(argv: list[str], log_path: Path) -> Measurement:
    """Run and measure ``argv``, raising ``RunFailed`` unless it exits 0."""
    measurement = run_process(argv, log_path, RUN_TIMEOUT)
    if measurement.exit_code != 0:
        raise RunFailed(describe_exit(measurement, log_path))
    return measurement


def _prepare(paths: RunPaths) -> None:
    """Flush earlier writes to disk and read both trees into the page cache."""
    os.sync()
    read_tree(paths.source)
    read_tree(paths.destination)


def _kill_and_resume(
    argv: list[str],
    paths: RunPaths,
    log_path: Path,
    spec: DatasetSpec,
    uninterrupted: dict[int, float],
) -> tuple[Measurement, str]:
    """Kill a run when half the bytes exist, run it again, and add both up.

    Polling starts after a third of the uninterrupted run's median time
    (when it is known), so that the tree walks slow the run down for as
    little of its time as possible.
    """
    _prepare(paths)
    half = spec.total_bytes / 2
    process = TimedProcess(argv, log_path)
    quiet = statistics.median(uninterrupted.values()) / 3 if uninterrupted else 0
    finished = process.wait(quiet)
    interval = POLL_INTERVAL
    while finished is None:
        walk_started = time.perf_counter()
        if tree_bytes(paths.destination) >= half:
            break
        if walk_started - process.started > RUN_TIMEOUT:
            process.kill()
            raise TimeoutError(
                f"timed out after {RUN_TIMEOUT:g} s (output in {log_path})"
            )
        interval = max(POLL_INTERVAL, 2 * (time.perf_counter() - walk_started))
        finished = process.wait(interval)
    if finished is not None:
        if finished.exit_code != 0:
            raise RunFailed(describe_exit(finished, log_path))
        raise RunFailed(
            f"finished in {finished.wall:.2f} s, before half of the bytes "
            f"existed at a check every {interval * 1000:.0f} ms"
        )

    interrupted = process.kill()
    written = tree_bytes(paths.destination) / spec.total_bytes
    resumed = _run_checked(argv, log_path)
    note = f"killed at {written:.0%} of the bytes, {interrupted.wall:.2f} s in"
    return interrupted.then(resumed), note


def _copy_identical(source: Path, destination: Path) -> None:
    """Make ``destination`` a copy of ``source`` with the same mtimes."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(source), str(destination)], check=True)


def _check_unchanged(
    source: Path, destination: Path, before: dict[str, tuple[int, int]]
) -> None:
    """Raise ``RunFailed`` and restore ``destination`` if a run changed it."""
    after = list_stats(destination)
    if after == before:
        return
    changed = sum(after.get(name) != stats for name, stats in before.items())
    added = len(after.keys() - before.keys())
    shutil.rmtree(destination)
    _copy_identical(source, destination)
    raise RunFailed(
        f"not a no-op: changed or removed {changed} files and added {added}"
    )


def _slug(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")


def _log_sample(sample: Sample, rounds: int) -> None:
    where = f"{sample.scenario} ({sample.dataset}) round {sample.round}/{rounds}"
    if sample.failure:
        logger.info("%s %s: not available: %s", where, sample.contender, sample.failure)
    elif sample.measurement:
        logger.info("%s %s: %.3f s", where, sample.contender, sample.measurement.wall)
