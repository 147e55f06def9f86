"""A large upload to S3 killed at 90% and resumed: journalq against rclone.

Run ``python -m benchmarks.parts_bench`` (``--quick`` for 256 MiB instead
of 1 GiB). It starts moto's S3 server on 127.0.0.1 behind a relay that
counts every byte the server receives (``tests/backends/relay.py``), and
runs in each round, as whole processes:

* ``journalq copy FILE s3://...`` uninterrupted;
* the same with SIGKILL sent once the server has received 90% of the
  file's bytes, then the same command again, which resumes the journaled
  multipart upload;
* ``rclone copyto FILE moto:...`` uninterrupted, with journalq's part size
  (16 MiB) and parts in flight (4);
* the same killed at 90% and run again, which starts the file over.

Each row gives the bytes the server received and the wall time (both runs
added up for a killed one), as medians over the rounds, and their ratios
to the same tool's uninterrupted run in the same round, and the multipart
uploads a case left unfinished in the bucket. journalq's targets
for the killed upload: at most 1.1 times the file's bytes and 1.2 times
the uninterrupted wall time.

moto keeps objects in memory and took 54 MB/s on the 2-core development
machine, so a round of 1 GiB moves about 5 GiB and takes minutes. Every object is
deleted after its run and checked before that: its size, and its MD5
against the source's (journalq's completed object has an MD5 ETag,
rclone's stores the MD5 in its metadata).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import logging
import os
import statistics
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from benchmarks.harness import Measurement, TimedProcess
from benchmarks.transfer_bench import JOURNALQ

# moto's server and the byte-counting relay are the test suite's helpers,
# so both start them the same way.
_TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(_TESTS), str(_TESTS / "backends")]
import servers  # noqa: E402
from relay import Relay  # noqa: E402

logger = logging.getLogger(__name__)

WORK_DIR: Final = Path(__file__).resolve().parent / "work" / "parts"
MIB: Final = 1024 * 1024
#: File sizes: (full run, quick run).
SIZES: Final = (1024 * MIB, 256 * MIB)
ROUNDS: Final = (1, 1)
#: Share of the file's bytes the server has received when the kill comes.
KILL_AT: Final = 0.9
#: Seconds one process may take. moto took 5 MiB parts at 54 MB/s on the
#: 2-core development machine, 20 s per GiB, and a machine 25 times slower
#: should still finish.
RUN_TIMEOUT: Final = 600.0
#: Seconds between two looks at the relay's count while a run is to be
#: killed. A part of 16 MiB at 54 MB/s takes 0.3 s, so the kill lands
#: within a part of 90%.
POLL_INTERVAL: Final = 0.01
#: journalq's defaults for a large file, given to rclone too.
PART_SIZE: Final = "16M"
PARTS_IN_FLIGHT: Final = "4"
#: Credentials moto accepts; they reach no real account.
KEY, SECRET = "bench-key", "bench-secret"

TARGETS: Final = {"bytes": 1.1, "wall": 1.2}


@dataclass(frozen=True)
class Run:
    """The cost and the leftovers of one tool's upload."""

    sent: int
    """Bytes the server received, over every run of the case."""
    wall: float
    """Wall seconds, over every run of the case."""
    unfinished: int
    """Multipart uploads left unfinished in the bucket (aborted afterwards)."""


