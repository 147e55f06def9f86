"""SIGKILL `journalq sync` to S3 at random moments, then let it finish.

The destination is a bucket of moto's S3 server on 127.0.0.1. After the
kills and a last, unkilled run, every object must have its source file's
bytes, no other object and no unfinished multipart upload may remain, and
one more run must copy nothing.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest
from kill_helpers import KillTiming, run_and_kill
from survival_helpers import SOAK

#: Kills per run that must end a live run: 6 in CI (about 20 s with the
#: server's start), 60 in the soak run.
CI_KILLS = 6
SOAK_KILLS = 60
#: Runs allowed per kill that must land; the rest may finish first.
MAX_RUNS_PER_KILL = 3
FILES = 80
SEED = 4_242
#: Range of the delay before a kill, in seconds: start-up with s3fs
#: imported takes about 0.8 s on the 2-core test machine and a full sync
#: of the tree about 1.5 s more.
KILL_DELAY = (0.3, 2.0)
BUCKET = "survival"


@pytest.fixture(scope="module")
def s3(moto_options: dict[str, str]) -> dict[str, str]:
    """Storage options of the moto server, which has an empty bucket now."""
    fsspec.filesystem("s3", **moto_options).mkdir(BUCKET)
    return moto_options


@pytest.fixture
def source(tmp_path: Path) -> Path:
    rng = random.Random(SEED)
    root = tmp_path / "source"
    for index in range(FILES):
        path = root / f"d{index % 6}" / f"f{index:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(0, 20_000)))
    return root


def _command(source: Path, prefix: str, queue: Path, s3: dict[str, str]) -> list[str]:
    options = [
        argument
        for name, value in s3.items()
        for argument in ("--destination-option", f"{name}={value}")
    ]
    return [
        *(sys.executable, "-m", "journalq", "sync", str(source)),
        *(f"s3://{BUCKET}/{prefix}", "--queue", str(queue), "--json", *options),
    ]


def _kill_and_finish(source: Path, tmp_path: Path, s3: dict[str, str], kills: int):
    prefix = tmp_path.name
    command = _command(source, prefix, tmp_path / "queue", s3)
    timing = KillTiming(*KILL_DELAY, random.Random(SEED + kills))
    landed = 0
    runs = 0
    # A run that finished before its kill does not count, and the next kill
    # comes sooner, until ``kills`` runs were killed while running.
    while landed < kills:
        assert runs < MAX_RUNS_PER_KILL * kills, (
            f"only {landed} of {runs} runs were killed while running"
        )
        result = run_and_kill(command, timing.next_delay())
        timing.record(result)
        runs += 1
        landed += result.landed
        assert result.landed or result.returncode == 0, result.stderr

    final = subprocess.run(command, capture_output=True, text=True, check=False)
    rerun = subprocess.run(command, capture_output=True, text=True, check=False)
    fs = fsspec.filesystem("s3", **s3)
    fs.invalidate_cache()
    objects = {
        key.removeprefix(f"{BUCKET}/{prefix}/"): fs.cat_file(key)
        for key in fs.find(f"{BUCKET}/{prefix}")
    }
    uploads = fs.call_s3("list_multipart_uploads", Bucket=BUCKET).get("Uploads", [])

    assert final.returncode == 0, final.stderr
    expected = {
        path.relative_to(source).as_posix(): path.read_bytes()
        for path in source.rglob("*")
        if path.is_file()
    }
    assert objects.keys() == expected.keys()
    assert objects == expected
    assert uploads == []
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout.splitlines()[-1])
    assert summary["copied"] == 0


def test_s3_kills_lose_nothing(source: Path, tmp_path: Path, s3: dict[str, str]):
    _kill_and_finish(source, tmp_path, s3, CI_KILLS)


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="set JOURNALQ_SOAK=1 to run the soak variant")
def test_s3_kills_soak(source: Path, tmp_path: Path, s3: dict[str, str]) -> None:
    _kill_and_finish(source, tmp_path, s3, SOAK_KILLS)
