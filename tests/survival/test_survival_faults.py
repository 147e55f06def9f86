"""Faults injected under the backends: retried when transient, alone when not.

The filesystems of ``faulty.py`` fail a seeded share of their calls. That
module is the mock of these tests, because no real server fails a chosen
request on demand: S3 requests go to moto on 127.0.0.1 and fail inside
the botocore client, GCS requests go to fake-gcs-server and fail inside
gcsfs, memory calls fail in fsspec's memory filesystem.

* With 10% transient faults (S3 503 SlowDown, a reset connection, a read
  timeout; GCS 503 responses, dropped connections and timeouts) on every
  call, from the listing at add time to the last copy, every action
  completes, and a second run copies nothing.
* Permanent faults (403 denied, 404 missing, ENOSPC) fail exactly the
  actions whose calls they hit, each with the cause in its error. Every
  other file is copied, and ``journalq`` exits with status 1.
* The same seed fails the same files again.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import pytest
from click.testing import CliRunner
from faulty import GCS_PROTOCOL, MEMORY_PROTOCOL, PERMANENT, S3_PROTOCOL, FaultPlan
from fsspec.implementations.memory import MemoryFileSystem
from survival_helpers import write_tree
from tree_helpers import read_tree

from journalq import StorageQueue
from journalq.cli import cli
from journalq.errors import ActionError
from journalq.events import RunSummary
from journalq.retry import Backoff

#: Files of each tree: enough that 10% faults hit several of them.
FILES = 24
#: Directories of each tree, d0 to d2, each an item of its own.
DIRECTORIES = 3
RATE = 0.1
SEED = 2_024
#: A backoff of at most 10 ms, so that retries cost the tests little.
TINY = {"base": 0.001, "cap": 0.01}
#: What each permanent fault puts into the error of its action.
CAUSES = {
    "denied": "PermissionError",
    "missing": "FileNotFoundError",
    "full": "[Errno 28]",
}
FAILED = 1


def _contents(seed: int = SEED) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {
        f"d{index % 3}/f{index:02d}.bin": rng.randbytes(rng.randrange(0, 3_000))
        for index in range(FILES)
    }


def _read_memory(fs: MemoryFileSystem, root: str) -> dict[str, bytes]:
    return {path.removeprefix(f"{root}/"): fs.cat_file(path) for path in fs.find(root)}


def _faults(faults: str, **options: Any) -> dict[str, Any]:
    return {"fault_rate": RATE, "faults": faults, "fault_seed": SEED, **options}


def _open(tmp_path: Path, source: str, destination: str, **options: Any):
    return StorageQueue(
        source,
        destination,
        name=tmp_path / "queue",
        backoff=Backoff.seeded(SEED, **TINY),
        **options,
    )


def _copy(queue: StorageQueue, source: str, destination: str) -> RunSummary:
    queue.copy_tree(source, destination)
    return queue.run()


@dataclass
class Pair:
    """A copy between the local disk and a faulty filesystem on ``side``."""

    source: str
    destination: str
    settings: dict[str, Any]
    #: Reads back what the copy wrote: relative path -> content.
    copied: Callable[[], dict[str, bytes]]


def _memory_pair(
    tmp_path: Path, memory: MemoryFileSystem, side: str, options: dict[str, Any]
) -> Pair:
    """Write the files of :func:`_contents` at the source; return the pair."""
    files = _contents()
    if side == "source":
        for relpath, data in files.items():
            memory.pipe_file(f"/src/{relpath}", data)
        return Pair(
            f"{MEMORY_PROTOCOL}:///src",
            str(tmp_path / "out"),
            {"source_options": options},
            lambda: read_tree(tmp_path / "out"),
        )
    return Pair(
        str(write_tree(tmp_path / "src", files)),
        f"{MEMORY_PROTOCOL}:///out",
        {"destination_options": options},
        lambda: _read_memory(memory, "/out"),
    )


def _bucket_pair(
    tmp_path: Path,
    protocol: str,
    server_options: dict[str, Any],
    bucket: str,
    side: str,
    options: dict[str, Any],
) -> Pair:
    """Return a pair between the local disk and a faulty ``protocol`` bucket.

    ``protocol`` is ``s3`` or ``gcs``. The files of :func:`_contents` are
    written at the source first, past the faulty filesystem.
    """
    files = _contents()
    plain = fsspec.filesystem(protocol, **server_options)
    faulty = {"s3": S3_PROTOCOL, "gcs": GCS_PROTOCOL}[protocol]
    remote = f"{faulty}://{bucket}/tree"
    local = tmp_path / "local"
    settings = {f"{side}_options": {**server_options, **options}}

    def copied_to_bucket() -> dict[str, bytes]:
        plain.invalidate_cache()
        return {
            path.removeprefix(f"{bucket}/tree/"): plain.cat_file(path)
            for path in plain.find(f"{bucket}/tree")
        }

    if side == "source":
        for relpath, data in files.items():
            plain.pipe_file(f"{bucket}/tree/{relpath}", data)
        return Pair(remote, str(local), settings, lambda: read_tree(local))
    return Pair(str(write_tree(local, files)), remote, settings, copied_to_bucket)


def _fixed_bucket(protocol: str, server_options: dict[str, Any], name: str) -> str:
    """Make the bucket ``name`` for a test whose faults are drawn at random.

    The draws depend on the paths, bucket included. The session's bucket
    fixtures number their buckets in the order tests ask for them, so a
    fixed name keeps the same faults whichever tests ran before.
    """
    fsspec.filesystem(protocol, **server_options).mkdir(name)
    return name


def _run_pair(tmp_path: Path, pair: Pair) -> tuple[RunSummary, StorageQueue]:
    """Copy the pair's tree; return the summary and the closed queue."""
    with _open(tmp_path, pair.source, pair.destination, **pair.settings) as queue:
        return _copy(queue, pair.source, pair.destination), queue


