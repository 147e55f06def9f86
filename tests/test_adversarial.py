"""Adversarial tests of the queue, the executor and the planner.

Each test marked ``xfail(strict=True)`` shows a bug that is still present:
its reason names the bug, and the test starts to pass (so strict mode fails
the suite) once the bug is fixed. The tests without the mark are attacks
that journalq withstood; they stay as regression tests.

Everything runs on real files under ``tmp_path``, real subprocesses killed
with SIGKILL through ``JOURNALQ_CRASH_AT``, and real threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from permission_helpers import journalq_unprivileged
from tree_helpers import write_tree as write

from journalq import ActionError, StorageQueue, faults
from journalq.digest import CHUNK
from journalq.events import Event, EventType
from journalq.store import CLOSE_SNAPSHOT_SEGMENTS, read_state

#: One hour in nanoseconds. Files given an mtime this old have digests that
#: the digest cache trusts, because it rejects files changed within 2 s of
#: being read.
HOUR_NS = 3600 * 1_000_000_000

#: Seconds a run gets before a test calls it hung.
HANG_SECONDS = 3.0


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def age(root: Path) -> None:
    """Give every file under ``root`` an mtime one hour old."""
    old = time.time_ns() - HOUR_NS
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(old, old))


@pytest.fixture
def queue_dir(tmp_path: Path) -> Path:
    return tmp_path / "queue"


@pytest.fixture
def memory() -> Iterator[fsspec.AbstractFileSystem]:
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    yield fs
    fs.store.clear()


# Deleting what a sync must not touch -------------------------------------------


def sync_delete(source: Path, destination: Path, queue_dir: Path) -> None:
    """Add and run a sync with delete; rejecting the pair is also correct."""
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        try:
            queue.sync(str(source), str(destination), delete=True)
        except ActionError:
            return
        queue.run()


def test_sync_delete_destination_link_in_source(tmp_path, queue_dir):
    source = write(tmp_path / "src", {"a.txt": b"a", "sub/b.txt": b"b"})
    link = tmp_path / "link"
    link.symlink_to(source / "sub")
    sync_delete(source, link, queue_dir)
    assert (source / "sub" / "b.txt").exists()


def test_sync_delete_source_link_in_destination(tmp_path, queue_dir):
    destination = write(tmp_path / "dst", {"old.txt": b"o", "sub/keep.txt": b"k"})
    link = tmp_path / "srclink"
    link.symlink_to(destination / "sub")
    sync_delete(link, destination, queue_dir)
    assert (destination / "sub" / "keep.txt").exists()


def test_sync_delete_spares_link_target(tmp_path, queue_dir):
    source = write(tmp_path / "src", {"a.txt": b"a"})
    outside = write(tmp_path / "outside", {"precious.txt": b"p"})
    destination = tmp_path / "dst"
    destination.mkdir()
    (destination / "link").symlink_to(outside)
    sync_delete(source, destination, queue_dir)
    assert (outside / "precious.txt").exists()


EXPAND_AND_DIE = textwrap.dedent(
    """
    import sys
    from journalq import StorageQueue, queue
    queue.EXPANSION_CHUNK = 2
    q = StorageQueue(sys.argv[1], sys.argv[2], name=sys.argv[3])
    q.sync(sys.argv[1], sys.argv[2], delete=sys.argv[4] == "delete", max_delete=0)
    """
)


def expand_and_die(source: Path, destination: Path, queue_dir: Path, mode: str):
    """Add a sync in a child killed after the first chunk of its expansion."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            EXPAND_AND_DIE,
            str(source),
            str(destination),
            str(queue_dir),
            mode,
        ],
        env=dict(os.environ, JOURNALQ_CRASH_AT="queue.expansion_chunk:1"),
        check=False,
    )
    assert result.returncode == -9


