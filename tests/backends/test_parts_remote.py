"""Large copies in journaled parts to and from S3, GCS and SFTP, killed and resumed.

Each test copies one file over its part threshold with a real
:class:`journalq.StorageQueue`, between a local directory and a remote, or
from one remote to another (S3 to SFTP, GCS to S3). A copy that is to die
runs in a forked child process that SIGKILLs itself at a crash point,
counted as in ``JOURNALQ_CRASH_AT``: after a part is durable but before
its record
(``parts.before_record:N``), just before the object is completed
(``parts.before_rename``), just after it (``parts.after_complete``), or
after an S3 upload is created but before its plan is journaled
(``s3.upload_created``). The counts N come from a seeded random
generator, so a failure reproduces. The copy that finishes runs in this
process.

Uploads reach the servers through relays on 127.0.0.1 that count what the
server received, bytes of killed requests included: ``relay.Relay`` for
moto and sshd (every byte of the connection, so HTTP headers and SSH
framing count too), ``gcs_sessions.SessionRelay`` for fake-gcs-server
(request bodies of uploads). That relay also answers the session status
queries that the emulator does not implement (see its docstring).
"""

from __future__ import annotations

import gc
import os
import random
import signal
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import fsspec
import msgspec
import pytest
import servers
from fsspec.asyn import sync
from gcs_sessions import SessionRelay
from relay import Relay
from store_helpers import Store

from journalq import RunSummary, StorageQueue, compare, digest, faults, parts
from journalq.backends import objects, open_filesystem, sftp_parts
from journalq.journal.reader import scan
from journalq.records import Completed, PartsPlanned, PartWritten, decode_batch
from journalq.store import JOURNAL_DIR

MIB = 1024 * 1024
#: Part sizes: S3's minimum part, a multiple of the 256 KiB that GCS
#: sessions take, and for SFTP fewer parts to sync (a sync took 60 ms on
#: the 2-core test machine).
PART_SIZES = {"s3": 5 * MIB, "gcs": MIB, "sftp": 2 * MIB}
#: 4 S3 parts, 16 GCS parts or 8 SFTP parts, the last one short. The
#: resume test sends twice as much to S3, so that it has more parts than
#: are in flight.
SIZE = 15 * MIB + 100 * 1024
#: Downloads use 1 MiB parts into a local file: seven parts.
DOWNLOAD_SIZE = 6 * MIB + MIB // 2
SEED = 1_729
#: The mtime of remote sources: 2020-09-13, in whole seconds for SFTP.
MTIME_NS = 1_600_000_000 * 10**9
#: Parts a killed run may have sent without journaling them. S3 and SFTP
#: parts are read up to twice PARTS_IN_FLIGHT ahead of the one being
#: journaled, and each of those may be sent, or cut off, at the kill, as
#: may the part whose record the kill stopped. GCS sends one part at a
#: time, but the next part starts as soon as one is sent, while the run
#: journals that one, so a kill before the record can find two parts
#: unjournaled. The next run finds the parts that reached the server
#: (by their ETags on S3, their bytes on SFTP, the persisted offset on
#: GCS) and does not send them again.
UNJOURNALED = {
    "s3": 2 * parts.PARTS_IN_FLIGHT + 1,
    "gcs": 2,
    "sftp": 2 * parts.PARTS_IN_FLIGHT + 1,
}
#: Bytes of the requests a resumed run to S3 sends besides parts: listing
#: the parts, completing the upload and replacing its metadata.
REQUESTS = 64 * 1024
#: What the relays count beyond the file's bytes in a run: HTTP headers of
#: each request to moto, SSH framing and MACs (about 1.5% measured for
#: sshd), and the SFTP read-back of parts, which counts requests only.
OVERHEAD = 0.03


@dataclass
class Remote:
    """One backend's store, reached through a counting relay."""

    name: str
    store: Store
    url: str
    options: dict[str, Any]
    counter: Relay | SessionRelay
    monkeypatch: pytest.MonkeyPatch
    fs: Any = field(init=False)

    def __post_init__(self) -> None:
        # journalq's own filesystem class, straight to the server.
        self.fs = open_filesystem(self.store.url, self.store.options).fs

    @property
    def sent(self) -> int:
        return self.counter.sent

    @property
    def received(self) -> int:
        return self.counter.received