def _failed_files(queue: StorageQueue, side: str = "source") -> dict[str, str]:
    """Return the error of each failed file copy, by its path on ``side``."""
    failed = {}
    for info in queue.get_actions("failed"):
        path = getattr(info, side)
        if info.kind == "copy_file" and path is not None:
            failed[path] = info.error or ""
    return failed


# Transient faults ------------------------------------------------------------


@pytest.mark.parametrize("side", ["source", "destination"])
def test_memory_transient_faults_complete(tmp_path, memory, side):
    pair = _memory_pair(tmp_path, memory, side, _faults("reset,timeout"))

    first, queue = _run_pair(tmp_path, pair)
    plan: FaultPlan = getattr(queue, side).fs.plan
    status = queue.status()
    second, _ = _run_pair(tmp_path, pair)

    assert first.failed == 0
    assert first.copied == FILES
    assert status["failed"] == 0
    assert status["waiting"] == 0
    assert pair.copied() == _contents()
    assert first.retried > 0
    assert {item.fault for item in plan.injected} <= {"reset", "timeout"}
    assert second.failed == 0
    assert second.copied == 0


@pytest.mark.parametrize("side", ["source", "destination"])
@pytest.mark.parametrize("protocol", ["s3", "gcs"])
def test_bucket_transient_faults_complete(tmp_path, request, protocol, side):
    """503 responses, dropped connections and timeouts, retried.

    S3 requests fail inside the botocore client, GCS requests inside
    gcsfs, each with the error its client raises; the others reach moto
    or fake-gcs-server.
    """
    server_options = request.getfixturevalue(f"{protocol}_options")
    bucket = _fixed_bucket(protocol, server_options, f"transient-{side}")
    options = _faults("slowdown,reset,timeout")
    pair = _bucket_pair(tmp_path, protocol, server_options, bucket, side, options)

    first, queue = _run_pair(tmp_path, pair)
    plan: FaultPlan = getattr(queue, side).fs.plan
    second, _ = _run_pair(tmp_path, pair)

    assert first.failures == []
    assert first.copied == FILES
    assert pair.copied() == _contents()
    assert first.retried > 0
    assert len(plan.injected) > 0
    assert {item.fault for item in plan.injected} <= {"slowdown", "reset", "timeout"}
    assert second.failures == []
    assert second.copied == 0


@pytest.mark.parametrize("side", ["source", "destination"])
def test_gcs_first_request_503_retried(tmp_path, gcs_options, gcs_bucket, side):
    """The first GET or POST of every GCS object gets 503; all complete.

    gcsfs gives up on a 503 only after its own retries, so ``faultgcs://``
    raises its ``HttpError`` in its place; fake-gcs-server serves the rest.
    """
    options = _faults("slowdown", fault_rate=0.0, fault_first=1)
    options["fault_operations"] = "get,post"
    pair = _bucket_pair(tmp_path, "gcs", gcs_options, gcs_bucket, side, options)

    summary, queue = _run_pair(tmp_path, pair)
    plan: FaultPlan = getattr(queue, side).fs.plan
    # Downloads and uploads of the files; info and listings fail too.
    transfers = "/download/" if side == "source" else "/upload/"
    failed_objects = {
        item.path for item in plan.injected if item.path.startswith(transfers)
    }

    assert summary.failures == []
    assert summary.copied == FILES
    assert pair.copied() == _contents()
    assert len(failed_objects) == FILES
    assert summary.retried >= FILES
    assert {item.fault for item in plan.injected} == {"slowdown"}


