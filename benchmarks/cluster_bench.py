"""Cluster: the Dask executor against the thread pool, and the journal's ceiling.

Run ``python -m benchmarks.cluster_bench`` (``--quick`` for smaller trees
and fewer rounds). It starts moto's S3 server and a
``distributed.LocalCluster`` of two worker processes with one thread each
on 127.0.0.1, then times ``StorageQueue.run`` in this process, the sync's
listing excluded, for each scenario:

* small local->local and small local->S3: many files of 4 KiB, run on the
  thread pool (which forks copy processes for local disks) and on the
  cluster. The overhead per file is the cluster's time less the thread
  pool's, divided by the files, taken within each round.
* large local->local: a few files of 64 MiB, as MiB/s. On the cluster each
  file is synced on its own (a worker cannot rely on the coordinator's
  filesystem sync); the thread pool syncs groups.
* journal ceiling: helpers that return each file's outcome at once without
  copying anything, so the run is only the coordinator handing out batches
  and journaling completions. Its completions/s and records/s bound what a
  cluster of any size can finish through one coordinator.

On one 2-core machine the workers, moto and the coordinator share the
cores, so the cluster rows measure overhead, not how a real cluster scales.
Every run gets a fresh queue and destination, the modes alternate within
each round, and the rows give medians over the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import distributed
import fsspec
import msgspec

from benchmarks.scale_bench import render_table
from journalq import StorageQueue, copier
from journalq.cluster import MAX_HELPERS, ClusterHelpers
from journalq.journal import scan
from journalq.records import decode_batch
from journalq.store import JOURNAL_DIR

# moto's server is started by the test suite's helper, so both start it
# the same way.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import servers

WORK_DIR = Path(__file__).resolve().parent / "work" / "cluster"
MIB = 1024 * 1024
SMALL_SIZE = 4096
LARGE_SIZE = 64 * MIB
#: Files per tree: (full run, quick run).
SMALL_LOCAL_FILES = (3_000, 1_000)
SMALL_S3_FILES = (400, 200)
LARGE_FILES = (8, 3)
CEILING_FILES = (20_000, 5_000)
#: Helpers of the ceiling runs: the 2 per thread of this cluster, and
#: the most a run starts (:data:`journalq.cluster.MAX_HELPERS`).
CEILING_HELPERS = (4, MAX_HELPERS)
ROUNDS = (3, 1)
#: A plausible digest for the ceiling's outcomes; nothing reads it back.
FAKE_DIGEST = "xxh128:" + "0" * 32

Helpers = Callable[[Any, Any], list[copier.Helper]]


@dataclass(frozen=True)
class Scenario:
    """One tree and one destination kind, timed on both executors."""

    name: str
    files: int
    size: int
    destination: Callable[[str], tuple[str, dict[str, Any]]]


class ClusterBench:
    """The servers, the cluster and the work folder of one benchmark run."""

    def __init__(self, root: Path, s3_options: dict[str, Any], client: Any) -> None:
        self.root = root
        self.s3_options = s3_options
        self.client = client
        self.bucket = f"bench-{uuid.uuid4().hex[:8]}"
        fsspec.filesystem("s3", **s3_options).mkdir(self.bucket)

    def local(self, name: str) -> tuple[str, dict[str, Any]]:
        return str(self.root / "destinations" / name), {}

    def s3(self, name: str) -> tuple[str, dict[str, Any]]:
        return f"s3://{self.bucket}/{name}", self.s3_options

    def tree(self, files: int, size: int) -> Path:
        """Write ``files`` files of ``size`` random bytes in 10 folders, once."""
        top = self.root / f"source-{files}x{size}"
        if top.exists():
            return top
        block = os.urandom(size)
        for index in range(files):
            path = top / f"d{index % 10}" / f"f{index:06d}"
            path.parent.mkdir(parents=True, exist_ok=True)
            # The first 8 bytes differ, so no two files are identical.
            path.write_bytes(index.to_bytes(8, "little") + block[8:])
        return top

    def time_run(
        self, scenario: Scenario, label: str, helpers: Helpers | None
    ) -> tuple[float, int, StorageQueue]:
        """Sync the scenario's tree into a new destination and time the run.

        Returns the seconds, the records the run journaled and the queue.
        ``StorageQueue.run(client=c)`` passes ``ClusterHelpers(c)`` as
        ``helpers`` the same way; the other factories have no public option.
        """
        source = self.tree(scenario.files, scenario.size)
        destination, options = scenario.destination(f"{label}-{uuid.uuid4().hex[:8]}")
        queue = self.root / "queues" / uuid.uuid4().hex
        storage = StorageQueue(
            source, destination, name=queue, destination_options=options
        )
        storage.sync(str(source), destination)
        listed = _journal_records(queue)
        started = time.perf_counter()
        summary = storage._run(helpers=helpers)
        elapsed = time.perf_counter() - started
        if summary.copied != scenario.files or not summary.ok:
            raise RuntimeError(f"{scenario.name} on {label} went wrong: {summary}")
        return elapsed, _journal_records(queue) - listed, storage

    def compare(
        self, scenario: Scenario, modes: dict[str, Helpers | None], rounds: int
    ) -> list[dict[str, Any]]:
        """Time the scenario in each mode, interleaved; threads come first."""
        times: dict[str, list[float]] = {label: [] for label in modes}
        for _ in range(rounds):
            for label, helpers in modes.items():
                elapsed, _, storage = self.time_run(scenario, label, helpers)
                storage.close()
                times[label].append(elapsed)
        baseline = times["threads"]
        rows = []
        for label, values in times.items():
            overheads = [
                (seconds - reference) / scenario.files * 1e6
                for seconds, reference in zip(values, baseline, strict=True)
            ]
            rows.append(_row(scenario, label, values, statistics.median(overheads)))
        return rows

    def ceiling(self, files: int, count: int) -> dict[str, Any]:
        """Journal completions as fast as ``count`` instant helpers return them."""
        scenario = Scenario("journal ceiling", files, SMALL_SIZE, self.local)

        def factory(source: Any, destination: Any) -> list[copier.Helper]:
            return [InstantHelper() for _ in range(count)]

        elapsed, records, storage = self.time_run(scenario, "ceiling", factory)
        storage.close()
        return {
            "scenario": scenario.name,
            "executor": f"{count} instant helpers",
            "files": files,
            "seconds": round(elapsed, 3),
            "files/s": round(files / elapsed),
            "MiB/s": "",
            "overhead us/file": "",
            "journal records/s": round(records / elapsed),
        }


class InstantHelper:
    """A helper that copies nothing and returns every outcome at once."""

    broken = False
    max_bytes: int | None = None
    # As a cluster's helpers do, so the coordinator's journaling is the same.
    journals_start = True

    def __init__(self) -> None:
        self._batches: list[list[copier.Outcome]] = []

    def send(self, tasks: Sequence[copier.Task]) -> None:
        self._batches.append(
            [(task.size, FAKE_DIGEST, task.mtime_ns, True, None) for task in tasks]
        )

    def receive(self) -> list[copier.Outcome]:
        return self._batches.pop(0)

    def close(self) -> None:
        self._batches.clear()


def _row(
    scenario: Scenario, label: str, values: list[float], overhead_us: float
) -> dict[str, Any]:
    seconds = statistics.median(values)
    return {
        "scenario": scenario.name,
        "executor": label,
        "files": scenario.files,
        "seconds": round(seconds, 3),
        "files/s": round(scenario.files / seconds),
        "MiB/s": round(scenario.files * scenario.size / MIB / seconds, 1),
        "overhead us/file": "" if label == "threads" else round(overhead_us),
        "journal records/s": "",
    }


def _journal_records(queue: Path) -> int:
    """Count the records in the queue's journal, whatever run wrote them."""
    header = msgspec.msgpack.decode((queue / "FORMAT").read_bytes())
    queue_id = bytes.fromhex(header["queue_id"])
    result = scan(queue / JOURNAL_DIR, queue_id)
    return sum(len(decode_batch(frame.payload)) for frame in result.frames)


