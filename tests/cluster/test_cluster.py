"""Runs whose copies go to a local Dask cluster: results, events, failures."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import distributed
import msgspec
import pytest
import servers
from click.testing import CliRunner
from cluster_helpers import (
    SCHEDULER_OPTIONS,
    files_containing,
    make_tree,
    s3,
    s3_tree,
)
from servers import S3_SECRET
from tree_helpers import read_tree

from journalq import StorageQueue, copier, digest, durable
from journalq.backends import open_filesystem
from journalq.cli import cli
from journalq.cluster import (
    TASK_BYTES,
    UNLISTED_BYTES,
    ClusterHelper,
    ClusterHelpers,
    FilesystemSpec,
    _copy_batch,
    connect,
    split_tasks,
    worker_copies,
)
from journalq.errors import ActionError
from journalq.events import Event, EventType


def sync(
    source: Path,
    destination: str,
    queue: Path,
    *,
    client: Any = None,
    options: dict[str, str] | None = None,
    on_event: Any = None,
) -> StorageQueue:
    """Sync ``destination`` to ``source`` in a new queue and return it, open."""
    storage = StorageQueue(source, destination, name=queue, destination_options=options)
    storage.sync(str(source), destination)
    summary = storage.run(client=client, on_event=on_event)
    assert summary.ok, summary
    return storage


def outcomes(storage: StorageQueue, root: str) -> dict[str, tuple[Any, ...]]:
    """Return each copied file's outcome, bytes and method by relative path."""
    return {
        info.destination.removeprefix(root).lstrip("/"): (
            info.outcome,
            info.bytes,
            info.method,
        )
        for info in storage.get_actions("completed")
        if info.kind == "copy_file" and info.destination is not None
    }


def digests(storage: StorageQueue) -> dict[str, str]:
    """Return the digest the journal keeps for each source file."""
    cache = storage.state.digests.source
    return {path: record.digest for path, record in cache.items()}


def test_local_to_s3_matches_threads(
    tmp_path: Path, full_client: Any, s3_options: dict[str, str], bucket: str
) -> None:
    source = tmp_path / "source"
    files = make_tree(source, 50, 20_000, seed=1)
    events: list[Event] = []
    copied_before = sum(full_client.run(worker_copies).values())

    on_cluster = sync(
        source,
        f"s3://{bucket}/cluster",
        tmp_path / "queue-cluster",
        client=full_client,
        options=s3_options,
        on_event=events.append,
    )
    on_threads = sync(
        source,
        f"s3://{bucket}/threads",
        tmp_path / "queue-threads",
        options=s3_options,
    )

    assert s3_tree(s3_options, f"{bucket}/cluster") == files
    assert s3_tree(s3_options, f"{bucket}/threads") == files
    # The workers count the files they copied: all of them, none here.
    copied_by_workers = sum(full_client.run(worker_copies).values()) - copied_before
    assert copied_by_workers == len(files)
    assert worker_copies() == 0
    cluster_outcomes = outcomes(on_cluster, f"{bucket}/cluster")
    assert len(cluster_outcomes) == len(files)
    assert cluster_outcomes == outcomes(on_threads, f"{bucket}/threads")
    assert len(digests(on_cluster)) == len(files)
    assert digests(on_cluster) == digests(on_threads)
    on_cluster.close()
    on_threads.close()

    copies = [event for event in events if event.kind == "copy_file"]
    started = Counter(e.action_id for e in copies if e.type is EventType.STARTED)
    completed = Counter(e.action_id for e in copies if e.type is EventType.COMPLETED)
    assert len(started) == len(files)
    assert set(started.values()) == {1}
    assert started == completed
    assert files_containing(tmp_path / "queue-cluster", S3_SECRET) == []


def test_s3_to_local_then_nothing(
    tmp_path: Path, full_client: Any, s3_options: dict[str, str], bucket: str
) -> None:
    fs = s3(s3_options)
    files = make_tree(tmp_path / "upload", 40, 50_000, seed=2)
    for name, data in files.items():
        fs.pipe_file(f"{bucket}/tree/{name}", data)
    destination = tmp_path / "destination"
    queue = tmp_path / "queue"
    storage = StorageQueue(
        f"s3://{bucket}/tree", destination, name=queue, source_options=s3_options
    )
    storage.sync(f"s3://{bucket}/tree", str(destination))

    first = storage.run(client=full_client)
    storage.sync(f"s3://{bucket}/tree", str(destination))
    second = storage.run(client=full_client)
    storage.close()

    assert first.ok, first
    assert first.copied == len(files)
    assert read_tree(destination) == files
    assert second.ok, second
    assert second.copied == 0
    assert files_containing(queue, S3_SECRET) == []


