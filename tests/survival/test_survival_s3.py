"""SIGKILL `journalq sync --json` to S3 at chosen moments, then let it finish.

The destination is a bucket of moto's S3 server on 127.0.0.1. Each round
starts the sync and kills it: after a random delay (in start-up or
listing), or just after it printed the k-th ``completed`` or ``skipped``
line. A round that ends before its kill is not counted. A few files are
added to the source, and the round is tried again with an earlier kill,
so every kill hits a live process.

The JSON lines are the acknowledgements. An ``id`` in any line is an
action that must stay in the queue, and a ``completed`` or ``skipped`` line
is a completion that must survive the kill. After every kill the queue must
fold without corruption, keep every acknowledged record, have at most one
terminal record per action, and every copy it calls completed must have
its source's bytes in the bucket. After a last, unkilled run every object
must have its source file's bytes, no other object and no unfinished
multipart upload may remain, and one more run must copy nothing.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pytest
import servers
from survival_helpers import (
    QUEUE_TEMPORARY,
    SOAK,
    Acknowledged,
    check_acknowledged,
    check_completed_copies,
    check_finished_journal,
    recovered_state,
    terminal_records,
)

#: Kills per run: 6 in CI (11 s with the server's start on the 2-core test
#: machine), 60 in the soak run (170 s there).
CI_KILLS = 6
SOAK_KILLS = 60
FILES = 80
#: Source files added after a round that finished before its kill, so that
#: the next round has copies to make.
NEW_FILES = 8
SEED = 4_242
#: Share of the kills timed by a delay instead of by the JSON lines.
TIMED_SHARE = 0.3
#: Range of the delay of a timed kill, in seconds: start-up with s3fs
#: imported took about 0.8 s on the 2-core test machine, and the sync's
#: listing follows it.
KILL_DELAY = (0.1, 1.2)
#: Range of k for a kill after the k-th completion. In CI the tree of FILES
#: files is never finished before the last kill.
KILL_AFTER = (1, 12)
#: Rounds a kill may take: each round that ends first halves the trigger.
KILL_TRIES = 6
BUCKET = "survival"
KILLED = -9


@pytest.fixture(scope="module")
def s3(s3_server: servers.Server) -> dict[str, str]:
    """Storage options of the moto server, which has an empty bucket now."""
    options = servers.s3_options(s3_server)
    fsspec.filesystem("s3", **options).mkdir(BUCKET)
    return options


@pytest.fixture
def source(tmp_path: Path) -> Path:
    rng = random.Random(SEED)
    root = tmp_path / "source"
    for index in range(FILES):
        path = root / f"d{index % 6}" / f"f{index:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(0, 20_000)))
    return root


def _grow(source: Path, number: int, rng: random.Random) -> None:
    folder = source / "new" / str(number)
    folder.mkdir(parents=True)
    for index in range(NEW_FILES):
        (folder / f"g{index:02d}.bin").write_bytes(
            rng.randbytes(rng.randrange(0, 9_000))
        )


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


@dataclass
class Trigger:
    """When a round is killed: after ``delay`` seconds, or after ``completions``."""

    delay: float | None = None
    completions: int | None = None

    def earlier(self) -> Trigger:
        """Return the trigger of the next try, after a round ended first."""
        if self.delay is not None:
            return Trigger(delay=self.delay / 2)
        assert self.completions is not None
        return Trigger(completions=max(1, self.completions // 2))


def _draw(rng: random.Random) -> Trigger:
    if rng.random() < TIMED_SHARE:
        return Trigger(delay=rng.uniform(*KILL_DELAY))
    return Trigger(completions=rng.randint(*KILL_AFTER))


def _read_lines(output: str, acknowledged: Acknowledged) -> None:
    """Take the acknowledgements of JSON lines, except a last line cut short."""
    lines = output.split("\n")
    for line in lines[:-1]:
        event = json.loads(line)
        if event.get("id"):
            acknowledged.adds.add(event["id"])
        if event["event"] in ("completed", "skipped"):
            acknowledged.completions.add(event["id"])


def _kill_round(
    command: list[str], trigger: Trigger, acknowledged: Acknowledged, stderr: Path
) -> int:
    """Run one round until ``trigger``, SIGKILL it, return its exit status.

    Every JSON line the round printed before it died is acknowledged, the
    lines read after the kill included.
    """
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, text=True
        )
        assert process.stdout is not None
        if trigger.delay is not None:
            try:
                output, _ = process.communicate(timeout=trigger.delay)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
            _read_lines(output, acknowledged)
            return process.returncode
        seen = 0
        read = []
        for line in process.stdout:
            read.append(line)
            event = json.loads(line)
            seen += event["event"] in ("completed", "skipped")
            if seen >= trigger.completions:
                process.kill()
                break
        # The rest from the pipe object, which has the lines the loop
        # buffered but not yet returned.
        read.append(process.stdout.read())
        process.wait()
        _read_lines("".join(read), acknowledged)
        return process.returncode


def _object_keys(fs: fsspec.AbstractFileSystem, prefix: str) -> dict[str, str]:
    """Return the key of every object under the prefix, by its source path."""
    fs.invalidate_cache()
    top = f"{BUCKET}/{prefix}"
    return {key.removeprefix(f"{top}/"): key for key in fs.find(top)}


def _reader(fs: fsspec.AbstractFileSystem) -> Callable[[str], bytes | None]:
    """Return a reader of objects on ``fs`` for ``check_completed_copies``."""
    fs.invalidate_cache()

    def read(path: str) -> bytes | None:
        try:
            return fs.cat_file(path)
        except FileNotFoundError:
            return None

    return read


def _check_after_kill(
    queue: Path, acknowledged: Acknowledged, fs: fsspec.AbstractFileSystem
) -> None:
    state = recovered_state(queue)
    if state is None:
        assert acknowledged.adds == set(), "ids printed before the queue existed"
        return
    check_acknowledged(state, acknowledged)
    repeated = {key: n for key, n in terminal_records(queue).items() if n > 1}
    assert repeated == {}, f"actions with several terminal records: {repeated}"
    check_completed_copies(state, _reader(fs))


def _kill_and_finish(source: Path, tmp_path: Path, s3: dict[str, str], kills: int):
    prefix = tmp_path.name
    queue = tmp_path / "queue"
    command = _command(source, prefix, queue, s3)
    fs = fsspec.filesystem("s3", **s3)
    rng = random.Random(SEED + kills)
    acknowledged = Acknowledged()
    landed = 0
    rounds = 0

    for number in range(kills):
        trigger = _draw(rng)
        for _ in range(KILL_TRIES):
            stderr = tmp_path / f"stderr-{rounds}.txt"
            status = _kill_round(command, trigger, acknowledged, stderr)
            rounds += 1
            assert status in (0, KILLED), stderr.read_text()
            assert "Corruption" not in stderr.read_text()
            _check_after_kill(queue, acknowledged, fs)
            if status == KILLED:
                landed += 1
                break
            # The sync finished, so the next round lists the source again
            # and copies what is new.
            _grow(source, rounds, rng)
            trigger = trigger.earlier()
        assert landed == number + 1, f"kill {number} never found the sync running"

    final = subprocess.run(command, capture_output=True, text=True, check=False)
    _read_lines(final.stdout, acknowledged)
    rerun = subprocess.run(command, capture_output=True, text=True, check=False)
    objects = {
        relpath: fs.cat_file(key) for relpath, key in _object_keys(fs, prefix).items()
    }
    uploads = fs.call_s3("list_multipart_uploads", Bucket=BUCKET).get("Uploads", [])

    assert landed == kills
    assert final.returncode == 0, final.stderr
    expected = {
        path.relative_to(source).as_posix(): path.read_bytes()
        for path in source.rglob("*")
        if path.is_file()
    }
    assert objects.keys() == expected.keys()
    assert objects == expected
    assert uploads == []
    check_finished_journal(queue, acknowledged, _reader(fs))
    assert list(queue.rglob(QUEUE_TEMPORARY)) == []
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout.splitlines()[-1])
    assert summary["copied"] == 0
    assert summary["bytes"] == 0


def test_s3_kills_lose_nothing(source: Path, tmp_path: Path, s3: dict[str, str]):
    _kill_and_finish(source, tmp_path, s3, CI_KILLS)


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="set JOURNALQ_SOAK=1 to run the soak variant")
def test_s3_kills_soak(source: Path, tmp_path: Path, s3: dict[str, str]) -> None:
    _kill_and_finish(source, tmp_path, s3, SOAK_KILLS)
