"""Forked copy processes: their protocol, their failures, their end."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fsspec
import pytest
from tree_helpers import read_tree

from journalq import StorageQueue, copier, digest, executor, transfer
from journalq.backends import Filesystem
from journalq.events import EventType
from journalq.records import Kind, Outcome
from journalq.store import read_state

pytestmark = pytest.mark.skipif(
    not copier.available(), reason="copy processes exist only on Linux"
)


def make_files(root: Path, count: int) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    for index in range(count):
        name = f"d{index % 7}/f{index:04}.bin"
        data = os.urandom(index % 300)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        contents[name] = data
    return contents


def task_for(source: Path, destination: Path) -> copier.Task:
    stat = source.stat()
    return copier.Task(
        "0123456789abcdef",
        str(source),
        str(destination),
        stat.st_size,
        stat.st_mtime_ns,
    )


def test_copies_batch_in_order(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"first")
    (tmp_path / "b").write_bytes(b"second file")
    helper = copier.CopyProcess(executor.COPY_PROCESS_BYTES, str(tmp_path / "inbox"))
    try:
        helper.send([task_for(tmp_path / "a", tmp_path / "out" / "a")], None)
        helper.send([task_for(tmp_path / "b", tmp_path / "out" / "b")], None)
        first, second = helper.receive(), helper.receive()
    finally:
        helper.close()

    assert isinstance(first[0], copier.Copied)
    assert isinstance(second[0], copier.Copied)
    assert first[0].bytes == 5
    assert second[0].bytes == 11
    assert first[0].digest.startswith("xxh128:")
    assert (tmp_path / "out" / "b").read_bytes() == b"second file"
    mtime = (tmp_path / "a").stat().st_mtime_ns
    assert (tmp_path / "out" / "a").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b"]


def test_changed_source_is_left_to_coordinator(tmp_path: Path) -> None:
    source = tmp_path / "grown"
    source.write_bytes(b"short")
    task = task_for(source, tmp_path / "copy")
    source.write_bytes(b"longer than it was listed")
    missing = task_for(source, tmp_path / "other")
    missing = copier.Task(
        missing.action_id, str(tmp_path / "gone"), missing.destination, 1, 1
    )
    helper = copier.CopyProcess(executor.COPY_PROCESS_BYTES, str(tmp_path / "inbox"))
    try:
        helper.send([task, missing], None)
        outcomes = helper.receive()
    finally:
        helper.close()

    assert outcomes == [None, None]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grown"]


def test_dead_helper_raises(tmp_path: Path) -> None:
    helper = copier.CopyProcess(executor.COPY_PROCESS_BYTES, str(tmp_path / "inbox"))
    os.kill(helper._pid, signal.SIGKILL)
    os.waitpid(helper._pid, 0)

    def exchange() -> list[copier.Outcome]:
        helper.send([task_for(Path(__file__), tmp_path / "x")], None)
        return helper.receive()

    with pytest.raises(OSError, match=r"ended unexpectedly|Broken pipe"):
        exchange()
    assert helper.broken
    helper.close()


def test_helper_dies_with_coordinator(tmp_path: Path) -> None:
    """A coordinator killed with SIGKILL takes its copy processes along."""
    script = textwrap.dedent(
        """
        import sys, time
        from journalq import copier
        helper = copier.CopyProcess(1024, "/nonexistent/inbox")
        print(helper._pid, flush=True)
        time.sleep(60)
        """
    )
    coordinator = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    )
    assert coordinator.stdout is not None
    child = int(coordinator.stdout.readline())
    coordinator.kill()
    coordinator.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.01)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_queue_copies_through_processes(tmp_path: Path) -> None:
    count = executor.COPY_PROCESS_FILES + 50
    contents = make_files(tmp_path / "src", count)
    events: list[tuple[EventType, str]] = []
    with StorageQueue(tmp_path / "src", tmp_path / "dst", tmp_path / "q") as queue:
        queue.copy_tree("", "")
        summary = queue.run(on_event=lambda e: events.append((e.type, e.kind)))

    assert summary.copied == count
    assert read_tree(tmp_path / "dst") == contents
    assert events.count((EventType.STARTED, "copy_file")) == count
    assert events.count((EventType.COMPLETED, "copy_file")) == count
    state = read_state(tmp_path / "q")
    counts = state.status_counts()
    assert (counts["waiting"], counts["inprogress"], counts["failed"]) == (0, 0, 0)

    # Digests of both sides were journaled: a second sync reads nothing.
    with StorageQueue(tmp_path / "src", tmp_path / "dst", tmp_path / "q") as queue:
        queue.sync("", "")
        again = queue.run()
    assert again.copied == 0
    assert again.bytes == 0


def test_failures_in_process_fall_back(tmp_path: Path) -> None:
    count = executor.COPY_PROCESS_FILES + 10
    contents = make_files(tmp_path / "src", count)
    deleted = sorted(contents)[3]
    with StorageQueue(tmp_path / "src", tmp_path / "dst", tmp_path / "q") as queue:
        queue.copy_tree("", "")
        (tmp_path / "src" / deleted).unlink()
        summary = queue.run()
        failed = [a for a in queue.get_actions("failed") if a.kind == "copy_file"]

    assert summary.copied == count - 1
    assert summary.failed == 1
    assert len(failed) == 1
    assert deleted in str(failed[0].error)
    del contents[deleted]
    assert read_tree(tmp_path / "dst") == contents


def test_killed_helper_leaves_copies_to_coordinator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A copy process killed mid-run: the run copies its batches itself.

    The kill is real (SIGKILL to the helper's pid); the patch only picks the
    moment, just before the coordinator reads the first outcomes.
    """
    count = executor.COPY_PROCESS_FILES * 2
    contents = make_files(tmp_path / "src", count)
    receive = copier.CopyProcess.receive
    killed: list[int] = []

    def kill_then_receive(self: copier.CopyProcess) -> list[copier.Outcome]:
        if not killed:
            killed.append(self._pid)
            os.kill(self._pid, signal.SIGKILL)
        return receive(self)

    monkeypatch.setattr(copier.CopyProcess, "receive", kill_then_receive)
    with (
        caplog.at_level(logging.WARNING, logger="journalq"),
        StorageQueue(tmp_path / "src", tmp_path / "dst", tmp_path / "q") as queue,
    ):
        queue.copy_tree("", "")
        summary = queue.run()

    # Files the helper copied before it died, unreported, are found identical.
    assert killed
    assert summary.copied + summary.skipped == count
    assert summary.failed == 0
    assert read_tree(tmp_path / "dst") == contents
    # The CLI prints the logger's name and limits the executor's warnings.
    warnings = [
        record
        for record in caplog.records
        if "copying without that process" in record.getMessage()
    ]
    assert warnings
    assert {record.name for record in warnings} == {"journalq.executor"}