def test_listing_retried_at_add(tmp_path, memory):
    memory.pipe_file("/src/a.txt", b"a")
    flaky = _faults("reset", fault_rate=0.0, fault_first=2, fault_operations="find")
    broken = {**flaky, "fault_first": 99}
    source = f"{MEMORY_PROTOCOL}:///src"

    with _open(tmp_path, source, str(tmp_path / "out"), source_options=flaky) as q:
        q.copy_tree(source, str(tmp_path / "out"))
        summary = q.run()
        flaky_plan: FaultPlan = q.source.fs.plan
    with _open(tmp_path, source, str(tmp_path / "out"), source_options=broken) as q:
        with pytest.raises(ActionError, match="listing failed 5 times") as failure:
            q.copy_tree(source, str(tmp_path / "out" / "again"))

    assert summary.copied == 1
    assert len(flaky_plan.injected) == 2
    assert "injected reset fault in find" in str(failure.value)


# Permanent faults ------------------------------------------------------------


def _check_alone(
    queue: StorageQueue, side: str, files: dict[str, bytes], copied: dict
) -> None:
    """Check that the failed files are those the faults hit, each with its cause.

    ``side`` is the filesystem whose calls failed.
    """
    plan: FaultPlan = getattr(queue, side).fs.plan
    failed = _failed_files(queue, side)
    hit = plan.failed_paths(PERMANENT)
    assert failed.keys() == hit
    assert 0 < len(failed) < FILES
    for item in plan.injected:
        error = failed[item.path]
        assert f"injected {item.fault} fault" in error
        assert CAUSES[item.fault] in error
    missing = {relpath for relpath in files if relpath not in copied}
    assert len(missing) == len(failed)
    for relpath, data in copied.items():
        assert data == files[relpath], relpath
    trees = [info for info in queue.get_actions("failed") if info.kind == "copy_tree"]
    assert len(trees) == 1
    items = FILES + DIRECTORIES
    assert f"{len(failed)} of {items} items failed" in (trees[0].error or "")


@pytest.mark.parametrize(
    ("side", "faults", "operation"),
    [
        ("source", "denied,missing", "cat_file"),
        ("destination", "full,denied", "write"),
    ],
)
def test_memory_permanent_faults_fail_alone(tmp_path, memory, side, faults, operation):
    options = _faults(faults, fault_rate=0.2, fault_operations=operation)
    pair = _memory_pair(tmp_path, memory, side, options)

    summary, queue = _run_pair(tmp_path, pair)

    _check_alone(queue, side, _contents(), pair.copied())
    assert summary.retried == 0


@pytest.mark.parametrize(
    ("side", "faults", "operation"),
    [
        ("source", "denied,missing", "get_object"),
        ("destination", "denied", "put_object"),
    ],
)
def test_s3_permanent_faults_fail_alone(tmp_path, s3_options, side, faults, operation):
    bucket = _fixed_bucket("s3", s3_options, f"permanent-{side}")
    options = _faults(faults, fault_rate=0.2, fault_operations=operation)
    pair = _bucket_pair(tmp_path, "s3", s3_options, bucket, side, options)

    summary, queue = _run_pair(tmp_path, pair)

    _check_alone(queue, side, _contents(), pair.copied())
    assert summary.retried == 0


def test_faults_repeat_for_seed(tmp_path, memory):
    files = _contents()
    for relpath, data in files.items():
        memory.pipe_file(f"/src/{relpath}", data)
    source = f"{MEMORY_PROTOCOL}:///src"

    def failed_with(seed: int, run: str) -> set[str]:
        options = _faults("denied", fault_rate=0.3, fault_seed=seed)
        options["fault_operations"] = "cat_file"
        with StorageQueue(
            source,
            str(tmp_path / run),
            name=tmp_path / f"queue-{run}",
            source_options=options,
        ) as queue:
            _copy(queue, source, str(tmp_path / run))
            return set(_failed_files(queue))

    first = failed_with(SEED, "first")
    again = failed_with(SEED, "again")
    other = failed_with(SEED + 1, "other")

    assert first
    assert again == first
    assert other != first


# The command -----------------------------------------------------------------


def _journalq(*arguments: str):
    return CliRunner().invoke(cli, list(arguments), catch_exceptions=False)


def _source_options(options: dict[str, Any]) -> list[str]:
    return [
        word
        for key, value in options.items()
        for word in ("--source-option", f"{key}={value}")
    ]