@dataclass
class Copy:
    """A queue that copies ``big.bin`` from ``source`` to ``destination``."""

    queue: Path
    source: str
    destination: str
    source_options: dict[str, Any]
    destination_options: dict[str, Any]
    part_size: int
    compare: str | None = None

    def add(self) -> None:
        with self._open() as queue:
            queue.copy_file("big.bin", "big.bin")

    def killed(self, crash_at: str) -> None:
        """Run the queue in a forked child that SIGKILLs itself at ``crash_at``.

        ``crash_at`` is ``NAME[:N]``, as in ``JOURNALQ_CRASH_AT``: the N-th
        time the crash point NAME is reached. A fork starts in a fraction
        of the second that a new interpreter takes to import s3fs and
        gcsfs, and fsspec drops its cached filesystems and event loop in
        the child.
        """
        name, _, count = crash_at.partition(":")
        pid = os.fork()
        if pid == 0:
            try:
                # The child shares the parent's connections. Finalizing a
                # filesystem it inherited would close one for both (an SSH
                # disconnect), so those are never collected here.
                gc.freeze()
                inherited = _cached_filesystems()
                faults.install(faults._kill_at(name, int(count or 1)))
                with self._open() as queue:
                    summary = queue.run()
                del inherited
                print(f"{crash_at} not reached: {summary}", file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), f"{crash_at} not reached"
        assert os.WTERMSIG(status) == signal.SIGKILL

    def finish(self) -> RunSummary:
        with self._open() as queue:
            summary = queue.run()
        assert summary.failures == []
        assert summary.copied == 1
        return summary

    def records(self, kind: type) -> list[Any]:
        header = msgspec.msgpack.decode((self.queue / "FORMAT").read_bytes())
        result = scan(self.queue / JOURNAL_DIR, bytes.fromhex(header["queue_id"]))
        return [
            record
            for frame in result.frames
            for record in decode_batch(frame.payload)
            if isinstance(record, kind)
        ]

    def written(self) -> list[int]:
        """Return the part numbers of every ``PartWritten`` record, in order."""
        return [record.part.number for record in self.records(PartWritten)]

    def _open(self) -> StorageQueue:
        return StorageQueue(
            self.source,
            self.destination,
            name=self.queue,
            source_options=self.source_options,
            destination_options=self.destination_options,
            part_threshold=self.part_size,
            compare=self.compare,
        )


# Fixtures --------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_relay(s3_server: servers.Server) -> Iterator[Relay]:
    with Relay(s3_server.port) as relay:
        yield relay


@pytest.fixture(scope="module")
def gcs_relay(gcs_server: servers.Server) -> Iterator[SessionRelay]:
    with SessionRelay(gcs_server.port) as relay:
        yield relay


@pytest.fixture(scope="module")
def sftp_relay(sftp_server: tuple[servers.Server, Path]) -> Iterator[Relay]:
    with Relay(sftp_server[0].port) as relay:
        yield relay


