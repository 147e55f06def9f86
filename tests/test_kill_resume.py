"""SIGKILL `journalq sync` at random moments and resume it with the same command.

After every kill the same command runs again; after the last one it runs to
its end. Then the destination must be byte-identical to the source, the
journal must hold at most one terminal record per action, no temporary file
may remain, and one more run must copy nothing.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from kill_helpers import KillTiming, run_and_kill

from journalq import snapshot
from journalq.journal import scan
from journalq.records import Canceled, Completed, Failed, decode_batch
from journalq.replay import TERMINAL, decode_state
from journalq.store import JOURNAL_DIR, read_state

SOAK = os.environ.get("JOURNALQ_SOAK") == "1"
#: Kills per test that must end a live run: 20 in CI (the test takes about
#: 25 s on 2 cores), 200 in the soak run.
CI_KILLS = 20
SOAK_KILLS = 200
#: Files of the generated tree, in 5 x 4 nested folders.
FILES = 4_000
SEED = 1_729
#: Range of the delay between starting a run and killing it, in seconds.
#: Starting the interpreter and importing journalq takes about 0.4 s on the
#: 2-core test machine, the first full sync of the tree about 1.5 s and a
#: re-check of the finished tree about 0.6 s, so the kills land in
#: start-up, tree expansion, copying and re-checking.
KILL_DELAY = (0.05, 1.0)
#: Runs allowed per kill that must land; the rest may finish before their kill.
MAX_RUNS_PER_KILL = 3
#: Name pattern of journalq's temporary copies, checked on their own.
TEMPORARY = ".*.jq-*.tmp"


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree of 4,000 files of mixed sizes (zero bytes to 256 KiB), made once."""
    root = tmp_path_factory.mktemp("kill-resume") / "source"
    rng = random.Random(SEED)
    for index in range(FILES):
        folder = root / f"group{index % 5}" / f"part{index % 4}"
        if index % 50 == 0:
            folder = folder / "deep" / "deeper"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file{index:05d}.bin").write_bytes(rng.randbytes(_size(rng)))
    return root


def _size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.05:
        return 0
    if roll < 0.85:
        return rng.randrange(1, 4096)
    if roll < 0.98:
        return rng.randrange(4096, 64 * 1024)
    return rng.randrange(64 * 1024, 256 * 1024)


def _sync_command(source: Path, destination: Path, queue: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "journalq",
        "sync",
        str(source),
        str(destination),
        "--queue",
        str(queue),
        "-q",
    ]


def _kill_repeatedly(command: list[str], kills: int, rng: random.Random) -> None:
    """Run ``command`` until ``kills`` of its runs were SIGKILLed while running.

    A run that finished before its kill does not count, and the next kill
    comes sooner (see :class:`KillTiming`).
    """
    timing = KillTiming(*KILL_DELAY, rng)
    landed = 0
    runs = 0
    while landed < kills:
        runs += 1
        assert runs <= MAX_RUNS_PER_KILL * kills, (
            f"only {landed} of {runs - 1} runs were killed while running"
        )
        result = run_and_kill(command, timing.next_delay())
        assert result.landed or result.returncode == 0, result.stderr
        timing.record(result)
        landed += result.landed


def _tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and not path.match(TEMPORARY)
    }


def _queue_id(queue: Path) -> bytes:
    header = msgspec.msgpack.decode((queue / "FORMAT").read_bytes())
    return bytes.fromhex(header["queue_id"])


def _terminal_records(queue: Path) -> Counter[str]:
    """Count terminal records per action: the snapshot's, then the journal's."""
    queue_id = _queue_id(queue)
    counts: Counter[str] = Counter()
    after_lsn = 0
    loaded = snapshot.load_latest(queue / snapshot.SNAPSHOT_DIR, queue_id)
    if loaded is not None:
        info, payload = loaded
        after_lsn = info.last_lsn
        for action in decode_state(payload).actions.values():
            if action.status in TERMINAL:
                counts[action.action_id] += 1
    result = scan(queue / JOURNAL_DIR, queue_id, after_lsn=after_lsn)
    for frame in result.frames:
        for offset, record in enumerate(decode_batch(frame.payload)):
            if frame.first_lsn + offset <= after_lsn:
                continue
            if _is_terminal(record):
                counts[record.action_id] += 1
    return counts


def _is_terminal(record: object) -> bool:
    if isinstance(record, Completed | Canceled):
        return True
    return isinstance(record, Failed) and not record.retryable


def _check_kill_and_resume(source: Path, tmp_path: Path, kills: int) -> None:
    destination = tmp_path / "destination"
    queue = tmp_path / "queue"
    command = _sync_command(source, destination, queue)

    _kill_repeatedly(command, kills, random.Random(SEED + kills))
    final = subprocess.run(command, capture_output=True, text=True, check=False)
    rerun = subprocess.run(
        [*command, "--json"], capture_output=True, text=True, check=False
    )

    assert final.returncode == 0, final.stderr
    assert _tree(destination) == _tree(source)
    assert list(destination.rglob(TEMPORARY)) == []

    counts = read_state(queue).status_counts()
    assert counts["waiting"] == 0
    assert counts["inprogress"] == 0
    assert counts["failed"] == 0
    repeated = {key: n for key, n in _terminal_records(queue).items() if n > 1}
    assert repeated == {}

    assert rerun.returncode == 0, rerun.stderr
    summary = msgspec.json.decode(rerun.stdout.splitlines()[-1])
    assert summary["event"] == "summary"
    assert summary["copied"] == 0
    assert summary["bytes"] == 0


def test_kill_resume_sync(source_tree: Path, tmp_path: Path) -> None:
    _check_kill_and_resume(source_tree, tmp_path, CI_KILLS)


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="set JOURNALQ_SOAK=1 to run the soak variant")
def test_kill_resume_sync_soak(source_tree: Path, tmp_path: Path) -> None:
    _check_kill_and_resume(source_tree, tmp_path, SOAK_KILLS)