def test_unlisted_file_takes_found_size(tmp_path: Path) -> None:
    (tmp_path / "new").write_bytes(b"resumed")
    (tmp_path / "existing").write_bytes(b"a copy made before the crash")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "existing").write_bytes(b"a copy made before the crash")
    tasks = [
        copier.Task(
            "0123456789abcdef",
            str(tmp_path / name),
            str(tmp_path / "out" / name),
            -1,
            None,
        )
        for name in ("new", "existing")
    ]
    helper = copier.CopyProcess(executor.COPY_PROCESS_BYTES, str(tmp_path / "inbox"))
    try:
        helper.send(tasks, None)
        copied, existing = helper.receive()
    finally:
        helper.close()

    # A destination that exists needs comparing, which the coordinator does.
    assert existing is None
    assert isinstance(copied, copier.Copied)
    assert copied.bytes == 7
    assert copied.mtime_ns == (tmp_path / "new").stat().st_mtime_ns
    assert (tmp_path / "out" / "new").read_bytes() == b"resumed"


def test_resumed_run_uses_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run resumed without a listing still hands small files out."""
    count = executor.COPY_PROCESS_FILES + 20
    contents = make_files(tmp_path / "src", count)
    with StorageQueue(tmp_path / "src", tmp_path / "dst", tmp_path / "q") as queue:
        queue.copy_tree("", "")
    handed: list[int] = []
    original = copier.CopyProcess.send

    def counting_send(
        self: copier.CopyProcess,
        tasks: list[copier.Task],
        inbox_mtime_ns: int | None,
    ) -> None:
        handed.append(len(tasks))
        original(self, tasks, inbox_mtime_ns)

    monkeypatch.setattr(copier.CopyProcess, "send", counting_send)
    with StorageQueue(tmp_path / "src", tmp_path / "dst", tmp_path / "q") as queue:
        summary = queue.run()

    assert sum(handed) == count
    assert summary.copied == count
    assert read_tree(tmp_path / "dst") == contents


class InlineHelper:
    """A helper that copies each batch in this process when it is received.

    It implements the same protocol as a copy process or a cluster, so the
    run's hand-off code and the copy through fsspec sinks are tested
    without either.
    """

    max_bytes = None
    journals_start = False

    def __init__(
        self,
        source: fsspec.AbstractFileSystem,
        destination: fsspec.AbstractFileSystem,
    ) -> None:
        self.broken = False
        self.batches: list[list[copier.Task]] = []
        self.source = source
        self.destination = destination

    def send(self, tasks: list[copier.Task], inbox_mtime_ns: int | None = None) -> None:
        self.batches.append(list(tasks))

    def receive(self) -> list[copier.Outcome]:
        tasks = self.batches.pop(0)
        return copier.copy_tasks(tasks, self.source, self.destination, durable=True)

    def close(self) -> None:
        assert not self.batches


def test_run_hands_copies_to_given_helpers(
    tmp_path: Path, memory_fs: fsspec.AbstractFileSystem
) -> None:
    contents = make_files(tmp_path / "src", 40)
    made: list[InlineHelper] = []

    def helpers(source: Filesystem, destination: Filesystem) -> list[InlineHelper]:
        made.extend(InlineHelper(source.fs, destination.fs) for _ in range(2))
        return made

    with StorageQueue(tmp_path / "src", "memory://copy", tmp_path / "q") as queue:
        queue.copy_tree("", "")
        summary = queue._run(helpers=helpers)

    assert len(made) == 2
    assert summary.copied == 40
    copied = {
        path.removeprefix("/copy/"): memory_fs.cat_file(path)
        for path in memory_fs.find("/copy")
    }
    assert copied == contents


class CountingHelper(InlineHelper):
    """An inline helper that keeps the size of every batch sent to it."""

    def __init__(
        self,
        source: fsspec.AbstractFileSystem,
        destination: fsspec.AbstractFileSystem,
    ) -> None:
        super().__init__(source, destination)
        self.sizes: list[int] = []

    def send(self, tasks: list[copier.Task], inbox_mtime_ns: int | None = None) -> None:
        self.sizes.append(len(tasks))
        super().send(tasks, inbox_mtime_ns)


@pytest.mark.parametrize(
    ("journals_start", "largest"),
    [(False, executor.MAX_PROCESS_BATCH), (True, executor.MAX_BATCH)],
)
def test_batch_size_follows_journaling(
    tmp_path: Path,
    memory_fs: fsspec.AbstractFileSystem,
    journals_start: bool,
    largest: int,
) -> None:
    """Batches journaled as one hand-out are larger than per-action ones."""
    make_files(tmp_path / "src", 2400)
    made: list[CountingHelper] = []

    def helpers(source: Filesystem, destination: Filesystem) -> list[CountingHelper]:
        for _ in range(2):
            helper = CountingHelper(source.fs, destination.fs)
            helper.journals_start = journals_start
            made.append(helper)
        return made

    with StorageQueue(tmp_path / "src", "memory://sized", tmp_path / "q") as queue:
        queue.copy_tree("", "")
        summary = queue._run(helpers=helpers)

    assert summary.copied == 2400
    assert max(size for helper in made for size in helper.sizes) == largest


class DyingHelper(InlineHelper):
    """A helper whose copies stand for workers killed mid-copy.

    Each task leaves a partial temporary file with a nonce in its name, as
    a Dask worker killed during the write does, and comes back without an
    outcome. A worker cannot be killed at that point on cue, hence this
    stand-in.
    """

    journals_start = True

    def receive(self) -> list[copier.Outcome]:
        tasks = self.batches.pop(0)
        for task in tasks:
            temporary = transfer.temp_path(
                task.destination, task.action_id, 1, transfer.new_nonce()
            )
            self.destination.pipe_file(temporary, b"partial")
        return [None] * len(tasks)


def test_failed_journaled_handout_runs_here(tmp_path: Path) -> None:
    contents = make_files(tmp_path / "src", 20)
    destination = tmp_path / "dst"
    destination.mkdir()
    made: list[DyingHelper] = []

    def helpers(source: Filesystem, target: Filesystem) -> list[DyingHelper]:
        made.append(DyingHelper(source.fs, target.fs))
        return made

    with StorageQueue(tmp_path / "src", destination, tmp_path / "q") as queue:
        queue.copy_tree("", "")
        summary = queue._run(helpers=helpers)
        files = [
            action
            for action in queue.state.actions.values()
            if action.kind is Kind.COPY_FILE
        ]

    assert summary.copied == len(contents)
    assert summary.failed == 0
    assert read_tree(destination) == contents
    assert [path.name for path in destination.rglob(".*.jq-*")] == []
    # Attempt 1 was the hand-out, journaled as started and then failed.
    assert {action.attempts for action in files} == {2}
    assert {action.completed.attempt for action in files} == {2}


def test_helper_leaves_existing_destination(
    tmp_path: Path, memory_fs: fsspec.AbstractFileSystem
) -> None:
    (tmp_path / "a").write_bytes(b"new")
    memory_fs.pipe_file("/out/b", b"old")
    (tmp_path / "b").write_bytes(b"old")
    tasks = [
        copier.Task("0123456789abcdef", str(tmp_path / name), f"/out/{name}", -1, None)
        for name in ("a", "b")
    ]
    local = fsspec.filesystem("file")

    outcomes = copier.copy_tasks(tasks, local, memory_fs, durable=True)

    assert outcomes[1] is None
    assert isinstance(outcomes[0], copier.Copied)
    assert outcomes[0].bytes == 3
    assert outcomes[0].mtime_set is True
    # Off the local disk the coordinator reads no stamp either.
    assert outcomes[0].destination_stamp is None
    assert memory_fs.cat_file("/out/a") == b"new"


def compare_task(source: Path, destination: Path) -> copier.Task:
    """A resumed run's task (no listing) that compares an existing file."""
    return copier.Task(
        "0123456789abcdef", str(source), str(destination), -1, None, True
    )