def test_cli_exit_status_after_faults(tmp_path, memory):
    files = _contents()
    for relpath, data in files.items():
        memory.pipe_file(f"/src/{relpath}", data)
    source = f"{MEMORY_PROTOCOL}:///src/"
    permanent = _faults("denied,missing", fault_rate=0.2, fault_operations="cat_file")
    transient = _faults("reset,timeout", fault_operations="cat_file")

    failing = _journalq(
        "copy",
        source,
        str(tmp_path / "failing"),
        "--queue",
        str(tmp_path / "queue-failing"),
        *_source_options(permanent),
    )
    passing = _journalq(
        "copy",
        source,
        str(tmp_path / "passing"),
        "--queue",
        str(tmp_path / "queue-passing"),
        *_source_options(transient),
    )

    assert failing.exit_code == FAILED, failing.output
    assert "injected" in failing.stderr
    assert "journalq actions --status failed" in failing.stderr
    assert 0 < len(read_tree(tmp_path / "failing")) < FILES
    assert passing.exit_code == 0, passing.output
    assert read_tree(tmp_path / "passing") == files


def test_cli_copy_outlives_fault_at_add(tmp_path, memory):
    memory.pipe_file("/src/a.txt", b"a")
    flaky = _faults("reset", fault_rate=0.0, fault_first=1, fault_operations="info")

    result = _journalq(
        "copy",
        f"{MEMORY_PROTOCOL}:///src/",
        str(tmp_path / "out"),
        "--queue",
        str(tmp_path / "queue"),
        *_source_options(flaky),
    )

    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"a"


def test_s3_cut_body_is_retried(tmp_path, s3_options, bucket):
    plain = fsspec.filesystem("s3", **s3_options)
    plain.pipe_file(f"{bucket}/tree/a.bin", b"a" * 1_000)
    options = {
        **s3_options,
        **_faults("reset", fault_rate=0.0, fault_first=1),
        "fault_operations": "read_body",
    }
    source = f"{S3_PROTOCOL}://{bucket}/tree"

    with _open(tmp_path, source, str(tmp_path / "out"), source_options=options) as q:
        summary = _copy(q, source, str(tmp_path / "out"))

    assert summary.failures == []
    assert summary.retried == 1


# A sync with delete whose source listing fails -------------------------------

#: The destination of the delete tests before any sync. The source has
#: none of these files, so a sync with delete that ran would remove them.
DESTINATION_FILES = {
    "extra.txt": b"only at the destination\n",
    "d0/extra.bin": b"\x00" * 64,
    "d9/extra.bin": b"\xff" * 128,
}


def _listing_fails(fault: str) -> dict[str, Any]:
    """Source options under which every listing of the source fails."""
    return _faults(fault, fault_rate=0.0, fault_first=99, fault_operations="find")


@pytest.mark.parametrize("fault", ["reset", "timeout", "denied", "missing"])
def test_sync_delete_listing_fails_deletes_nothing(tmp_path, memory, fault):
    for relpath, data in _contents().items():
        memory.pipe_file(f"/src/{relpath}", data)
    destination = write_tree(tmp_path / "out", DESTINATION_FILES)
    source = f"{MEMORY_PROTOCOL}:///src"
    options = _listing_fails(fault)

    with _open(tmp_path, source, str(destination), source_options=options) as queue:
        with pytest.raises(ActionError) as failure:
            queue.sync(source, str(destination), delete=True, force=True)
        summary = queue.run()
        status = queue.status()
        plan: FaultPlan = queue.source.fs.plan

    assert "nothing" in str(failure.value)
    assert "deleted" in str(failure.value)
    assert {item.operation for item in plan.injected} == {"find"}
    assert status["length"] == 0
    assert summary.done == 0
    assert summary.copied == 0
    assert read_tree(destination) == DESTINATION_FILES


@pytest.mark.parametrize("fault", ["reset", "denied"])
def test_cli_resync_listing_fails_deletes_nothing(tmp_path, memory, fault):
    """A sync that completed, run again with --delete while listing fails."""
    files = _contents()
    for relpath, data in files.items():
        memory.pipe_file(f"/src/{relpath}", data)
    destination = write_tree(tmp_path / "out", DESTINATION_FILES)
    arguments = (
        *("sync", f"{MEMORY_PROTOCOL}:///src", str(destination)),
        *("--delete", "--force", "--queue", str(tmp_path / "queue")),
    )

    first = _journalq(*arguments, *_source_options(_faults("reset", fault_rate=0.0)))
    synced = read_tree(destination)
    (destination / "new-extra.txt").write_bytes(b"added after the first sync\n")
    before = read_tree(destination)
    second = _journalq(*arguments, *_source_options(_listing_fails(fault)))
    status = _journalq("status", "--queue", str(tmp_path / "queue"), "--json")

    assert first.exit_code == 0, first.output
    assert synced == files
    assert second.exit_code != 0, second.output
    assert "injected" in second.stderr
    assert "nothing" in second.stderr
    assert "Traceback" not in second.output
    assert read_tree(destination) == before
    assert json.loads(status.stdout)["waiting"] == 0
