"""SIGKILL the workload at random moments, restart it, and let it finish.

Each restart is the next round of the workload (see survival_child.py): it
recovers what the killed process left, adds more, cancels one copy, takes a
snapshot every other round and runs. Files are added to the source tree
before each round, so every round has copies to make. After every kill the
queue must fold without corruption and keep every acknowledged record.
After the last, unkilled round every invariant of a finished queue must
hold.

A kill leaves the page cache intact, so this checks the order of the steps,
not where the syncs are; the power-loss tests check those.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest
from kill_helpers import KillTiming, run_and_kill
from survival_helpers import (
    MAX_ROUNDS,
    SOAK,
    Acknowledged,
    check_acknowledged,
    check_finished_queue,
    child_command,
    grow_source,
    make_source,
    recovered_state,
    run_child,
)

#: Kills per run that must end a live round: 12 in CI (about 20 s on 2
#: cores), 300 in the soak run.
CI_KILLS = 12
SOAK_KILLS = 300
SEED = 90_210
#: Range of the delay between starting a round and killing it, in seconds.
#: Start-up and recovery take about 0.4 s on the 2-core test machine and a
#: round about 1 s more, so the kills land in every phase of a round.
KILL_DELAY = (0.05, 1.4)
#: Source files added before each round.
NEW_FILES = 150
#: Rounds allowed per kill that must land; the rest may finish first.
MAX_ROUNDS_PER_KILL = 2


@pytest.fixture
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workload's source; each test changes it, so the scope is a test's."""
    return make_source(tmp_path_factory.mktemp("survival-kill") / "source")


def _kill_and_finish(source: Path, tmp_path: Path, kills: int) -> None:
    destination = tmp_path / "destination"
    queue = tmp_path / "queue"
    rng = random.Random(SEED + kills)
    timing = KillTiming(*KILL_DELAY, rng)
    acknowledged = Acknowledged()
    landed = 0
    number = 0

    # A round that finished before its kill is kept, and the next one is
    # killed sooner, until ``kills`` rounds were killed while running.
    while landed < kills:
        assert number < min(MAX_ROUNDS_PER_KILL * kills, MAX_ROUNDS - 1), (
            f"only {landed} of {number} rounds were killed while running"
        )
        grow_source(source, number, NEW_FILES, rng)
        command = child_command(source, destination, queue, number)
        result = run_and_kill(command, timing.next_delay())
        timing.record(result)
        landed += result.landed
        number += 1
        acknowledged.read(result.stdout)
        assert result.returncode in (0, -signal.SIGKILL), result.stderr
        assert "Corruption" not in result.stderr
        state = recovered_state(queue)
        if state is not None:
            check_acknowledged(state, acknowledged)

    grow_source(source, number, NEW_FILES, rng)
    final = run_child(child_command(source, destination, queue, number))
    acknowledged.read(final.stdout)

    assert final.returncode == 0, final.stderr
    assert acknowledged.finished
    check_finished_queue(destination, queue, acknowledged)


def test_random_kills_lose_nothing(source: Path, tmp_path: Path) -> None:
    _kill_and_finish(source, tmp_path, CI_KILLS)


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="set JOURNALQ_SOAK=1 to run the soak variant")
def test_random_kills_soak(source: Path, tmp_path: Path) -> None:
    _kill_and_finish(source, tmp_path, SOAK_KILLS)