def test_helper_reports_identical_destination(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"same bytes")
    (tmp_path / "dst").write_bytes(b"same bytes")
    before = (tmp_path / "dst").stat()
    local = fsspec.filesystem("file")

    [outcome] = copier.copy_tasks(
        [compare_task(tmp_path / "src", tmp_path / "dst")], local, local, durable=True
    )

    assert isinstance(outcome, copier.Identical)
    source = (tmp_path / "src").stat()
    assert outcome.size == 10
    assert outcome.digest == digest.hash_file(local, str(tmp_path / "src"))
    assert outcome.source_mtime_ns == source.st_mtime_ns
    assert outcome.source_stamp == (source.st_ctime_ns, source.st_ino)
    assert outcome.destination_stamp == (before.st_ctime_ns, before.st_ino)
    # Nothing was written: the same inode, the same ctime.
    after = (tmp_path / "dst").stat()
    assert (after.st_ino, after.st_ctime_ns) == (before.st_ino, before.st_ctime_ns)


@pytest.mark.parametrize(
    ("destination_bytes", "listed_size"),
    [
        (b"same length!", -1),  # same size, other bytes
        (b"longer than the source", -1),
        (b"same bytes", 999),  # the source changed since it was listed
    ],
)
def test_helper_leaves_mismatch_to_coordinator(
    tmp_path: Path, destination_bytes: bytes, listed_size: int
) -> None:
    (tmp_path / "src").write_bytes(b"same bytes")
    (tmp_path / "dst").write_bytes(destination_bytes)
    task = copier.Task(
        "0123456789abcdef",
        str(tmp_path / "src"),
        str(tmp_path / "dst"),
        listed_size,
        None if listed_size < 0 else 1,
        True,
    )
    local = fsspec.filesystem("file")

    assert copier.copy_tasks([task], local, local, durable=True) == [None]
    assert (tmp_path / "dst").read_bytes() == destination_bytes