def test_cancel_stops_batches_not_handed(tmp_path: Path, full_client: Any) -> None:
    """A cancel handed off at the first copy ends the files still waiting.

    The run's event callback stops each feeder thread at its first copy
    while another process posts the cancel, so it lands while most batches
    are still to be handed out.
    """
    source = tmp_path / "source"
    files = make_tree(source, 600, 2_000, seed=3)
    destination = tmp_path / "destination"
    queue = tmp_path / "queue"
    storage = StorageQueue(source, destination, name=queue)
    storage.sync(str(source), str(destination))
    lock = threading.Lock()
    posted: list[subprocess.CompletedProcess[str]] = []
    script = textwrap.dedent(
        f"""
        from journalq import StorageQueue
        print(len(StorageQueue(name={str(queue)!r}).cancel()))
        """
    )

    def cancel_once(event: Event) -> None:
        if event.type is not EventType.STARTED or event.kind != "copy_file":
            return
        with lock:
            if not posted:
                posted.append(
                    subprocess.run(
                        [sys.executable, "-c", script],
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                )

    summary = storage.run(client=full_client, on_event=cancel_once)
    counts = storage.status()
    completed = outcomes(storage, str(destination))
    storage.close()

    # Only the batches out at the cancel, two per helper, may be copied.
    helpers = 2 * sum(full_client.nthreads().values())
    handed = 2 * helpers * (len(files) // (helpers * 4))
    assert posted[0].returncode == 0, posted[0].stderr
    assert summary.copied <= handed
    assert counts["waiting"] == 0
    assert counts["failed"] == 0
    assert counts["canceled"] >= len(files) - handed
    copied = read_tree(destination)
    assert len(copied) <= handed
    assert set(completed) <= set(copied)
    for name, data in copied.items():
        assert data == files[name]


def test_failed_task_gives_none_outcomes(tmp_path: Path, full_client: Any) -> None:
    (tmp_path / "a").write_bytes(b"data")
    missing = FilesystemSpec("nosuchprotocol://bucket", {}, "missing")
    local = FilesystemSpec.of(open_filesystem(str(tmp_path)))
    helper = ClusterHelper(full_client, missing, local)
    task = copier.Task("0" * 32, str(tmp_path / "a"), str(tmp_path / "b"), 4, 1)

    helper.send([task, task], None)
    result = helper.receive()
    helper.close()

    assert result == [None, None]
    assert not helper.broken
    assert not (tmp_path / "b").exists()


class GatedOps(durable.FileOps):
    """File operations that hold a thread after it wrote its first chunk.

    Each thread named in ``gates`` sets its ``wrote`` event after its first
    write and then waits for its ``go`` event.
    """

    def __init__(self, gates: dict[str, tuple[threading.Event, threading.Event]]):
        self.gates = gates
        self.held: set[str] = set()

    def write_all(self, fd: int, data: bytes | memoryview) -> None:
        super().write_all(fd, data)
        name = threading.current_thread().name
        if name in self.gates and name not in self.held:
            self.held.add(name)
            wrote, go = self.gates[name]
            wrote.set()
            assert go.wait(60), f"{name} was never let go"


def test_concurrent_runs_never_mix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of one Dask task at once, as after a lost worker, never mix.

    The runs are threads calling the task's function, held between chunks
    by :class:`GatedOps`: a real cluster cannot be made to interleave two
    runs of a task at a chosen write. The first run writes a chunk, the
    second writes a chunk and stalls, the first finishes. With a temporary
    name that both share, the second run had replaced the first's file
    and the first renamed the second's partial file into place.
    """
    data = os.urandom(3 * digest.CHUNK + 5)
    (tmp_path / "source.bin").write_bytes(data)
    destination = tmp_path / "out" / "copy.bin"
    task = copier.Task(
        "0123456789abcdef", str(tmp_path / "source.bin"), str(destination), -1, None
    )
    spec = FilesystemSpec.of(open_filesystem(str(tmp_path)))
    payload = msgspec.msgpack.encode([task])
    gates = {name: (threading.Event(), threading.Event()) for name in ("one", "two")}
    monkeypatch.setattr(durable, "ops", GatedOps(gates))
    results: dict[str, Any] = {}

    def run_task() -> None:
        encoded = _copy_batch(payload, spec, spec)
        results[threading.current_thread().name] = msgspec.msgpack.decode(
            encoded, type=list[copier.Outcome]
        )

    first = threading.Thread(target=run_task, name="one")
    second = threading.Thread(target=run_task, name="two")
    first.start()
    assert gates["one"][0].wait(60)
    second.start()
    assert gates["two"][0].wait(60)
    gates["one"][1].set()
    first.join(60)
    copied_while_second_stalls = destination.read_bytes()
    gates["two"][1].set()
    second.join(60)

    hasher = digest.Hasher()
    hasher.update(data)
    expected = (len(data), hasher.digest_string())
    first_copy = results["one"][0]
    assert (first_copy.bytes, first_copy.digest) == expected
    assert copied_while_second_stalls == data
    assert destination.read_bytes() == data
    second_copy = results["two"][0]
    assert second_copy is None or (second_copy.bytes, second_copy.digest) == expected
    assert sorted(os.listdir(destination.parent)) == ["copy.bin"]


def test_memory_filesystem_stays_here(client: Any, tmp_path: Path) -> None:
    memory = open_filesystem("memory://cluster-test")
    local = open_filesystem(str(tmp_path))

    assert ClusterHelpers(client)(memory, local) == []
    assert ClusterHelpers(client)(local, memory) == []
    helpers = ClusterHelpers(client, per_thread=3, max_helpers=5)(local, local)
    assert len(helpers) == 5


def test_no_worker_copies_here(tmp_path: Path) -> None:
    local = open_filesystem(str(tmp_path))
    (tmp_path / "a").write_bytes(b"data")
    task = copier.Task("0" * 32, str(tmp_path / "a"), str(tmp_path / "b"), 4, 1)
    spec = FilesystemSpec.of(local)
    with (
        distributed.LocalCluster(
            n_workers=0,
            processes=False,
            dashboard_address=None,
            scheduler_kwargs=SCHEDULER_OPTIONS,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        factory = ClusterHelpers(client, worker_wait=0.2)
        helper = ClusterHelper(client, spec, spec, worker_wait=0.2)
        helper.send([task], None)

        assert factory(local, local) == []
        assert helper.receive() == [None]
        helper.close()
    assert not (tmp_path / "b").exists()


def test_split_tasks_by_bytes() -> None:
    def task(size: int) -> copier.Task:
        return copier.Task("0" * 32, "s", "d", size, None)

    half = TASK_BYTES // 2
    tasks = [task(half), task(half), task(1), task(TASK_BYTES * 3), task(-1)]

    chunks = split_tasks(tasks)

    assert [len(chunk) for chunk in chunks] == [2, 1, 1, 1]
    assert [t for chunk in chunks for t in chunk] == tasks
    assert split_tasks([]) == []
    unlisted = TASK_BYTES // UNLISTED_BYTES
    assert len(split_tasks([task(-1)] * (unlisted + 1))) == 2


def test_spec_hides_options_from_repr(tmp_path: Path) -> None:
    filesystem = open_filesystem(
        "s3://bucket/prefix",
        {"key": "k", "secret": S3_SECRET, "endpoint_url": "http://127.0.0.1:1"},
    )
    spec = FilesystemSpec.of(filesystem)
    same = FilesystemSpec.of(filesystem)

    assert S3_SECRET not in repr(spec)
    assert spec.options["secret"] == S3_SECRET
    assert spec.url == "s3://bucket/prefix"
    assert spec.key == same.key


def test_connect_reaches_scheduler(dask_cluster: Any) -> None:
    with connect(dask_cluster.scheduler_address) as client:
        assert client.status == "running"


def test_connect_to_closed_port_fails() -> None:
    address = f"tcp://{servers.HOST}:{servers.free_port()}"

    with pytest.raises(ActionError, match="connecting to the Dask scheduler failed"):
        connect(address, timeout=1)


def test_cli_copies_on_cluster(dask_cluster: Any, tmp_path: Path) -> None:
    source = tmp_path / "src"
    files = {f"d/f{index}.txt": os.urandom(100 + index) for index in range(30)}
    for relpath, data in files.items():
        (source / relpath).parent.mkdir(parents=True, exist_ok=True)
        (source / relpath).write_bytes(data)

    result = CliRunner().invoke(
        cli,
        [
            "copy",
            f"{source}/",
            f"{tmp_path / 'dst'}/",
            "--queue",
            str(tmp_path / "q"),
            "--executor",
            "dask",
            "--scheduler",
            dask_cluster.scheduler_address,
        ],
    )

    assert result.exit_code == 0, result.output
    for relpath, data in files.items():
        assert (tmp_path / "dst" / relpath).read_bytes() == data


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--executor", "dask"], "needs --scheduler"),
        (["--scheduler", "tcp://127.0.0.1:1"], "needs --executor dask"),
    ],
)
def test_cli_executor_options_checked(
    tmp_path: Path,
    arguments: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rejected combination adds nothing: no queue gets a listed tree."""
    monkeypatch.setenv("JOURNALQ_HOME", str(tmp_path / "home"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "file.txt").write_bytes(b"data")
    result = CliRunner().invoke(
        cli, ["copy", f"{tmp_path / 'src'}/", str(tmp_path / "dst"), *arguments]
    )

    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "home").exists()
