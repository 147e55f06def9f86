"""Large copies in journaled parts: resume after a kill, changes, damage."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from durable_helpers import RecordingOps

from journalq import RunSummary, StorageQueue, digest, durable, faults
from journalq.journal.reader import scan
from journalq.records import Completed, PartsPlanned, PartWritten, decode_batch
from journalq.replay import decode_state, encode_state
from journalq.store import JOURNAL_DIR, read_state

MIB = 1024 * 1024
#: A 6.5 MiB file in 1 MiB parts: seven parts, the last one short.
SIZE = 6 * MIB + MIB // 2


def file_digest(data: bytes) -> str:
    """Return the digest a read of the whole file gives, part-wise when large."""
    hasher = digest.Hasher(digest.default_algorithm(len(data)))
    hasher.update(data)
    return hasher.digest_string()


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of 1 MiB, so a file of a few MiB has several."""
    monkeypatch.setattr(digest, "PART_SIZE", MIB)


def journal_records(queue_dir: Path, kind: type) -> list:
    """Return the records of type ``kind`` in the queue's journal, in order."""
    header = msgspec.msgpack.decode((queue_dir / "FORMAT").read_bytes())
    result = scan(queue_dir / JOURNAL_DIR, bytes.fromhex(header["queue_id"]))
    return [
        record
        for frame in result.frames
        for record in decode_batch(frame.payload)
        if isinstance(record, kind)
    ]


def run_copy(tmp_path: Path, **extra: object) -> RunSummary:
    with StorageQueue(
        tmp_path / "src", tmp_path / "dst", tmp_path / "q", part_threshold=MIB
    ) as queue:
        queue.copy_file("big.bin", "big.bin")
        summary = queue.run(**extra)
    assert summary.failed == 0
    return summary


#: Child code that SIGKILLs the copy at the N-th record of a part (N is
#: ``RECORDS``), once every part is whole in the parts file. The pool
#: threads go on writing while the thread that journals waits here, so the
#: parts from the N-th on are all written but none is journaled.
KILL_ONCE_ALL_WRITTEN = """
import glob, os, signal, time
from journalq import faults
whole = open(sys.argv[1] + "/big.bin", "rb").read()
records = 0

def kill_once_all_written(name):
    global records
    if name != "parts.before_record":
        return
    records += 1
    if records < RECORDS:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        (path,) = glob.glob(sys.argv[2] + "/.big.bin.jq-*-parts.tmp")
        if open(path, "rb").read() == whole:
            break
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGKILL)

faults.install(kill_once_all_written)
"""


def killed_copy(tmp_path: Path, crash_at: str, setup: str = "") -> int:
    """Run the copy in a child that SIGKILLs itself at ``crash_at``.

    ``setup`` is code the child runs before the copy.
    """
    script = textwrap.dedent(
        f"""
        import sys
        from journalq import StorageQueue, digest, parts
        digest.PART_SIZE = {MIB}
        """
    )
    script += setup + textwrap.dedent(
        f"""
        with StorageQueue(sys.argv[1], sys.argv[2], sys.argv[3],
                          part_threshold={MIB}) as queue:
            queue.copy_file("big.bin", "big.bin")
            queue.run()
        """
    )
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            tmp_path / "src",
            tmp_path / "dst",
            tmp_path / "q",
        ],
        env={**os.environ, "JOURNALQ_CRASH_AT": crash_at},
        capture_output=True,
        check=False,
    )
    return child.returncode


@pytest.fixture
def source(tmp_path: Path) -> bytes:
    data = os.urandom(SIZE)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(data)
    return data


def test_large_copy_goes_in_parts(tmp_path: Path, source: bytes) -> None:
    run_copy(tmp_path)

    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    state = read_state(tmp_path / "q")
    (action,) = list(state.actions.values())
    assert action.completed is not None
    assert action.parts is None
    written = journal_records(tmp_path / "q", PartWritten)
    assert [record.part.number for record in written] == list(range(7))
    assert written[-1].part.size == MIB // 2
    assert len(journal_records(tmp_path / "q", PartsPlanned)) == 1
    # The part-wise digest, which a read of the whole file gives too.
    (completed,) = journal_records(tmp_path / "q", Completed)
    assert completed.source.digest == file_digest(source)
    assert os.listdir(tmp_path / "dst") == ["big.bin"]