def test_resumed_expansion_keeps_delete_guards(tmp_path, queue_dir):
    files = {f"f{index}": b"x" for index in range(5)}
    source = write(tmp_path / "src", files)
    destination = write(tmp_path / "dst", files)
    expand_and_die(source, destination, queue_dir, "delete")

    # An unmounted share leaves an empty mount point behind.
    for name in files:
        (source / name).unlink()
    with StorageQueue(name=str(queue_dir)) as queue:
        queue.run()
    assert read_tree(destination) == files


def test_open_after_cut_tree_lost_source(tmp_path, queue_dir):
    source = write(tmp_path / "src", {f"f{index}": b"x" for index in range(5)})
    expand_and_die(source, tmp_path / "dst", queue_dir, "copy")
    shutil.rmtree(source)
    with StorageQueue(name=str(queue_dir)) as queue:
        assert queue.status()["length"] >= 1


def test_retry_rmdir_keeps_new_files(tmp_path, queue_dir):
    source = write(tmp_path / "src", {"a.txt": b"a"})
    destination = tmp_path / "dst"
    (destination / "old").mkdir(parents=True)
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.sync(str(source), str(destination), delete=True)
        (destination / "old" / "new-work.txt").write_bytes(b"written later")
        assert queue.run().failed == 1
        queue.retry()
        queue.run()
    assert (destination / "old" / "new-work.txt").exists()


def test_second_retry_adds_nothing(tmp_path, queue_dir):
    source = tmp_path / "src"
    source.mkdir()
    destination = tmp_path / "dst"
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.copy_file(str(source / "late.txt"), str(destination / "late.txt"))
        assert queue.run().failed == 1
        (source / "late.txt").write_bytes(b"here now")
        assert len(queue.retry()) == 1
        assert queue.run().copied == 1
        again = queue.retry()
        failed = queue.status()["failed"]
    assert again == []
    assert failed == 0


# Skipping what differs ----------------------------------------------------------


def test_run_always_copies_planned_skips(tmp_path, queue_dir):
    source = write(tmp_path / "src", {"a.txt": b"a" * 10, "b.txt": b"b" * 10})
    age(source)
    destination = tmp_path / "dst"
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.sync(str(source), str(destination))
        queue.run()
        queue.sync(str(source), str(destination))
        summary = queue.run(compare="always")
        status = queue.status()
    assert summary.copied == 2
    assert summary.skipped == 0
    assert status["skipped"] == 0


def test_checksum_sees_change_with_kept_mtime(tmp_path, queue_dir):
    """A same-size rewrite with the old mtime set back (cp -p, touch -r)
    changes the file's ctime, which the digest cache compares too."""
    source = write(tmp_path / "src", {"a.txt": b"version one"})
    age(source)
    destination = tmp_path / "dst"
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.sync(str(source), str(destination))
        queue.run()

        # Same size, same mtime, new content, as `cp -p` of another version.
        target = source / "a.txt"
        kept = target.stat().st_mtime_ns
        target.write_bytes(b"version two")
        os.utime(target, ns=(kept, kept))
        queue.sync(str(source), str(destination))
        queue.run()
    assert (destination / "a.txt").read_bytes() == b"version two"


# Hand-off while another process holds the lock ----------------------------------


HOLDER = textwrap.dedent(
    """
    import sys
    from journalq import StorageQueue
    queue = StorageQueue(name=sys.argv[1], parallelism=1)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "run":
            queue.run()
            print("done", flush=True)
    queue.close()
    """
)