class PartsBench:
    """moto, its relay, a bucket and the source file of one benchmark run."""

    def __init__(self, size: int, relay: Relay, endpoint: str) -> None:
        self.size = size
        self.relay = relay
        self.endpoint = endpoint
        self.bucket = f"parts-{uuid.uuid4().hex[:8]}"
        self.source = _source_file(size)
        self.md5 = _md5(self.source)
        self._fs = _s3(endpoint)
        self._fs.mkdir(self.bucket)

    def journalq(self, key: str, *, kill: bool) -> Run:
        queue = WORK_DIR / "queues" / uuid.uuid4().hex
        options = {"key": KEY, "secret": SECRET, "endpoint_url": self.endpoint}
        argv = [
            JOURNALQ,
            "copy",
            str(self.source),
            f"s3://{self.bucket}/{key}",
            "--queue",
            str(queue),
            "-q",
            *(
                argument
                for name, value in options.items()
                for argument in ("--destination-option", f"{name}={value}")
            ),
        ]
        run = self._upload(argv, kill=kill)
        return self._check(run, key, lambda head: head["ETag"].strip('"') == self.md5)

    def rclone(self, key: str, *, kill: bool) -> Run:
        argv = [
            "rclone",
            "copyto",
            str(self.source),
            f"moto:{self.bucket}/{key}",
            "--s3-chunk-size",
            PART_SIZE,
            "--s3-upload-concurrency",
            PARTS_IN_FLIGHT,
        ]
        run = self._upload(argv, kill=kill)
        return self._check(run, key, lambda head: _rclone_md5(head) == self.md5)

    def _upload(self, argv: list[str], *, kill: bool) -> Run:
        self.relay.reset()
        wall = 0.0
        if kill:
            wall += self._killed(argv).wall
        finished = self._timed(argv, kill=False)
        if finished.exit_code != 0:
            raise RuntimeError(f"{argv[0]} failed with status {finished.exit_code}")
        return Run(self.relay.sent, wall + finished.wall, 0)

    def _killed(self, argv: list[str]) -> Measurement:
        measurement = self._timed(argv, kill=True)
        if measurement.exit_code != -9:
            raise RuntimeError(
                f"{argv[0]} ended with status {measurement.exit_code} before "
                f"{KILL_AT:.0%} of the file was sent"
            )
        return measurement

    def _timed(self, argv: list[str], *, kill: bool) -> Measurement:
        log = WORK_DIR / "runs.log"
        process = TimedProcess(argv, log)
        threshold = self.relay.sent + KILL_AT * self.size
        waited = 0.0
        while waited < RUN_TIMEOUT:
            measurement = process.wait(POLL_INTERVAL)
            if measurement is not None:
                return measurement
            if kill and self.relay.sent >= threshold:
                return process.kill()
            waited += POLL_INTERVAL
        process.kill()
        raise TimeoutError(f"{argv[0]} ran longer than {RUN_TIMEOUT:g} s; see {log}")

    def _check(
        self, run: Run, key: str, matches: Callable[[dict[str, Any]], bool]
    ) -> Run:
        """Check the object's size and MD5, then free moto's memory.

        Returns ``run`` with the count of unfinished uploads, which are
        aborted, as the object is deleted.
        """
        head = self._fs.call_s3("head_object", Bucket=self.bucket, Key=key)
        self._fs.rm(f"{self.bucket}/{key}")
        if head["ContentLength"] != self.size or not matches(head):
            raise RuntimeError(
                f"s3://{self.bucket}/{key} differs from {self.source}: "
                f"{head['ContentLength']} bytes, ETag {head['ETag']}"
            )
        listing = self._fs.call_s3("list_multipart_uploads", Bucket=self.bucket)
        uploads = listing.get("Uploads", [])
        for upload in uploads:
            self._fs.call_s3(
                "abort_multipart_upload",
                Bucket=self.bucket,
                Key=upload["Key"],
                UploadId=upload["UploadId"],
            )
        return Run(run.sent, run.wall, len(uploads))


def main(quick: bool = False, rounds: int | None = None) -> list[dict[str, Any]]:
    """Run the rounds and return one row per tool and case."""
    index = 1 if quick else 0
    size = SIZES[index]
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    server = servers.moto_server(WORK_DIR)
    server.start()
    saved = dict(os.environ)
    try:
        with Relay(server.port) as relay:
            endpoint = f"http://{servers.HOST}:{relay.port}"
            os.environ.update(_rclone_environment(endpoint))
            # The endpoint is plain HTTP, and rclone 1.60 does not start
            # when AWS_CA_BUNDLE is set ("unable to load custom CA bundle").
            os.environ.pop("AWS_CA_BUNDLE", None)
            bench = PartsBench(size, relay, endpoint)
            results = _rounds(bench, rounds or ROUNDS[index])
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
    return _rows(results, size)


