"""SIGKILL a Dask worker, or the coordinator, in the middle of a cluster run.

After either kill the run must end with every file copied once: the
destination identical to the source, one terminal record per action, no
temporary file left, and no secret in the queue directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cluster_helpers import files_containing, make_tree, s3, s3_tree
from servers import S3_SECRET
from tree_helpers import read_tree

from journalq import StorageQueue
from journalq.errors import QueueError
from journalq.events import Event, EventType
from journalq.store import read_state

# The survival tests' reading of every terminal record in a queue serves
# here unchanged.
sys.path.insert(0, str(Path(__file__).parents[1] / "survival"))
from survival_helpers import check_no_temporaries, terminal_records

COORDINATOR = Path(__file__).with_name("cluster_coordinator.py")
#: Seconds the coordinator may take to journal its first completion.
#: Starting Python with distributed and s3fs, connecting to the scheduler
#: and listing the tree took 2-5 s on the 2-core test machine.
FIRST_COMPLETION_TIMEOUT = 30.0
#: Seconds a whole coordinator run may take.
RUN_TIMEOUT = 120.0


def test_worker_killed_mid_run(
    tmp_path: Path, full_client: Any, s3_options: dict[str, str], bucket: str
) -> None:
    """A worker killed while it copies: its Dask tasks run again elsewhere."""
    files = make_tree(tmp_path / "upload", 60, 40_000, seed=11)
    s3(s3_options).pipe({f"{bucket}/tree/{name}": data for name, data in files.items()})
    destination = tmp_path / "destination"
    queue = tmp_path / "queue"
    storage = StorageQueue(
        f"s3://{bucket}/tree", destination, name=queue, source_options=s3_options
    )
    storage.sync(f"s3://{bucket}/tree", str(destination))
    lock = threading.Lock()
    killed: list[tuple[int, int]] = []

    def kill_busy_worker(event: Event) -> None:
        if event.type is not EventType.STARTED or event.kind != "copy_file":
            return
        with lock:
            if killed:
                return
            processing = full_client.processing()
            pids = full_client.run(os.getpid)
            address = max(processing, key=lambda worker: len(processing[worker]))
            os.kill(pids[address], signal.SIGKILL)
            killed.append((pids[address], len(processing[address])))

    summary = storage.run(client=full_client, on_event=kill_busy_worker)
    counts = storage.status()
    storage.close()

    assert killed[0][1] > 0
    assert summary.ok, summary
    assert summary.copied == len(files)
    assert counts["waiting"] == 0
    assert counts["inprogress"] == 0
    assert counts["failed"] == 0
    assert read_tree(destination) == files
    check_no_temporaries(destination, queue)
    assert max(terminal_records(queue).values()) == 1


def test_coordinator_killed_and_resumed(
    tmp_path: Path, dask_cluster: Any, s3_options: dict[str, str], bucket: str
) -> None:
    source = tmp_path / "source"
    files = make_tree(source, 80, 20_000, seed=12)
    destination = f"s3://{bucket}/tree"
    queue = tmp_path / "queue"
    command = [
        sys.executable,
        str(COORDINATOR),
        str(source),
        destination,
        str(queue),
        dask_cluster.scheduler_address,
    ]
    environment = {**os.environ, "CLUSTER_TEST_OPTIONS": json.dumps(s3_options)}

    first = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    completed_at_kill = _wait_for_completions(queue, first)
    alive_at_kill = first.poll() is None
    first.kill()
    first.wait()
    resumed = subprocess.run(
        command,
        env=environment,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )

    assert alive_at_kill
    assert 0 < completed_at_kill < len(files)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout.splitlines()[-1])
    assert summary["failed"] == 0
    assert summary["remaining"] == 0
    assert s3_tree(s3_options, f"{bucket}/tree") == files
    counts = read_state(queue).status_counts()
    assert counts["waiting"] == 0
    assert counts["failed"] == 0
    repeated = {key: n for key, n in terminal_records(queue).items() if n > 1}
    assert repeated == {}
    assert files_containing(queue, S3_SECRET) == []


def _wait_for_completions(queue: Path, process: subprocess.Popen[bytes]) -> int:
    """Return the completed actions once the journal has one; 0 on timeout."""
    deadline = time.monotonic() + FIRST_COMPLETION_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(QueueError):
            # Until the coordinator has created the queue, there is none.
            completed = read_state(queue).status_counts()["completed"]
            if completed:
                return completed
        time.sleep(0.02)
    return 0