class Holder:
    """A child process that holds the queue's lock and runs it on each ``run`` line."""

    def __init__(self, queue_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(queue_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.read() == "ready"

    def read(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def start_run(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("run\n")
        self.process.stdin.flush()

    def run(self) -> None:
        self.start_run()
        assert self.read() == "done"

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def release_fifo(fifo: Path) -> None:
    """Open ``fifo`` for writing and close it, so a blocked reader sees EOF."""
    # Opening fails with ENXIO when no reader is blocked on the FIFO.
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_handoff_cancel_stops_waiting_action(tmp_path, queue_dir):
    source = write(tmp_path / "src", {"victim.txt": b"must not be copied"})
    destination = tmp_path / "dst"
    fifo = source / "blocker"
    os.mkfifo(fifo)
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        # Opening the FIFO blocks the run's first action until a writer opens it.
        queue.copy_file(str(fifo), str(destination / "blocker"))
        victim = queue.copy_file(
            str(source / "victim.txt"), str(destination / "victim.txt")
        )
    holder = Holder(queue_dir)
    try:
        holder.start_run()
        wait_for(lambda: read_state(queue_dir).status_counts()["inprogress"] == 1)
        with StorageQueue(name=str(queue_dir)) as client:
            assert client.handoff
            assert client.cancel(victim) == [victim]
        # Until the holder reads it, the cancel is a request, not a status:
        # the holder skips it for an action that started meanwhile.
        waiting = read_state(queue_dir).status_counts()
        assert waiting["cancels_requested"] == 1
        assert waiting["canceled"] == 0
        release_fifo(fifo)
        assert holder.read() == "done"
        holder.stop()
    finally:
        release_fifo(fifo)
        holder.kill()
    assert not (destination / "victim.txt").exists()
    ended = read_state(queue_dir).status_counts()
    assert (ended["cancels_requested"], ended["canceled"]) == (0, 1)


def test_handoff_readd_after_holder_ran(tmp_path, queue_dir):
    source = write(tmp_path / "src", {"a.txt": b"first"})
    destination = tmp_path / "dst"
    StorageQueue(str(source), str(destination), name=str(queue_dir)).close()
    holder = Holder(queue_dir)
    try:
        with StorageQueue(name=str(queue_dir)) as client:
            assert client.handoff
            client.copy_file(str(source / "a.txt"), str(destination / "a.txt"))
            holder.run()
            (source / "a.txt").write_bytes(b"second, longer")
            client.copy_file(str(source / "a.txt"), str(destination / "a.txt"))
            holder.run()
        holder.stop()
    finally:
        holder.kill()
    assert (destination / "a.txt").read_bytes() == b"second, longer"


def test_status_during_snapshot_keeps_it(tmp_path, queue_dir):
    source = write(tmp_path / "src", {"a.txt": b"a"})
    status = [sys.executable, "-m", "journalq", "status", "--queue", str(queue_dir)]

    def report_now(name: str) -> None:
        if name == "snapshot.before_replace":
            subprocess.run(status, capture_output=True, check=True)

    with StorageQueue(str(source), str(tmp_path / "dst"), name=str(queue_dir)) as q:
        q.copy_file(str(source / "a.txt"), str(tmp_path / "dst" / "a.txt"))
        faults.install(report_now)
        try:
            q.compact()
        finally:
            faults.clear()


# Odd files in the source -------------------------------------------------------


def test_non_utf8_name_fails_alone(tmp_path, queue_dir):
    source = write(tmp_path / "src", {"ok.txt": b"ok"})
    with open(os.fsencode(source) + b"/caf\xe9.txt", "wb") as file:
        file.write(b"latin-1 name")
    destination = tmp_path / "dst"
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.copy_tree(str(source), str(destination))
        summary = queue.run()
        failed = [a for a in queue.get_actions("failed") if a.kind == "copy_file"]
    with StorageQueue(name=str(queue_dir)) as queue:
        queue.run()
    assert (destination / "ok.txt").exists()
    assert summary.failed == 1
    assert len(failed) == 1
    error = failed[0].error or ""
    assert "the name b'caf\\xe9.txt', which is not valid UTF-8" in error


def test_fifo_in_source_does_not_hang(tmp_path, queue_dir):
    source = write(tmp_path / "src", {"a.txt": b"a"})
    fifo = source / "pipe"
    os.mkfifo(fifo)
    destination = tmp_path / "dst"
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.copy_tree(str(source), str(destination))
        thread = threading.Thread(target=queue.run, daemon=True)
        thread.start()
        thread.join(HANG_SECONDS)
        hung = thread.is_alive()
        while thread.is_alive():
            release_fifo(fifo)
            thread.join(0.1)
    assert not hung


def test_symlink_loop_is_reported(tmp_path, queue_dir, caplog):
    source = write(tmp_path / "src", {"a/f.txt": b"f"})
    (source / "a" / "loop").symlink_to(source / "a")
    with StorageQueue(str(source), str(tmp_path / "dst"), name=str(queue_dir)) as q:
        with caplog.at_level(logging.WARNING, logger="journalq"):
            q.copy_tree(str(source), str(tmp_path / "dst"))
            q.run()
        failed = q.status()["failed"]
    warned = any("loop" in record.getMessage() for record in caplog.records)
    assert failed > 0 or warned


def test_unreadable_file_fails_alone(tmp_path):
    source = write(tmp_path / "src", {"a.txt": b"a", "b.txt": b"b", "s.txt": b"s"})
    (source / "s.txt").chmod(0)
    destination = tmp_path / "dst"
    result = journalq_unprivileged("copy", f"{source}/", str(destination))
    assert result.returncode == 1, result.stderr
    assert "Permission denied" in result.stderr
    assert read_tree(destination) == {"a.txt": b"a", "b.txt": b"b"}


def test_unreadable_directory_fails_alone(tmp_path):
    source = write(tmp_path / "src", {"open/a.txt": b"a", "locked/s.txt": b"s"})
    (source / "locked").chmod(0)
    destination = tmp_path / "dst"
    try:
        result = journalq_unprivileged("copy", f"{source}/", str(destination))
    finally:
        (source / "locked").chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert "failed 1" in result.stderr
    assert f"cannot list the source directory {source / 'locked'}" in result.stderr
    assert "Permission denied" in result.stderr
    assert read_tree(destination) == {"open/a.txt": b"a"}
    assert not (destination / "locked").exists()


def test_unreadable_directory_spared_by_sync(tmp_path):
    source = write(
        tmp_path / "src", {"open/a.txt": b"a", "locked/s.txt": b"s", "gone.txt": b"g"}
    )
    destination = write(
        tmp_path / "dst",
        {"locked/s.txt": b"s", "locked/extra.txt": b"e", "stale.txt": b"x"},
    )
    (source / "gone.txt").unlink()
    (source / "locked").chmod(0)
    try:
        result = journalq_unprivileged(
            "sync", "--delete", str(source), str(destination)
        )
    finally:
        (source / "locked").chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert "Permission denied" in result.stderr
    assert read_tree(destination) == {
        "open/a.txt": b"a",
        "locked/s.txt": b"s",
        "locked/extra.txt": b"e",
    }


def _sync_with_locked_directory(tmp_path: Path) -> tuple[Path, Path]:
    """Sync a tree whose directory ``locked`` cannot be listed, into queue "q".

    Returns the source and the destination. The directory is readable again
    when this returns.
    """
    source = write(tmp_path / "src", {"open/a.txt": b"a", "locked/s.txt": b"s"})
    destination = tmp_path / "dst"
    (source / "locked").chmod(0)
    try:
        result = journalq_unprivileged(
            "sync", "--delete", str(source), str(destination), "--queue", "q"
        )
    finally:
        (source / "locked").chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert "retry (it lists the tree again)" in result.stderr
    return source, destination


def _queue_status(tmp_path: Path) -> dict:
    result = journalq_unprivileged("status", "--queue", "q", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_unreadable_directory_rerun_clears_failures(tmp_path):
    source, destination = _sync_with_locked_directory(tmp_path)
    failed_before = _queue_status(tmp_path)["failed"]

    rerun = journalq_unprivileged(
        "sync", "--delete", str(source), str(destination), "--queue", "q"
    )
    status = _queue_status(tmp_path)
    listed = journalq_unprivileged(
        "actions", "--status", "failed", "--queue", "q", "--json"
    )

    assert failed_before == 2
    assert rerun.returncode == 0, rerun.stderr
    assert status["failed"] == 0
    assert status["canceled"] == 2
    assert "to retry them" not in status["next"]
    assert listed.stdout == ""
    assert read_tree(destination) == read_tree(source)


def test_unreadable_directory_retry_lists_again(tmp_path):
    source, destination = _sync_with_locked_directory(tmp_path)
    assert "to retry them" in _queue_status(tmp_path)["next"]

    retried = journalq_unprivileged("retry", "--queue", "q")
    ran = journalq_unprivileged("run", "--queue", "q")
    status = _queue_status(tmp_path)

    assert retried.returncode == 0, retried.stderr
    # The tree is added again; its failed mkdir and itself are replaced.
    assert "wait again" not in retried.stdout
    assert "listed again as new actions, replacing 2 failed actions: " in (
        retried.stdout
    )
    assert ran.returncode == 0, ran.stderr
    assert status["failed"] == 0
    assert "to retry them" not in status["next"]
    assert read_tree(destination) == read_tree(source)


def test_unreadable_directory_retried_still_fails(tmp_path):
    """Retried while the directory still cannot be listed, the sync fails again.

    Nothing under the directory counts as copied or skipped.
    """
    source, destination = _sync_with_locked_directory(tmp_path)
    (source / "locked").chmod(0)
    try:
        retried = journalq_unprivileged("retry", "--queue", "q")
        ran = journalq_unprivileged("run", "--queue", "q")
    finally:
        (source / "locked").chmod(0o755)
    status = _queue_status(tmp_path)

    assert retried.returncode == 0, retried.stderr
    assert ran.returncode == 1, ran.stderr
    assert f"cannot list the source directory {source / 'locked'}" in ran.stderr
    assert status["failed"] == 2
    assert status["canceled"] == 2
    assert "to retry them" in status["next"]
    assert read_tree(destination) == {"open/a.txt": b"a"}


def test_awkward_names_copied(tmp_path, queue_dir):
    names = [
        "new\nline.txt",
        "x" * 255,
        "é" * 127,
        "trailing space ",
        "-dash",
        "back\\slash",
        "d\nir/inner",
        "d\nir/" + "y" * 250,
    ]
    source = write(tmp_path / "src", {name: name.encode() for name in names})
    destination = tmp_path / "dst"
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.copy_tree(str(source), str(destination))
        summary = queue.run()
        queue.copy_tree(str(source), str(destination))
        again = queue.run()
    assert summary.failed == 0
    assert read_tree(destination) == read_tree(source)
    assert list(destination.rglob(".*.jq-*.tmp")) == []
    assert again.copied == 0


# Ordering and conflicts -------------------------------------------------------


def test_delete_then_mkdir_keeps_order(tmp_path, queue_dir):
    destination = write(tmp_path / "dst", {"work/old.txt": b"o"})
    source = tmp_path / "src"
    source.mkdir()
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.delete("destination", str(destination / "work"), recursive=True)
        queue.mkdir("destination", str(destination / "work"))
        queue.run()
    assert (destination / "work").is_dir()


def test_sync_delete_file_becomes_directory(tmp_path, queue_dir):
    source = write(tmp_path / "src", {"x/f": b"f", "x/sub/g": b"g"})
    destination = write(tmp_path / "dst", {"x": b"a file in the way"})
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.sync(str(source), str(destination), delete=True)
        summary = queue.run()
    assert summary.failed == 0
    assert read_tree(destination) == {"x/f": b"f", "x/sub/g": b"g"}


def test_sync_delete_directory_becomes_file(tmp_path, queue_dir):
    source = write(tmp_path / "src", {"x": b"now a file", "y/z": b"z"})
    destination = write(
        tmp_path / "dst", {"x/old": b"o", "x/sub/deeper": b"d", "y/z/inner": b"i"}
    )
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.sync(str(source), str(destination), delete=True)
        summary = queue.run()
    assert summary.failed == 0, summary.failures
    assert read_tree(destination) == {"x": b"now a file", "y/z": b"z"}


@pytest.mark.parametrize(
    ("source_files", "destination_files", "failed", "blocker"),
    [
        # A file x where the source has a directory: its mkdir and copy fail.
        ({"x/f": b"f"}, {"x": b"a file in the way"}, 2, "the file"),
        # A directory x where the source has a file: its copy fails.
        ({"x": b"a file"}, {"x/old": b"o"}, 1, "the directory"),
    ],
)
def test_copy_reports_path_in_the_way(
    tmp_path, queue_dir, source_files, destination_files, failed, blocker
):
    source = write(tmp_path / "src", {**source_files, "kept.txt": b"k"})
    destination = write(tmp_path / "dst", destination_files)
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.copy_tree(str(source), str(destination))
        summary = queue.run()
    errors = [f.error or "" for f in summary.failures if f.kind != "copy_tree"]
    assert summary.failed == failed
    assert len(errors) == failed
    for error in errors:
        assert error.startswith("PathInTheWayError: ")
        assert f"{blocker} {destination / 'x'} is in the way" in error
        assert "sync with --delete" in error
        assert ".jq-" not in error
    assert read_tree(destination) == {**destination_files, "kept.txt": b"k"}
    assert list(destination.rglob(".*.jq-*.tmp")) == []


def test_copy_below_file_advice(tmp_path, queue_dir):
    """A file above a single copy's destination is not one a sync replaces."""
    source = write(tmp_path / "src", {"a.txt": b"a"})
    destination = write(tmp_path / "dst", {"blocker": b"a file"})
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.copy_file("a.txt", "blocker/a.txt")
        summary = queue.run()

    (failure,) = summary.failures
    assert failure.error is not None
    assert f"the file {destination / 'blocker'} is in the way" in failure.error
    assert "copy to another destination" in failure.error
    assert "--delete" not in failure.error


def test_destination_delete_has_no_source(tmp_path, queue_dir):
    source = write(tmp_path / "src", {"a.txt": b"a"})
    destination = write(tmp_path / "dst", {"stale.txt": b"s"})
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.sync(str(source), str(destination), delete=True)
        deletes = [a for a in queue.get_actions() if a.kind == "delete"]
    assert len(deletes) == 1
    assert deletes[0].source is None


# Cancel in the same process, snapshots, segments --------------------------------


def test_cancel_from_thread_during_run(tmp_path, queue_dir):
    source = write(tmp_path / "src", {"victim.txt": b"v"})
    fifo = source / "blocker"
    os.mkfifo(fifo)
    destination = tmp_path / "dst"
    with StorageQueue(str(source), str(destination), name=str(queue_dir)) as queue:
        queue.copy_file(str(fifo), str(destination / "blocker"))
        victim = queue.copy_file(
            str(source / "victim.txt"), str(destination / "victim.txt")
        )
        thread = threading.Thread(target=queue.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: queue.status()["inprogress"] == 1)
            assert queue.cancel(victim) == [victim]
        finally:
            while thread.is_alive():
                release_fifo(fifo)
                thread.join(0.1)
        status = queue.get_action(victim).status
    assert status == "canceled"
    assert not (destination / "victim.txt").exists()


def populate(source: Path, destination: Path, queue_dir: Path) -> StorageQueue:
    """Open a queue holding every status: copied, skipped, failed, canceled."""
    write(source, {"a": b"a" * 10, "b": b"b" * 10, "sub/c": b"c" * 10})
    age(source)
    queue = StorageQueue(str(source), str(destination), name=str(queue_dir))
    queue.sync(str(source), str(destination))
    queue.run()
    queue.sync(str(source), str(destination))
    queue.copy_file(str(source / "missing"), str(destination / "m"))
    queue.run()
    queue.copy_file(str(source / "a"), str(destination / "waiting"))
    queue.cancel(queue.copy_file(str(source / "b"), str(destination / "canceled")))
    return queue


def describe(queue: StorageQueue) -> tuple:
    return queue.status(), queue.get_actions()


def test_compact_then_reopen_same_state(tmp_path, queue_dir):
    source = tmp_path / "src"
    destination = tmp_path / "dst"
    queue = populate(source, destination, queue_dir)
    before = describe(queue)
    waiting = queue.get_actions("waiting")[0].id
    queue.compact()
    queue.close()
    with StorageQueue(name=str(queue_dir)) as queue:
        after = describe(queue)

        # The same request while one waits adds nothing, and the digest
        # cache still finds all three files identical while listing.
        again = queue.copy_file(str(source / "a"), str(destination / "waiting"))
        skipped = queue.status()["skipped"]
        queue.sync(str(source), str(destination))
        planned = queue.status()["skipped"] - skipped

        queue.retry()
        summary = queue.run()
    for expected, found in zip(before, after, strict=True):
        assert found == expected
    assert again == waiting
    assert planned == 3
    assert read_state(queue_dir).status_counts()["waiting"] == 0
    assert summary.copied == 1


COMPACT = textwrap.dedent(
    """
    import sys
    from journalq import StorageQueue
    StorageQueue(name=sys.argv[1]).compact()
    """
)


@pytest.mark.parametrize(
    "point",
    ["snapshot.before_replace", "snapshot.after_replace", "journal.after_delete"],
)
def test_compact_killed_keeps_state(tmp_path, queue_dir, point):
    queue = populate(tmp_path / "src", tmp_path / "dst", queue_dir)
    before = describe(queue)
    queue.close()
    result = subprocess.run(
        [sys.executable, "-c", COMPACT, str(queue_dir)],
        env=dict(os.environ, JOURNALQ_CRASH_AT=point),
        check=False,
    )
    assert result.returncode == -9
    with StorageQueue(name=str(queue_dir)) as queue:
        after = describe(queue)
    for expected, found in zip(before, after, strict=True):
        assert found == expected


def test_reopens_keep_segments_bounded(tmp_path, queue_dir):
    StorageQueue(str(tmp_path), str(tmp_path / "dst"), name=str(queue_dir)).close()
    for _ in range(2 * CLOSE_SNAPSHOT_SEGMENTS):
        StorageQueue(name=str(queue_dir)).close()
    assert len(list((queue_dir / "journal").iterdir())) <= CLOSE_SNAPSHOT_SEGMENTS + 1


# Memory filesystem ----------------------------------------------------------------


def test_memory_source_survives_second_reader(memory, tmp_path, queue_dir):
    """Copy a memory file while a second reader opens and reads it.

    Outside this test, 8 workers making 16 copies of one 6 MiB memory file,
    five times over, left 5 of the 80 copies corrupt: the right size, wrong
    bytes, recorded as copied (2-core VM). Here the progress events put the
    second reader's open and read between the copy's reads, as a parallel
    worker's may fall, so the interleaving happens on every run.
    """
    data = bytes(range(256)) * (2 * CHUNK // 256)
    data = data[:CHUNK] + bytes(reversed(data[CHUNK:]))
    memory.pipe("/m/big.bin", data)
    other: list = []

    def second_reader(event: Event) -> None:
        if event.type is not EventType.PROGRESS:
            return
        if event.bytes == CHUNK and not other:
            other.append(memory.open("/m/big.bin", "rb"))
        elif event.bytes == 2 * CHUNK and len(other) == 1:
            other.append(other[0].read(CHUNK))

    target = tmp_path / "dst" / "big.bin"
    with StorageQueue("memory://", str(tmp_path / "dst"), name=str(queue_dir)) as q:
        q.copy_file("/m/big.bin", str(target))
        q.run(on_event=second_reader)
    assert target.read_bytes() == data
