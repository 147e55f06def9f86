"""The demo and the examples run on temporary folders and end as expected.

``python -m journalq.demo`` is what ``make demo`` runs: it writes its
3,003 files (36 MiB) into ``./demo``, so it runs with a temporary working
directory. The Airflow example's task function is plain Python and runs
without Airflow, which is not installed for the tests.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from tree_helpers import read_tree

from journalq import StorageQueue
from journalq.records import Kind
from journalq.replay import Status
from journalq.store import read_state

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_python(
    *arguments: str, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess:
    """Run ``python ARGUMENTS`` in ``cwd`` to its end, capturing its output."""
    return subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
        env={**os.environ, **env},
    )


def write_sample(root: Path, files: int) -> dict[str, bytes]:
    """Write ``files`` small files in three folders under ``root``."""
    for index in range(files):
        path = root / f"folder{index % 3}" / f"file{index:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"%d\n" % index * (index % 7 + 1))
    return read_tree(root)


def test_demo_ends_identical(tmp_path: Path) -> None:
    result = run_python(
        "-m",
        "journalq.demo",
        cwd=tmp_path,
        env={"JOURNALQ_HOME": str(tmp_path / "home")},
    )
    source = tmp_path / "demo" / "source"
    destination = tmp_path / "demo" / "destination"

    assert result.returncode == 0, result.stdout + result.stderr
    assert "[demo] resuming with the same command" in result.stdout
    assert "identical (3003 files)" in result.stdout
    assert read_tree(destination) == read_tree(source)
    # The run summaries stay in ./demo; the user's JOURNALQ_HOME is untouched.
    assert not (tmp_path / "home").exists()
    assert len(list((tmp_path / "demo" / "home" / "runs").iterdir())) == 1


def test_sync_and_resume_without_arguments(tmp_path: Path) -> None:
    result = run_python(
        str(EXAMPLES / "sync_and_resume.py"),
        cwd=tmp_path,
        env={"JOURNALQ_HOME": str(tmp_path / "home")},
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("first run: copied ")
    assert lines[0].endswith("interrupted True")
    # The resumed run copied what the first left, so something was left.
    resumed = next(line for line in lines if line.startswith("resumed run: copied "))
    assert int(resumed.split()[3].rstrip(",")) > 0
    assert lines[-1] == "done"
    assert not (tmp_path / "home").exists()


def test_sync_and_resume_with_arguments(tmp_path: Path) -> None:
    files = write_sample(tmp_path / "source", 300)
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "extraneous.txt").write_bytes(b"deleted by the sync")

    result = run_python(
        str(EXAMPLES / "sync_and_resume.py"),
        "source",
        "backup",
        cwd=tmp_path,
        env={"JOURNALQ_HOME": str(tmp_path / "home")},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "done"
    assert read_tree(tmp_path / "backup") == files


def test_notebook_example_runs(tmp_path: Path) -> None:
    """The example writes its 500 files into a folder of ``mkdtemp``."""
    result = run_python(
        str(EXAMPLES / "notebook_progress.py"),
        cwd=tmp_path,
        env={"TMPDIR": str(tmp_path), "JOURNALQ_HOME": str(tmp_path / "home")},
    )
    scratch = [path for path in tmp_path.iterdir() if path.name != "home"]

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("500 files, ")
    assert lines[1].startswith("500 of 500 files;")
    # The second run, drawn by fsspec's TqdmCallback, copies the 10 changed.
    assert lines[-1] == "10 files changed and copied again"
    assert len(scratch) == 1
    assert scratch[0].name.startswith("journalq-notebook-")
    source = read_tree(scratch[0] / "source")
    assert len(source) == 500
    assert read_tree(scratch[0] / "backup") == source


# The Airflow task ------------------------------------------------------------


@pytest.fixture
def airflow_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The Airflow example, imported without Airflow; its queue under tmp_path."""
    monkeypatch.setenv("JOURNALQ_HOME", str(tmp_path / "home"))
    spec = importlib.util.spec_from_file_location(
        "airflow_task", EXAMPLES / "airflow_task.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_airflow_task_syncs_and_retries(
    airflow_task: ModuleType, tmp_path: Path
) -> None:
    """A second call, as a retried task makes, copies nothing again."""
    files = write_sample(tmp_path / "reports", 40)
    source, destination = str(tmp_path / "reports"), str(tmp_path / "backup")

    first = airflow_task.nightly_sync(source, destination)
    second = airflow_task.nightly_sync(source, destination)

    assert first["copied"] == 40
    assert first["failed"] == 0
    assert read_tree(tmp_path / "backup") == files
    assert second["copied"] == 0
    assert second["skipped"] == 40


def test_airflow_task_fails_on_failed_files(
    airflow_task: ModuleType, tmp_path: Path
) -> None:
    write_sample(tmp_path / "reports", 5)
    # A link whose target is missing fails its copy for good.
    os.symlink(tmp_path / "missing.txt", tmp_path / "reports" / "dangling.txt")

    with pytest.raises(RuntimeError, match=r"^1 files failed: .*dangling\.txt"):
        airflow_task.nightly_sync(str(tmp_path / "reports"), str(tmp_path / "backup"))

    assert len(read_tree(tmp_path / "backup")) == 5


#: The name of the example's queue.
QUEUE = "nightly-reports"
#: Code that keeps a queue open, and locked, until its stdin closes.
HOLD_QUEUE = """
import sys
from journalq import StorageQueue
from journalq.records import Kind
from journalq.replay import Status
from journalq.store import read_state

with StorageQueue(sys.argv[1], sys.argv[2], name=sys.argv[3]):
    print("holding", flush=True)
    sys.stdin.read()
"""


def test_airflow_task_with_queue_held(airflow_task: ModuleType, tmp_path: Path) -> None:
    """While another process has the queue locked, the task hands off and fails.

    Opening the queue does not raise in that case: ``run()`` raises
    ``QueueLockedError``, which the task turns into its own error. Once
    the holder is gone, the next attempt runs the sync it handed off.
    """
    files = write_sample(tmp_path / "reports", 10)
    source, destination = str(tmp_path / "reports"), str(tmp_path / "backup")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_QUEUE, source, destination, QUEUE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n"
        locked = r"^the queue is locked by another run: "
        with pytest.raises(RuntimeError, match=locked):
            airflow_task.nightly_sync(source, destination)
        state = read_state(tmp_path / "home" / "queues" / QUEUE)
        handed_off = Counter(
            (action.kind, action.status) for action in state.actions.values()
        )
        syncs = [
            state.paths(action)
            for action in state.actions.values()
            if action.kind is Kind.SYNC
        ]
        copied_meanwhile = (tmp_path / "backup").exists()
    finally:
        holder.communicate(timeout=60)
    retried = airflow_task.nightly_sync(source, destination)

    assert holder.returncode == 0
    # The hand-off listed the trees: the sync, 3 folders and 10 files wait.
    assert syncs == [(source, destination)]
    assert handed_off == {
        (Kind.SYNC, Status.WAITING): 1,
        (Kind.MKDIR, Status.WAITING): 3,
        (Kind.COPY_FILE, Status.WAITING): 10,
    }
    assert not copied_meanwhile
    assert retried["copied"] == 10
    assert read_tree(tmp_path / "backup") == files
    with StorageQueue(name=QUEUE) as queue:
        assert queue.status()["waiting"] == 0