def main(quick: bool = False) -> list[dict[str, Any]]:
    """Start moto and two local clusters, run every scenario, return the rows."""
    pick = 1 if quick else 0
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK_DIR) as temporary:
        root = Path(temporary)
        server = servers.moto_server(root)
        server.start()
        try:
            with _client(1) as client, _client(4) as wide:
                options = {
                    "key": "bench",
                    "secret": "bench-secret",
                    "endpoint_url": f"http://{servers.HOST}:{server.port}",
                }
                bench = ClusterBench(root, options, client)
                return _run_all(bench, wide, pick)
        finally:
            server.stop()


@contextlib.contextmanager
def _client(threads: int) -> Iterator[Any]:
    """Yield a client of a new cluster: 2 worker processes of ``threads``."""
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=threads,
            host=servers.HOST,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": f"{servers.HOST}:0"},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _run_all(bench: ClusterBench, wide: Any, pick: int) -> list[dict[str, Any]]:
    rounds = ROUNDS[pick]
    cluster = ClusterHelpers(bench.client)
    small_local = Scenario(
        "small local->local", SMALL_LOCAL_FILES[pick], SMALL_SIZE, bench.local
    )
    small_s3 = Scenario("small local->S3", SMALL_S3_FILES[pick], SMALL_SIZE, bench.s3)
    large = Scenario("large local->local", LARGE_FILES[pick], LARGE_SIZE, bench.local)
    modes: list[tuple[Scenario, dict[str, Helpers | None]]] = [
        (
            small_local,
            {
                "threads": None,
                "cluster": cluster,
                "cluster, 1 helper per thread": ClusterHelpers(
                    bench.client, per_thread=1
                ),
            },
        ),
        (
            small_s3,
            {
                "threads": None,
                "cluster": cluster,
                "cluster, 4 threads per worker": ClusterHelpers(wide),
            },
        ),
        (large, {"threads": None, "cluster": cluster}),
    ]
    rows: list[dict[str, Any]] = []
    for scenario, scenario_modes in modes:
        rows += bench.compare(scenario, scenario_modes, rounds)
    for count in CEILING_HELPERS:
        rows.append(bench.ceiling(CEILING_FILES[pick], count))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller trees and one round"
    )
    print(render_table(main(quick=parser.parse_args().quick)))