def _rounds(bench: PartsBench, rounds: int) -> dict[str, list[Run]]:
    """Run every case once per round, interleaved."""
    cases = {
        "journalq": lambda key: bench.journalq(key, kill=False),
        "journalq killed": lambda key: bench.journalq(key, kill=True),
        "rclone": lambda key: bench.rclone(key, kill=False),
        "rclone killed": lambda key: bench.rclone(key, kill=True),
    }
    results: dict[str, list[Run]] = {name: [] for name in cases}
    for number in range(rounds):
        for name, case in cases.items():
            run = case(f"{name.replace(' ', '-')}-{number}.bin")
            logger.info(
                "%s, round %d: %.1f MiB sent in %.1f s",
                name,
                number + 1,
                run.sent / MIB,
                run.wall,
            )
            results[name].append(run)
    return results


def _rows(results: dict[str, list[Run]], size: int) -> list[dict[str, Any]]:
    labels = {
        "journalq": "journalq copy, uninterrupted",
        "journalq killed": "journalq copy, killed at 90% and run again",
        "rclone": "rclone copyto, uninterrupted",
        "rclone killed": "rclone copyto, killed at 90% and run again",
    }
    rows = []
    for name, label in labels.items():
        runs = results[name]
        baseline = results[name.removesuffix(" killed")]
        bytes_ratio = statistics.median(run.sent / size for run in runs)
        wall_ratio = statistics.median(
            run.wall / base.wall for run, base in zip(runs, baseline, strict=True)
        )
        rows.append(
            {
                "row": label,
                "file MiB": size // MIB,
                "MiB received by the server": round(
                    statistics.median(run.sent for run in runs) / MIB, 1
                ),
                "bytes / file size": round(bytes_ratio, 3),
                "wall s": round(statistics.median(run.wall for run in runs), 2),
                "wall / uninterrupted": round(wall_ratio, 3),
                "unfinished uploads left": max(run.unfinished for run in runs),
                "target": _verdict(name, bytes_ratio, wall_ratio),
            }
        )
    return rows


def _verdict(name: str, bytes_ratio: float, wall_ratio: float) -> str:
    if name != "journalq killed":
        return "-"
    met = bytes_ratio <= TARGETS["bytes"] and wall_ratio <= TARGETS["wall"]
    limits = f"bytes <= {TARGETS['bytes']}x, wall <= {TARGETS['wall']}x"
    return f"{limits}: {'pass' if met else 'fail'}"


# Setup -----------------------------------------------------------------------


def _source_file(size: int) -> Path:
    """Return a file of ``size`` random bytes, written once and reused."""
    path = WORK_DIR / f"source-{size // MIB}M.bin"
    if path.exists() and path.stat().st_size == size:
        return path
    with open(path, "wb") as file:
        for _ in range(size // (64 * MIB)):
            file.write(os.urandom(64 * MIB))
        file.write(os.urandom(size % (64 * MIB)))
    return path


def _md5(path: Path) -> str:
    checksum = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        while block := file.read(16 * MIB):
            checksum.update(block)
    return checksum.hexdigest()


def _s3(endpoint: str) -> Any:
    import fsspec

    return fsspec.filesystem(
        "s3", key=KEY, secret=SECRET, endpoint_url=endpoint, skip_instance_cache=True
    )


def _rclone_environment(endpoint: str) -> dict[str, str]:
    """Return the environment that configures rclone's remote ``moto``."""
    return {
        "RCLONE_CONFIG_MOTO_TYPE": "s3",
        "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
        "RCLONE_CONFIG_MOTO_ENDPOINT": endpoint,
        "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": KEY,
        "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": SECRET,
    }


def _rclone_md5(head: dict[str, Any]) -> str | None:
    """Return the MD5 rclone stored in an object's metadata, as hex."""
    value = (head.get("Metadata") or {}).get("md5chksum")
    return base64.b64decode(value).hex() if value else None


def _parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.parts_bench",
        description="Upload a large file to moto's S3, killed at 90% and resumed.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="upload 256 MiB instead of 1 GiB"
    )
    parser.add_argument("--rounds", type=int, help="rounds of every case (default 1)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    options = _parse_arguments(None)
    for row in main(options.quick, options.rounds):
        print(row)
