"""Cut the power at every sync of the workload, then recover and finish.

The workload's two rounds run in this process on a :class:`PowerLoss`
layer. For each k, a fresh queue and destination run until the k-th sync,
where the power fails. The layer then rewrites the disk as a machine would
find it after the cut: entries not synced in their directory are gone, and
unsynced file bytes are dropped or turned into garbage. Recovery must not
report corruption, every acknowledged record must be there (acknowledged
means synced before the cut), every completed copy and list result must be
intact, and a last round must finish with every invariant.

Local copies are made durable in groups by one filesystem sync, which
``journalq.transfer.sync_filesystem`` issues through
:data:`journalq.durable.ops`. The main tests also patch it to call the
layer's ``syncfs`` directly (the bridge), and one test runs without the
patch to show the real path reaches the layer.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from powerloss import TAIL_MODES, PowerCut, PowerLoss
from survival_child import run_round
from survival_helpers import (
    SOAK,
    Acknowledged,
    check_acknowledged,
    check_completed_copies,
    check_completed_directories,
    check_completed_results,
    check_finished_queue,
    make_source,
    recovered_state,
)

from journalq import StorageQueue, durable, transfer

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="the layer reads /proc/self/fd"
)

#: Files in the tree: enough for more than one copy per group sync, few
#: enough that all the cuts of one tail mode take about 15 s on 2 cores.
TREE_FILES = 24
ROUNDS = 2
#: Tail modes every CI run tries at every sync. The soak tries all of them
#: with several seeds.
CI_TAILS = ("drop", "garbage")
SOAK_SEEDS = range(5)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("survival-powerloss")
    return make_source(root / "source", TREE_FILES)


@pytest.fixture(scope="module")
def sync_count(source: Path, tmp_path_factory: pytest.TempPathFactory) -> int:
    """Syncs the workload issues when the power never fails."""
    disk = tmp_path_factory.mktemp("uncut")
    layer, _ = _run_until_cut(source, disk, None, "drop", seed=0)
    # Opening, two rounds of copies, a snapshot and closing: far more than
    # a handful of syncs, or the cuts below would test little.
    assert layer.syncs >= 30
    return layer.syncs


def _run_until_cut(
    source: Path,
    disk: Path,
    cut_at: int | None,
    tail: str,
    *,
    seed: int,
    bridge: bool = True,
) -> tuple[PowerLoss, Acknowledged]:
    """Run the workload on ``disk`` until the power fails, then restore it.

    ``bridge`` routes the group sync of local copies through the layer.
    """
    disk.mkdir(exist_ok=True)
    layer = PowerLoss(disk, cut_at=cut_at, tail=tail, seed=seed)
    acknowledged = Acknowledged()

    def emit(kind: str, action_id: str) -> None:
        acknowledged.read(f"{kind} {action_id}\n")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(durable, "ops", layer)
        if bridge:
            patch.setattr(transfer, "sync_filesystem", layer.syncfs)
        try:
            for number in range(ROUNDS):
                run_round(*_round_paths(source, disk), number, emit)
        except Exception:
            # After the cut every call fails, with PowerCut or with what
            # the code makes of it (a poisoned journal). Before the cut,
            # nothing may fail.
            if not layer.cut:
                raise
    layer.restore()
    return layer, acknowledged


def _round_paths(source: Path, disk: Path) -> tuple[str, str, str]:
    return str(source), str(disk / "destination"), str(disk / "queue")


def _check_after_cut(
    source: Path, disk: Path, acknowledged: Acknowledged, *, directories: bool
) -> None:
    queue = disk / "queue"
    state = recovered_state(queue)
    if state is None:
        assert acknowledged.adds == set(), "adds acknowledged before the queue"
        return
    check_acknowledged(state, acknowledged)
    check_completed_copies(state)
    check_completed_results(state, queue)
    if directories:
        check_completed_directories(state)

    run_round(*_round_paths(source, disk), ROUNDS, lambda *_: None)
    check_finished_queue(disk / "destination", queue, acknowledged, directories=False)


def _cut_everywhere(
    source: Path,
    root: Path,
    syncs: int,
    tail: str,
    *,
    seed: int = 0,
    bridge: bool = True,
    directories: bool = False,
) -> None:
    for cut_at in range(1, syncs + 1):
        disk = root / f"{tail}-{seed}-{cut_at}"
        _, acknowledged = _run_until_cut(
            source, disk, cut_at, tail, seed=seed + cut_at, bridge=bridge
        )
        try:
            _check_after_cut(source, disk, acknowledged, directories=directories)
        except AssertionError as failure:
            raise AssertionError(f"power cut at sync {cut_at}: {failure}") from None


@pytest.mark.parametrize("tail", CI_TAILS)
def test_power_cut_at_every_sync(
    tail: str, source: Path, sync_count: int, tmp_path: Path
) -> None:
    _cut_everywhere(source, tmp_path, sync_count, tail)


def test_power_cut_keeps_completed_mkdir(
    source: Path, sync_count: int, tmp_path: Path
) -> None:
    _cut_everywhere(source, tmp_path, sync_count, "drop", directories=True)


def test_power_cut_without_bridge(
    source: Path, sync_count: int, tmp_path: Path
) -> None:
    _cut_everywhere(source, tmp_path, sync_count, "drop", bridge=False)


def test_layer_drops_unsynced_rename(tmp_path: Path) -> None:
    """The layer itself: a rename whose data was never synced loses the data,
    and a file whose directory was never synced disappears."""
    layer = PowerLoss(tmp_path, cut_at=2)
    kept, lost = tmp_path / "kept", tmp_path / "lost"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(durable, "ops", layer)
        fd = layer.open(str(tmp_path / "kept.tmp"), os.O_WRONLY | os.O_CREAT)
        layer.write_all(fd, b"never synced")
        layer.close(fd)
        layer.replace(str(tmp_path / "kept.tmp"), str(kept))
        layer.fsync_dir(str(tmp_path))
        lost.write_bytes(b"created after the last directory sync")
        with pytest.raises(PowerCut):
            layer.fsync_dir(str(tmp_path))
    layer.restore()

    assert kept.read_bytes() == b""
    assert not lost.exists()


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="set JOURNALQ_SOAK=1 to run the soak variant")
@pytest.mark.parametrize("tail", TAIL_MODES)
def test_power_cut_soak(
    tail: str, source: Path, sync_count: int, tmp_path: Path
) -> None:
    for seed in SOAK_SEEDS:
        _cut_everywhere(source, tmp_path, sync_count, tail, seed=seed * 1_000)


def test_power_cut_after_skipping_unsynced_files(tmp_path: Path) -> None:
    """Files a killed run wrote but never synced, then skipped as identical.

    The destination is written outside the layer, as a run killed before
    its group sync leaves it: on disk, but not durable. The next run finds
    every file identical. Its skips must wait for a sync that makes those
    files durable, or the power cut after it leaves completed copies
    without their files. The tree has no folders, whose mkdirs would sync
    the filesystem anyway.
    """
    source = tmp_path / "source"
    source.mkdir()
    for number in range(TREE_FILES):
        (source / f"f{number}").write_bytes(os.urandom(100 + number))
    disk = tmp_path / "disk"
    disk.mkdir()
    layer = PowerLoss(disk, tail="drop")
    destination = disk / "destination"
    shutil.copytree(source, destination)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(durable, "ops", layer)
        patch.setattr(transfer, "sync_filesystem", layer.syncfs)
        with StorageQueue(source, destination, disk / "queue") as queue:
            queue.sync("", "")
            summary = queue.run()
    layer.restore()

    assert summary.copied == 0
    assert summary.skipped == TREE_FILES
    state = recovered_state(disk / "queue")
    assert state is not None
    assert check_completed_copies(state) == TREE_FILES