def test_comparing_helper_copies_missing_destination(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"new file")
    local = fsspec.filesystem("file")

    [outcome] = copier.copy_tasks(
        [compare_task(tmp_path / "src", tmp_path / "dst")], local, local, durable=True
    )

    assert isinstance(outcome, copier.Copied)
    assert outcome.bytes == 8
    assert (tmp_path / "dst").read_bytes() == b"new file"
    # The stamp is the renamed file's, read after the rename.
    written = (tmp_path / "dst").stat()
    assert outcome.destination_stamp == (written.st_ctime_ns, written.st_ino)


def test_sync_into_identical_tree_compares_in_helpers(tmp_path: Path) -> None:
    """A first sync into a tree that contains the same files already.

    Under the checksum policy the helpers hash both sides; the coordinator
    journals the skips, with digests in the cache for the next sync. Files
    of the same size but other bytes come back to the coordinator, which
    copies them.
    """
    contents = make_files(tmp_path / "src", 60)
    destination = tmp_path / "dst"
    for name, data in contents.items():
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        (destination / name).write_bytes(data)
    changed = sorted(name for name, data in contents.items() if len(data) > 8)[:3]
    for name in changed:
        data = contents[name]
        (destination / name).write_bytes(bytes([data[0] ^ 1]) + data[1:])
    # An hour old, so the digest cache trusts the digests of both sides.
    an_hour_ago = time.time_ns() - 3600 * 10**9
    for path in [*(tmp_path / "src").rglob("*"), *destination.rglob("*")]:
        os.utime(path, ns=(an_hour_ago, an_hour_ago))
    created: list[InlineHelper] = []
    identical: list[copier.Identical] = []

    class Spy(InlineHelper):
        def receive(self) -> list[copier.Outcome]:
            outcomes = super().receive()
            identical.extend(o for o in outcomes if isinstance(o, copier.Identical))
            return outcomes

    def helpers(source: Filesystem, target: Filesystem) -> list[InlineHelper]:
        created.extend(Spy(source.fs, target.fs) for _ in range(2))
        return created

    with StorageQueue(tmp_path / "src", destination, tmp_path / "q") as queue:
        queue.sync("", "")
        summary = queue._run(helpers=helpers)
        methods = {
            action.completed.method
            for action in queue.state.actions.values()
            if action.kind is Kind.COPY_FILE
            and action.completed is not None
            and action.completed.outcome is Outcome.SKIPPED
        }
    assert summary.skipped == len(contents) - len(changed)
    assert summary.copied == len(changed)
    assert len(identical) == len(contents) - len(changed)
    assert methods == {"xxh128"}
    assert read_tree(destination) == contents

    with StorageQueue(tmp_path / "src", destination, tmp_path / "q") as queue:
        queue.sync("", "")
        again = queue.run()
    # Every file is now skipped from the cache, when listed.
    assert again.copied == 0
    assert again.identical_when_listed == len(contents)