def test_killed_copy_resends_one_part(tmp_path: Path, source: bytes) -> None:
    # Killed after the fourth part is durable but before its record.
    assert killed_copy(tmp_path, "parts.before_record:4") == -9
    before = len(journal_records(tmp_path / "q", PartWritten))
    assert before == 3

    summary = run_copy(tmp_path)

    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    # The three journaled parts were not sent again, so they are not counted.
    assert summary.bytes == SIZE - 3 * MIB
    assert summary.resumed_bytes == 3 * MIB
    written = journal_records(tmp_path / "q", PartWritten)
    resent = [record.part.number for record in written[before:]]
    assert resent == [3, 4, 5, 6]
    assert len(journal_records(tmp_path / "q", PartsPlanned)) == 1
    assert sorted(os.listdir(tmp_path / "dst")) == ["big.bin"]


def test_killed_copy_lists_journaled_bytes(tmp_path: Path, source: bytes) -> None:
    """Between runs, the action's bytes count the parts already journaled."""
    assert killed_copy(tmp_path, "parts.before_record:4") == -9

    with StorageQueue(name=str(tmp_path / "q")) as queue:
        (info,) = queue.get_actions()

    assert info.status == "waiting"
    assert info.bytes == 3 * MIB


def test_changed_source_restarts_copy(tmp_path: Path, source: bytes) -> None:
    assert killed_copy(tmp_path, "parts.before_record:3") == -9
    changed = os.urandom(SIZE)
    (tmp_path / "src" / "big.bin").write_bytes(changed)

    summary = run_copy(tmp_path)

    assert (tmp_path / "dst" / "big.bin").read_bytes() == changed
    assert summary.bytes == SIZE
    plans = journal_records(tmp_path / "q", PartsPlanned)
    assert len(plans) == 2
    assert plans[1].source.size == SIZE