@pytest.fixture
def remote(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Remote:
    """The store named by the ``remote`` parameter, through its relay."""
    return relayed(request, monkeypatch, request.param)


def relayed(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, name: str
) -> Remote:
    """Return a new store of backend ``name``, reached through its relay."""
    store: Store = request.getfixturevalue(f"{name}_store")
    counter = request.getfixturevalue(f"{name}_relay")
    counter.reset()
    address = f"http://{servers.HOST}:{counter.port}"
    if name in ("s3", "gcs"):
        server_options = request.getfixturevalue(f"{name}_options")
        options = {**server_options, "endpoint_url": address}
        return Remote(name, store, store.url, options, counter, monkeypatch)
    url = f"ssh://root@{servers.HOST}:{counter.port}{store.root}"
    return Remote(name, store, url, store.options, counter, monkeypatch)


def _cached_filesystems() -> list[fsspec.AbstractFileSystem]:
    """Return every filesystem instance fsspec caches, of every class."""
    found: list[fsspec.AbstractFileSystem] = []
    classes: list[type] = [fsspec.AbstractFileSystem]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        found.extend(cls.__dict__.get("_cache", {}).values())
    return found


def remotes(*names: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("remote", names, indirect=True)


def upload(
    tmp_path: Path, remote: Remote, data: bytes, compare: str | None = None
) -> Copy:
    """Write ``data`` to a local ``big.bin`` and queue its copy to ``remote``."""
    remote.monkeypatch.setattr(digest, "PART_SIZE", PART_SIZES[remote.name])
    source = tmp_path / "source"
    source.mkdir(exist_ok=True)
    (source / "big.bin").write_bytes(data)
    copy = Copy(
        tmp_path / "queue",
        str(source),
        remote.url,
        {},
        remote.options,
        PART_SIZES[remote.name],
        compare,
    )
    copy.add()
    return copy


def put_remote(remote: Remote, data: bytes, mtime_ns: int) -> None:
    """Write ``data`` to ``big.bin`` on ``remote``, with ``mtime_ns``.

    On S3 and GCS the mtime goes into journalq's metadata entry.
    """
    path = remote.store.path("big.bin")
    if remote.name == "s3":
        bucket, key = path.split("/", 1)
        remote.fs.call_s3(
            "put_object",
            Bucket=bucket,
            Key=key,
            Body=data,
            Metadata={objects.MTIME_KEY: str(mtime_ns)},
        )
    elif remote.name == "gcs":
        remote.fs.pipe_file(path, data, metadata={objects.MTIME_KEY: str(mtime_ns)})
    else:
        remote.store.write("big.bin", data)
        remote.fs.set_mtime(path, mtime_ns)
    remote.fs.invalidate_cache()


def download(tmp_path: Path, remote: Remote, data: bytes) -> Copy:
    """Write ``data`` to ``big.bin`` on ``remote`` and queue its copy here."""
    remote.monkeypatch.setattr(digest, "PART_SIZE", MIB)
    put_remote(remote, data, MTIME_NS)
    copy = Copy(
        tmp_path / "queue",
        remote.url,
        str(tmp_path / "local"),
        remote.options,
        {},
        MIB,
    )
    copy.add()
    return copy


def uploaded(remote: Remote) -> bytes:
    remote.fs.invalidate_cache()
    return remote.fs.cat_file(remote.store.path("big.bin"))


def assert_digest_stored(remote: Remote, data: bytes) -> None:
    """Check that an object store reports journalq's digest of ``data``.

    S3 and GCS objects carry it as metadata; SFTP files have none, and
    their server hashes them instead.
    """
    if remote.name == "sftp":
        return
    algorithm = digest.default_algorithm(len(data))
    hasher = digest.Hasher(algorithm)
    hasher.update(data)
    info = compare.stat(remote.fs, remote.store.path("big.bin"))
    assert info is not None
    assert info.reported(algorithm) == hasher.digest_string()


def leftovers(remote: Remote) -> list[Any]:
    """Return what an upload left beside its object: uploads, temporary files."""
    if remote.name == "s3":
        bucket = remote.store.root.split("/", 1)[0]
        listing = remote.fs.call_s3("list_multipart_uploads", Bucket=bucket)
        return listing.get("Uploads", [])
    remote.fs.invalidate_cache()
    listed = remote.fs.ls(remote.store.root, detail=False)
    names = [path.rsplit("/", 1)[1] for path in listed]
    return [name for name in names if name != "big.bin"]


# Uploads ---------------------------------------------------------------------


@dataclass
class Phase:
    """One run of a copy: what the server received and what it journaled."""

    sent: int
    #: The parts this run journaled, by number, with their sizes.
    journaled: dict[int, int]
    #: On S3, the numbers of the parts the upload had when the run ended.
    listed: set[int] = field(default_factory=set)

    @property
    def journaled_bytes(self) -> int:
        return sum(self.journaled.values())


class Phases:
    """The runs of one copy, each measured when it ends."""

    def __init__(self, copy: Copy, remote: Remote) -> None:
        self.copy = copy
        self.remote = remote
        self.runs: list[Phase] = []
        self._sent = remote.sent
        self._records = 0

    def end(self, may_repeat: frozenset[int] = frozenset()) -> Phase:
        """Measure the run that just ended (killed or finished).

        A resumed run never journals a part again, except those of
        ``may_repeat``.
        """
        records = self.copy.records(PartWritten)
        new = {
            record.part.number: record.part.size for record in records[self._records :]
        }
        earlier = {number for run in self.runs for number in run.journaled}
        repeated = (set(new) & earlier) - may_repeat
        assert repeated == set(), f"parts journaled again: {sorted(repeated)}"
        phase = Phase(self.remote.sent - self._sent, new, self._listed())
        self.runs.append(phase)
        self._sent = self.remote.sent
        self._records = len(records)
        return phase

    def _listed(self) -> set[int]:
        if self.remote.name != "s3" or not self.copy.records(PartsPlanned):
            return set()
        (plan,) = self.copy.records(PartsPlanned)[-1:]
        bucket, key = self.remote.store.path("big.bin").split("/", 1)
        try:
            listing = self.remote.fs.call_s3(
                "list_parts",
                Bucket=bucket,
                Key=key,
                UploadId=plan.upload.partition(".")[2],
            )
        except FileNotFoundError:
            return set()
        return {entry["PartNumber"] - 1 for entry in listing.get("Parts", [])}

    def check_s3_resumes(self, budget: int) -> None:
        """Check that no resumed run sent a part S3 had when it started.

        A resumed run sends the parts it journals that the upload lacked,
        and parts cut off by its own kill (at most ``budget`` bytes).
        """
        for index in range(1, len(self.runs)):
            run, before = self.runs[index], self.runs[index - 1]
            missing = sum(
                size
                for number, size in run.journaled.items()
                if number not in before.listed
            )
            cut_off = budget if index < len(self.runs) - 1 else 0
            allowed = (missing + cut_off) * (1 + OVERHEAD) + REQUESTS
            assert run.sent <= allowed, (index, self.runs)

    def check_interrupted(self, budget: int) -> None:
        """Check each run that a kill ended: at most ``budget`` bytes unjournaled.

        What a run sent beyond the parts it journaled was in flight at its
        kill: cut off, or complete at the server but not journaled, which
        the next run then finds there. Those bytes carry the protocol's
        overhead too: four whole SFTP parts in flight at a kill came to
        8,440,585 counted bytes for 8 MiB of parts.
        """
        for index, run in enumerate(self.runs[:-1]):
            beyond = run.sent - run.journaled_bytes * (1 + OVERHEAD)
            assert beyond <= budget * (1 + OVERHEAD), (index, self.runs)


@remotes("s3", "gcs", "sftp")
def test_upload_resumes_after_kills(tmp_path, remote):
    rng = random.Random(f"{SEED}-{remote.name}")
    size = 2 * SIZE if remote.name == "s3" else SIZE
    data = rng.randbytes(size)
    part_size = PART_SIZES[remote.name]
    count = -(-size // part_size)
    copy = upload(tmp_path, remote, data)
    phases = Phases(copy, remote)
    # GCS keeps the unaligned end of the last part in memory until the
    # upload completes, so a resumed run sends and journals it again.
    tail = frozenset({count - 1}) if remote.name == "gcs" else frozenset()

    # Two kills between parts, a third before the object is completed.
    copy.killed(f"parts.before_record:{rng.randint(2, count // 2)}")
    phases.end()
    journaled = len(copy.written())
    copy.killed(f"parts.before_record:{rng.randint(1, (count - journaled) // 2)}")
    phases.end()
    copy.killed("parts.before_rename")
    phases.end()
    copy.finish()
    last = phases.end(may_repeat=tail)

    assert uploaded(remote) == data
    assert len(copy.records(PartsPlanned)) == 1
    assert len(copy.records(Completed)) == 1
    assert set(copy.written()) == set(range(count))
    assert leftovers(remote) == []
    # Each interruption costs at most the parts in flight at the kill.
    phases.check_interrupted(UNJOURNALED[remote.name] * part_size)
    if remote.name == "s3":
        phases.check_s3_resumes(UNJOURNALED[remote.name] * part_size)
    # Every part was journaled before the last kill, so the last run sends
    # requests only, and on GCS the end of the last part.
    assert set(last.journaled) == tail
    assert last.sent <= size - (count - 1) * part_size + part_size * OVERHEAD
    info = compare.stat(remote.fs, remote.store.path("big.bin"))
    source_ns = (tmp_path / "source" / "big.bin").stat().st_mtime_ns
    assert info is not None
    # SFTP version 3 carries whole seconds.
    tolerance = 10**9 if remote.name == "sftp" else 0
    assert abs(info.mtime_ns - source_ns) <= tolerance
    assert_digest_stored(remote, data)


@pytest.mark.parametrize(
    ("source_name", "destination_name"),
    [("s3", "sftp"), ("gcs", "s3")],
    ids=["s3->sftp", "gcs->s3"],
)
def test_remote_copy_resumes_after_kill(
    tmp_path, request, monkeypatch, source_name, destination_name
):
    """A large file between two remotes, killed once between parts."""
    source = relayed(request, monkeypatch, source_name)
    destination = relayed(request, monkeypatch, destination_name)
    part_size = PART_SIZES[destination_name]
    monkeypatch.setattr(digest, "PART_SIZE", part_size)
    data = random.Random(f"{SEED}-{source_name}").randbytes(SIZE)
    count = -(-SIZE // part_size)
    put_remote(source, data, MTIME_NS)
    copy = Copy(
        tmp_path / "queue",
        source.url,
        destination.url,
        source.options,
        destination.options,
        part_size,
    )
    copy.add()
    phases = Phases(copy, destination)

    copy.killed("parts.before_record:3")
    killed = phases.end()
    downloaded = source.received
    summary = copy.finish()
    last = phases.end()

    assert uploaded(destination) == data
    assert len(copy.records(PartsPlanned)) == 1
    assert set(copy.written()) == set(range(count))
    assert leftovers(destination) == []
    assert len(killed.journaled) == 2
    phases.check_interrupted(UNJOURNALED[destination_name] * part_size)
    if destination_name == "s3":
        phases.check_s3_resumes(UNJOURNALED[destination_name] * part_size)
    # The resumed run sends the parts it journals, the ones cut off by the
    # kill included, and no other.
    assert last.sent <= last.journaled_bytes * (1 + OVERHEAD), phases.runs
    # It reads each part from the source at most once: the journaled ones
    # for the file's digest, unless the destination reads them back.
    assert source.received - downloaded <= SIZE * (1 + OVERHEAD)
    # Its summary counts the parts it sent, not those the killed run sent.
    assert summary.bytes == SIZE - killed.journaled_bytes


@remotes("s3", "gcs", "sftp")
def test_completed_upload_is_not_sent_again(tmp_path, remote):
    """A copy killed once its object is complete, but before its record.

    The compare policy ``always`` makes the resumed run copy the file
    instead of finding it identical, so the part target itself has to tell
    that the upload is complete.
    """
    data = random.Random(SEED).randbytes(SIZE)
    copy = upload(tmp_path, remote, data, compare="always")
    copy.killed("parts.after_complete")
    before = remote.sent

    copy.finish()

    assert uploaded(remote) == data
    # Requests only: a HEAD and a CopyObject, a status query and a PATCH,
    # or the SFTP reads of each part.
    assert remote.sent - before <= 64 * 1024, remote.sent - before
    assert len(copy.records(PartsPlanned)) == 1
    assert leftovers(remote) == []
    info = compare.stat(remote.fs, remote.store.path("big.bin"))
    source_ns = (tmp_path / "source" / "big.bin").stat().st_mtime_ns
    assert info is not None
    assert abs(info.mtime_ns - source_ns) < 10**9
    assert_digest_stored(remote, data)


@remotes("s3", "gcs", "sftp")
def test_changed_source_restarts_upload(tmp_path, remote):
    rng = random.Random(SEED)
    copy = upload(tmp_path, remote, rng.randbytes(SIZE))
    copy.killed("parts.before_record:3")
    changed = rng.randbytes(SIZE)
    (tmp_path / "source" / "big.bin").write_bytes(changed)

    copy.finish()

    assert uploaded(remote) == changed
    assert len(copy.records(PartsPlanned)) == 2
    assert leftovers(remote) == []


@remotes("s3", "sftp")
def test_damaged_part_is_sent_again(tmp_path, remote):
    """A part changed at the destination after it was journaled is resent.

    S3 keeps a part until the upload completes, but a part number may be
    uploaded again: part 1 gets other bytes, so its ETag no longer matches.
    On SFTP bytes inside part 1 of the temporary file are overwritten.
    GCS sessions have no such case: their bytes can only be appended.
    """
    data = random.Random(SEED).randbytes(SIZE)
    copy = upload(tmp_path, remote, data)
    copy.killed("parts.before_record:3")
    (plan,) = copy.records(PartsPlanned)
    part_size = PART_SIZES[remote.name]
    if remote.name == "s3":
        bucket, key = remote.store.path("big.bin").split("/", 1)
        remote.fs.call_s3(
            "upload_part",
            Bucket=bucket,
            Key=key,
            UploadId=plan.upload.partition(".")[2],
            PartNumber=2,
            Body=b"damage" * (part_size // 6 + 1),
        )
    else:
        with open(plan.upload, "r+b") as temporary:
            temporary.seek(part_size + 10)
            temporary.write(b"damage")
    before = len(copy.written())

    copy.finish()

    assert uploaded(remote) == data
    assert 1 in copy.written()[before:]
    assert 0 not in copy.written()[before:]
    assert leftovers(remote) == []


@remotes("s3", "gcs")
def test_lost_upload_starts_over(tmp_path, remote, caplog):
    """An upload removed at the server after a kill: a new plan, in parts.

    The S3 upload is aborted, the GCS session canceled, as a lifecycle
    rule or the week GCS keeps a session would.
    """
    data = random.Random(SEED).randbytes(SIZE)
    copy = upload(tmp_path, remote, data)
    copy.killed("parts.before_record:3")
    (plan,) = copy.records(PartsPlanned)
    if remote.name == "s3":
        bucket, key = remote.store.path("big.bin").split("/", 1)
        remote.fs.call_s3(
            "abort_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=plan.upload.partition(".")[2],
        )
    else:
        # Through the relay, which keeps the cancellation the emulator drops.
        sync(remote.fs.loop, remote.fs._request, "DELETE", plan.upload)

    copy.finish()

    assert uploaded(remote) == data
    assert "no longer exists" in caplog.text
    assert len(copy.records(PartsPlanned)) == 2
    assert leftovers(remote) == []


@remotes("s3")
def test_unjournaled_upload_is_aborted(tmp_path, remote):
    data = random.Random(SEED).randbytes(SIZE)
    copy = upload(tmp_path, remote, data)
    # Killed after CreateMultipartUpload, before the plan was journaled.
    copy.killed("s3.upload_created")
    assert copy.records(PartsPlanned) == []
    assert len(leftovers(remote)) == 1

    copy.finish()

    assert uploaded(remote) == data
    assert leftovers(remote) == []


# Downloads -------------------------------------------------------------------


@remotes("s3", "gcs", "sftp")
def test_download_resumes_after_kill(tmp_path, remote):
    data = random.Random(SEED).randbytes(DOWNLOAD_SIZE)
    copy = download(tmp_path, remote, data)
    copy.killed("parts.before_record:4")
    journaled = copy.written()
    before = remote.received

    copy.finish()

    assert (tmp_path / "local" / "big.bin").read_bytes() == data
    resent = copy.written()[len(journaled) :]
    assert journaled == [0, 1, 2]
    assert set(resent).isdisjoint(journaled)
    assert len(copy.records(PartsPlanned)) == 1
    # The journaled parts come from the local parts file, not the server.
    rest = DOWNLOAD_SIZE - len(journaled) * MIB
    assert remote.received - before <= rest * (1 + OVERHEAD), remote.received


@remotes("s3", "gcs", "sftp")
def test_changed_remote_source_restarts(tmp_path, remote):
    """A source replaced between the kill and the resume is copied anew.

    The new object has the old one's size and, on S3 and GCS, the same
    mtime in journalq's metadata, so only its ETag (S3), its generation
    (GCS) and its digests tell it apart. SFTP reports size and mtime alone,
    so its new file gets another mtime.
    """
    rng = random.Random(SEED)
    copy = download(tmp_path, remote, rng.randbytes(DOWNLOAD_SIZE))
    copy.killed("parts.before_record:4")
    changed = rng.randbytes(DOWNLOAD_SIZE)
    later = 10**9 if remote.name == "sftp" else 0
    put_remote(remote, changed, MTIME_NS + later)

    copy.finish()

    assert (tmp_path / "local" / "big.bin").read_bytes() == changed
    assert len(copy.records(PartsPlanned)) == 2


@remotes("s3", "gcs")
def test_source_identity_names_version(tmp_path, remote):
    remote.store.write("big.bin", b"first version")
    path = remote.store.path("big.bin")
    first = parts.source_identity(compare.stat(remote.fs, path))
    remote.store.write("big.bin", b"other version")
    remote.fs.invalidate_cache()
    second = parts.source_identity(compare.stat(remote.fs, path))

    assert first.etag is not None
    assert first.size == second.size
    assert first.etag != second.etag
    if remote.name == "gcs":
        info = remote.fs.info(path)
        assert second.etag == str(info["generation"])


@remotes("s3")
def test_tree_download_reads_file_once(tmp_path, remote):
    """A large file of a tree copied from S3 is downloaded once.

    The executor takes the file's size and mtime from the tree's listing
    and plans the parts with them. After the last part it stats the
    source, which now reports the ETag and digests too, and retries.
    """
    remote.monkeypatch.setattr(digest, "PART_SIZE", MIB)
    put_remote(remote, random.Random(SEED).randbytes(DOWNLOAD_SIZE), MTIME_NS)
    remote.counter.reset()
    root = remote.url.rsplit("/", 1)[0]
    with StorageQueue(
        root,
        tmp_path / "local",
        name=tmp_path / "queue",
        source_options=remote.options,
        part_threshold=MIB,
    ) as queue:
        queue.copy_tree(remote.store.root.rsplit("/", 1)[1], "tree")
        summary = queue.run()

    assert summary.failures == []
    assert summary.retried == 0
    assert remote.received <= DOWNLOAD_SIZE * (1 + OVERHEAD)


def fail_third_fsync(remote: Any, error: Exception) -> list[bool]:
    """Make the third fsync of a parts file raise ``error``.

    Returns the list that each read-back check appends its result to: True
    when it found a part whole in the parts file and did not write it.
    """
    fsync = asyncssh.SFTPClientFile.fsync
    calls = 0

    async def failing_third(self: asyncssh.SFTPClientFile) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise error
        await fsync(self)

    found: list[bool] = []
    written_before = sftp_parts.SFTPPartTarget._written_before

    def spy(target: Any, file: Any, offset: int, part: bytes) -> bool:
        found.append(written_before(target, file, offset, part))
        return found[-1]

    remote.monkeypatch.setattr(asyncssh.SFTPClientFile, "fsync", failing_third)
    remote.monkeypatch.setattr(sftp_parts.SFTPPartTarget, "_written_before", spy)
    return found


@remotes("sftp")
def test_failed_parts_sync_writes_parts_again(tmp_path, remote):
    """After a failed fsync the retry writes its parts instead of reading back.

    The failure is simulated, because a real server cannot be made to fail
    one fsync on cue: the third fsync of the parts file raises
    SFTPConnectionLost in place of the request. The bytes of that part may
    be in the server's page cache only, so reading them back would find
    them intact although its disk may not have them.
    """
    data = random.Random(f"{SEED}-sync").randbytes(SIZE)
    copy = upload(tmp_path, remote, data)
    lost = asyncssh.SFTPConnectionLost("connection lost during fsync")
    found = fail_third_fsync(remote, lost)

    summary = copy.finish()

    assert summary.retried == 1
    assert uploaded(remote) == data
    assert found
    assert not any(found)


@remotes("sftp")
def test_lost_connection_keeps_parts(tmp_path, remote):
    """A connection lost during an fsync leaves the parts file in place.

    The loss gives no information about the server's disk, so a process that never
    saw it reads the parts back instead of writing them all again. The
    loss is simulated as above; the process is simulated by turning off
    this process's record of failed syncs.
    """
    data = random.Random(f"{SEED}-sync-lost").randbytes(SIZE)
    copy = upload(tmp_path, remote, data)
    lost = asyncssh.SFTPConnectionLost("connection lost during fsync")
    found = fail_third_fsync(remote, lost)
    remote.monkeypatch.setattr(parts, "note_failed_sync", lambda upload: None)

    summary = copy.finish()

    assert summary.retried == 1
    assert uploaded(remote) == data
    assert any(found)


@remotes("sftp")
def test_sync_failure_removes_parts(tmp_path, remote):
    """A server that replies to an fsync with a failure loses the parts file.

    So the retry writes every part again even in a process that never saw
    the failure. The test simulates such a process by turning off this
    process's record of failed syncs. The failure is simulated, as above,
    as the SFTPFailure a server sends when its fsync fails. That fails the
    action, and ``retry`` makes it wait again.
    """
    data = random.Random(f"{SEED}-sync-answer").randbytes(SIZE)
    copy = upload(tmp_path, remote, data)
    found = fail_third_fsync(remote, asyncssh.SFTPFailure("fsync failed"))
    remote.monkeypatch.setattr(parts, "note_failed_sync", lambda upload: None)
    with copy._open() as queue:
        assert queue.run().failed == 1
        assert queue.retry()

    summary = copy.finish()

    assert uploaded(remote) == data
    assert summary.retried == 0
    assert found
    assert not any(found)