@pytest.mark.parametrize("where", ["helpers", "coordinator"])
def test_identical_skip_gives_the_source_mtime(tmp_path: Path, where: str) -> None:
    """A file skipped for its content gets the source's mtime, as rsync -a does.

    Then a size+mtime comparison skips it too, and the digest cache contains
    the new mtime, so the next checksum sync skips every file when listed.
    """
    contents = make_files(tmp_path / "src", 40)
    destination = tmp_path / "dst"
    for name, data in contents.items():
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        (destination / name).write_bytes(data)
    two_hours_ago = time.time_ns() - 7200 * 10**9
    an_hour_ago = two_hours_ago + 3600 * 10**9
    for path in (tmp_path / "src").rglob("*"):
        os.utime(path, ns=(two_hours_ago, two_hours_ago))
    for path in destination.rglob("*"):
        os.utime(path, ns=(an_hour_ago, an_hour_ago))

    def helpers(source: Filesystem, target: Filesystem) -> list[InlineHelper]:
        return [InlineHelper(source.fs, target.fs)]

    with StorageQueue(tmp_path / "src", destination, tmp_path / "q") as queue:
        queue.sync("", "")
        if where == "helpers":
            summary = queue._run(helpers=helpers)
        else:
            summary = queue._run(helpers=lambda source, target: [])
    assert summary.skipped == len(contents)
    assert summary.copied == 0
    for name in contents:
        assert (destination / name).stat().st_mtime_ns == two_hours_ago

    queue_dir = tmp_path / "q"
    with StorageQueue(
        tmp_path / "src", destination, queue_dir, compare="size+mtime"
    ) as queue:
        queue.sync("", "")
        by_mtime = queue.run()
    with StorageQueue(tmp_path / "src", destination, queue_dir) as queue:
        queue.sync("", "")
        by_content = queue.run()
    assert by_mtime.copied == 0
    assert by_content.copied == 0
    assert by_content.identical_when_listed == len(contents)


def test_new_files_are_not_looked_up_again(tmp_path: Path) -> None:
    """Files listed without a destination go out without the compare flag.

    The helper then copies them without a look at the destination, one
    system call less per new file, as before the flag existed.
    """
    make_files(tmp_path / "src", 30)
    sent: list[copier.Task] = []

    class Spy(InlineHelper):
        def send(
            self, tasks: list[copier.Task], inbox_mtime_ns: int | None = None
        ) -> None:
            sent.extend(tasks)
            super().send(tasks, inbox_mtime_ns)

    def helpers(source: Filesystem, target: Filesystem) -> list[InlineHelper]:
        return [Spy(source.fs, target.fs)]

    with StorageQueue(tmp_path / "src", tmp_path / "dst", tmp_path / "q") as queue:
        queue.sync("", "")
        summary = queue._run(helpers=helpers)

    assert summary.copied == 30
    assert len(sent) == 30
    assert not any(task.compare for task in sent)


def test_split_batches_by_bytes_and_count() -> None:
    sizes = [3, 3, 3, 10, 1, 1, 1, 1]

    batches = copier.split_batches(sizes, lambda size: size, 6, max_items=3)

    assert batches == [[3, 3], [3], [10], [1, 1, 1], [1]]
    assert copier.split_batches([], lambda size: size, 6) == []