def test_journaled_parts_are_not_read_again(
    tmp_path: Path, source: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed copy reads neither the journaled parts nor their source.

    The file's digest comes from the digests the parts journaled, and a
    journaled part was synced before its record, so the parts file only
    has to reach past it.
    """
    assert killed_copy(tmp_path, "parts.before_record:5") == -9
    journaled = len(journal_records(tmp_path / "q", PartWritten))
    assert journaled == 4
    reads: list[tuple[str, int]] = []
    pread = os.pread

    def spy(fd: int, length: int, offset: int) -> bytes:
        reads.append((os.readlink(f"/proc/self/fd/{fd}"), offset))
        return pread(fd, length, offset)

    monkeypatch.setattr(os, "pread", spy)

    summary = run_copy(tmp_path)

    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    assert summary.bytes == SIZE - journaled * MIB
    assert reads, "the parts after the journaled ones are read"
    assert min(offset for _, offset in reads) == journaled * MIB
    (completed,) = journal_records(tmp_path / "q", Completed)
    assert completed.source.digest == file_digest(source)


def test_retry_in_same_run_counts_whole_file(tmp_path: Path, source: bytes) -> None:
    """Parts sent by an earlier attempt of the same run count as sent.

    A hook at the crash point raises ConnectionError, the transient error
    of a dropped connection, which a local disk cannot be made to raise.
    """
    records = 0

    def drop_connection(name: str) -> None:
        nonlocal records
        if name == "parts.before_record":
            records += 1
            if records == 3:
                raise ConnectionError("connection reset while sending part 3")

    faults.install(drop_connection)
    try:
        summary = run_copy(tmp_path, parallelism=1)
    finally:
        faults.clear()

    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    assert summary.retried == 1
    assert summary.bytes == SIZE


def test_stopped_copy_counts_its_journaled_parts(tmp_path: Path, source: bytes) -> None:
    """A run stopped part way counts the parts it journaled, and the run
    that resumes counts the rest, so the two summaries add up to the file."""
    stop = threading.Event()
    records = 0

    def stop_at_third_part(name: str) -> None:
        nonlocal records
        if name == "parts.before_record":
            records += 1
            if records == 3:
                stop.set()

    faults.install(stop_at_third_part)
    try:
        stopped = run_copy(tmp_path, stop=stop)
    finally:
        faults.clear()
    journaled = sum(r.part.size for r in journal_records(tmp_path / "q", PartWritten))
    resumed = run_copy(tmp_path)

    assert stopped.interrupted
    assert 0 < journaled < SIZE
    assert stopped.bytes == journaled
    assert stopped.bytes + resumed.bytes == SIZE
    assert (tmp_path / "dst" / "big.bin").read_bytes() == source


def test_killed_before_rename_completes(tmp_path: Path, source: bytes) -> None:
    assert killed_copy(tmp_path, "parts.before_rename") == -9
    assert not (tmp_path / "dst" / "big.bin").exists()

    run_copy(tmp_path)

    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    written = journal_records(tmp_path / "q", PartWritten)
    assert len(written) == 7


def test_small_file_goes_whole(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(b"x" * (MIB - 1))

    run_copy(tmp_path)

    assert journal_records(tmp_path / "q", PartsPlanned) == []
    assert (tmp_path / "dst" / "big.bin").stat().st_size == MIB - 1


def test_snapshot_keeps_parts(tmp_path: Path, source: bytes) -> None:
    assert killed_copy(tmp_path, "parts.before_record:3") == -9
    state = read_state(tmp_path / "q")
    (action,) = list(state.actions.values())
    assert action.parts is not None

    restored = decode_state(encode_state(state)).actions[action.action_id]

    assert restored.parts == action.parts
    assert sorted(restored.parts.written) == [0, 1]


# Parts written but not journaled before a kill --------------------------------

#: Bytes a resumed run writes besides parts: journal records and the
#: queue's small files. About 1 KiB was measured, and the smallest part of
#: the test file is 512 KiB.
OTHER_WRITES = 128 * 1024


def bytes_written() -> int:
    """Return the bytes this process has passed to write calls so far.

    ``wchar`` in ``/proc/self/io`` counts every ``write`` and ``pwrite``,
    whether or not the bytes reach the disk.
    """
    with open("/proc/self/io") as io:
        for line in io:
            name, _, value = line.partition(":")
            if name == "wchar":
                return int(value)
    raise AssertionError("/proc/self/io has no wchar line")


def killed_with_unjournaled_parts(tmp_path: Path, source: bytes) -> Path:
    """Kill a copy with parts 0 to 2 journaled and parts 3 to 6 written.

    Returns the parts file.
    """
    setup = f"RECORDS = 4\n{KILL_ONCE_ALL_WRITTEN}"
    assert killed_copy(tmp_path, "", setup=setup) == -9
    journaled = [r.part.number for r in journal_records(tmp_path / "q", PartWritten)]
    assert journaled == [0, 1, 2]
    (plan,) = journal_records(tmp_path / "q", PartsPlanned)
    upload = Path(plan.upload)
    assert upload.read_bytes() == source, "the child died before every part was in"
    return upload


needs_proc_io = pytest.mark.skipif(
    not os.path.exists("/proc/self/io"), reason="counts writes in /proc/self/io"
)


@needs_proc_io
def test_resume_keeps_unjournaled_parts(tmp_path: Path, source: bytes) -> None:
    killed_with_unjournaled_parts(tmp_path, source)

    before = bytes_written()
    summary = run_copy(tmp_path)
    written = bytes_written() - before

    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    # Parts 3 to 6 (3.5 MiB) were in the file: none was written again.
    assert written < OTHER_WRITES
    records = journal_records(tmp_path / "q", PartWritten)
    assert [record.part.number for record in records[3:]] == [3, 4, 5, 6]
    # The kept parts count as journaled by this run, as written ones do.
    assert summary.bytes == SIZE - 3 * MIB
    (completed,) = journal_records(tmp_path / "q", Completed)
    assert completed.source.digest == file_digest(source)
    assert os.listdir(tmp_path / "dst") == ["big.bin"]


def garble_part_3(upload: Path) -> None:
    with open(upload, "r+b") as file:
        file.seek(3 * MIB + 10)
        file.write(b"damage")


def zero_part_4(upload: Path) -> None:
    with open(upload, "r+b") as file:
        file.seek(4 * MIB)
        file.write(bytes(MIB))


def cut_in_part_5(upload: Path) -> None:
    os.truncate(upload, 5 * MIB + 100)


@needs_proc_io
@pytest.mark.parametrize(
    ("damage", "rewritten"),
    [(garble_part_3, MIB), (zero_part_4, MIB), (cut_in_part_5, MIB + MIB // 2)],
    ids=["garbage", "zeros", "short"],
)
def test_resume_rewrites_damaged_parts(
    tmp_path: Path,
    source: bytes,
    damage: Callable[[Path], None],
    rewritten: int,
) -> None:
    """An unjournaled part whose bytes differ is written again, and only it.

    The damage is done by hand, as a power cut or a disk would do it: other
    bytes, zeros where the data was not yet written back, a file cut short.
    """
    damage(killed_with_unjournaled_parts(tmp_path, source))

    before = bytes_written()
    run_copy(tmp_path)
    written = bytes_written() - before

    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    assert written >= rewritten
    assert written < rewritten + OTHER_WRITES
    (completed,) = journal_records(tmp_path / "q", Completed)
    assert completed.source.digest == file_digest(source)


class PartSyncs(RecordingOps):
    """Real file operations that also record each sync of a parts file."""

    def fdatasync(self, fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("-parts.tmp"):
            self.steps.append("sync parts")
        super().fdatasync(fd)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_kept_part_synced_before_record(
    tmp_path: Path, source: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each kept part is synced before its record, as a written part is.

    The killed attempt may have died between its write and its sync, and
    after a power cut a journaled part must be on the disk.
    """
    killed_with_unjournaled_parts(tmp_path, source)
    ops = PartSyncs()
    monkeypatch.setattr(durable, "ops", ops)

    def note_record(name: str) -> None:
        if name == "parts.before_record":
            ops.steps.append("record")

    faults.install(note_record)
    try:
        run_copy(tmp_path)
    finally:
        faults.clear()

    records = [i for i, step in enumerate(ops.steps) if step == "record"]
    assert len(records) == 4
    for count, index in enumerate(records, start=1):
        synced = ops.steps[:index].count("sync parts")
        assert synced >= count, ops.steps


class FailingPartSync(durable.FileOps):
    """Fails the ``fail_at``-th sync of a parts file with EIO, without syncing."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.syncs = 0

    def fdatasync(self, fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("-parts.tmp"):
            self.syncs += 1
            if self.syncs == self.fail_at:
                raise OSError(errno.EIO, "Input/output error")
        super().fdatasync(fd)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_failed_sync_rewrites_parts(
    tmp_path: Path,
    source: bytes,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a failed sync the retry writes its parts instead of reading back.

    The failed ``fdatasync`` is simulated, because a test cannot make a real
    local disk fail one: the layer raises EIO in place of the sync. The
    part of that sync is whole in the page cache, so reading it back would
    find it intact although the disk may not have it.
    """
    monkeypatch.setattr(durable, "ops", FailingPartSync(fail_at=3))
    caplog.set_level(logging.DEBUG, logger="journalq.parts")

    summary = run_copy(tmp_path)

    assert summary.retried == 1
    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    assert READ_BACK not in caplog.text


#: The log message for a part found whole in the parts file and not written.
READ_BACK = "synced without being written"

#: Child code: the third sync of the parts file fails with EIO (simulated).
#: The child SIGKILLs itself once the journal has the failed attempt and
#: before a retry, so its record of the failure is lost.
FAIL_SYNC_THEN_DIE = """
import errno, os, signal
from journalq import durable, faults

class FailThirdSync(durable.FileOps):
    syncs = 0

    def fdatasync(self, fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("-parts.tmp"):
            FailThirdSync.syncs += 1
            if FailThirdSync.syncs == 3:
                raise OSError(errno.EIO, "Input/output error")
        super().fdatasync(fd)

def die_after_failure(name):
    if name == "journal.after_write" and FailThirdSync.syncs >= 3:
        os.kill(os.getpid(), signal.SIGKILL)

durable.ops = FailThirdSync()
faults.install(die_after_failure)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_failed_sync_next_process_rewrites(
    tmp_path: Path, source: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A process that resumes after a failed sync writes the parts too.

    The failed ``fdatasync`` is simulated, as above. The process that saw
    it is killed before it retries, so the next process has no record of
    the failure in memory, and the parts file must be gone.
    """
    assert killed_copy(tmp_path, "", setup=FAIL_SYNC_THEN_DIE) == -9
    (plan,) = journal_records(tmp_path / "q", PartsPlanned)
    assert not Path(plan.upload).exists()
    caplog.set_level(logging.DEBUG, logger="journalq.parts")

    run_copy(tmp_path)

    assert (tmp_path / "dst" / "big.bin").read_bytes() == source
    assert READ_BACK not in caplog.text
