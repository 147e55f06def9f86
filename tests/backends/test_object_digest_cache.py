"""Digests of objects cached under their ETag, against moto and fake-gcs-server.

A checksum sync to S3 or GCS journals the destination's digest with the
ETag (S3) or generation (GCS) the object had, so the next sync decides an
unchanged object from the listing alone, with no request per object. The
request counts come from wrapping the request methods of the queue's
filesystem in this process: the wrappers only count the calls, and the
servers still handle every request.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from store_helpers import Store
from test_backend_rules import open_queue

from journalq import digest
from journalq.backends.gcs import GCSFilesystem
from journalq.backends.s3 import PART_SIZE, S3Filesystem
from journalq.events import RunSummary
from journalq.journal import scan
from journalq.records import Digested, PartsPlanned, Service, decode_batch
from journalq.replay import QueueState
from journalq.store import read_format

#: Files per tree: enough that a request per file would show.
FILES = 12


def write_old_files(store: Store, files: dict[str, bytes]) -> None:
    """Write ``files`` under ``data`` with mtimes a minute old.

    A source digest is cached only for an mtime older than the read by
    ``compare.MTIME_GUARD_NS``, so the files must not be brand new.
    """
    old = time.time_ns() - 60 * 1_000_000_000
    for name, content in files.items():
        store.write(f"data/{name}", content)
        os.utime(store.path(f"data/{name}"), ns=(old, old))


def tree(count: int = FILES) -> dict[str, bytes]:
    return {f"d{n % 3}/f{n:03d}.txt": f"content {n:03d}".encode() for n in range(count)}


class RequestLog:
    """The per-object stat requests that watched filesystems send.

    S3 records each ``HeadObject`` by key, GCS each ``info()`` by path
    (one request for an object's resource, unless gcsfs has it cached).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        self._monkeypatch = monkeypatch
        self._watched: set[int] = set()

    def watch(self, fs: Any) -> None:
        """Record the requests of ``fs`` from now on, and forget earlier ones.

        fsspec caches filesystem instances and gives each instance its own
        sync methods when it is created, so the wrapper goes on the
        instance: one on the class would miss an instance made before.
        """
        self.paths.clear()
        if id(fs) in self._watched:
            return
        self._watched.add(id(fs))
        if isinstance(fs, S3Filesystem):
            call_s3 = fs.call_s3

            def counting_call_s3(method: str, *args: Any, **kwargs: Any) -> Any:
                if method == "head_object":
                    self.paths.append(kwargs.get("Key", ""))
                return call_s3(method, *args, **kwargs)

            self._monkeypatch.setattr(fs, "call_s3", counting_call_s3)
            return
        assert isinstance(fs, GCSFilesystem)
        info = fs.info

        def counting_info(path: str, *args: Any, **kwargs: Any) -> Any:
            self.paths.append(path)
            return info(path, *args, **kwargs)

        self._monkeypatch.setattr(fs, "info", counting_info)


@pytest.fixture
def object_requests(monkeypatch: pytest.MonkeyPatch) -> RequestLog:
    return RequestLog(monkeypatch)


def sync_again(
    tmp_path: Path,
    source: Store,
    destination: Store,
    requests: RequestLog,
    **settings: Any,
) -> RunSummary:
    """Open the queue again, add the same sync and run it, watching requests."""
    with open_queue(tmp_path, source, destination, **settings) as queue:
        requests.watch(queue.destination.fs)
        queue.sync("data", "out")
        return queue.run()


def destination_entries(state: QueueState) -> dict[str, Digested]:
    return dict(state.digests.by_path(Service.DESTINATION))


def first_sync(
    tmp_path: Path, source: Store, destination: Store, **settings: Any
) -> tuple[RunSummary, dict[str, Digested]]:
    """Create the queue, sync ``data`` to ``out`` and run it.

    Returns the run's summary and the destination's digest entries after it.
    """
    with open_queue(tmp_path, source, destination, **settings) as queue:
        queue.sync("data", "out")
        summary = queue.run()
        return summary, destination_entries(queue.state)


def journaled(queue: Path, kind: type) -> list[object]:
    """Return the records of type ``kind`` in the journal of ``queue``."""
    queue_id = bytes.fromhex(read_format(queue).queue_id)
    return [
        record
        for frame in scan(queue / "journal", queue_id).frames
        for record in decode_batch(frame.payload)
        if isinstance(record, kind)
    ]


def per_file(requests: list[str]) -> list[str]:
    """Return the requests that name a file of the tree, not its root."""
    return [path for path in requests if path.rstrip("/").endswith(".txt")]


@pytest.mark.parametrize("store", ["s3", "gcs"], indirect=True)
def test_resync_decided_at_listing(tmp_path, local_store, store, object_requests):
    files = tree()
    write_old_files(local_store, files)
    first, entries = first_sync(tmp_path, local_store, store)
    assert first.failures == []
    assert first.copied == FILES
    assert len(entries) == FILES
    assert all(entry.etag for entry in entries.values())

    second = sync_again(tmp_path, local_store, store, object_requests)
    assert second.failures == []
    assert second.copied == 0
    assert second.skipped == FILES
    assert second.identical_when_listed == FILES
    assert per_file(object_requests.paths) == []


@pytest.mark.parametrize("store", ["s3", "gcs"], indirect=True)
def test_rewritten_object_compared_again(tmp_path, local_store, store, object_requests):
    files = tree()
    write_old_files(local_store, files)
    assert first_sync(tmp_path, local_store, store)[0].copied == FILES

    # Another writer replaces one object with other content of the same
    # size: its ETag (S3) or generation (GCS) changes, its size does not.
    rewritten = "d1/f004.txt"
    store.write(f"out/{rewritten}", b"CONTENT 004")
    assert len(b"CONTENT 004") == len(files[rewritten])

    second = sync_again(tmp_path, local_store, store, object_requests)
    assert second.failures == []
    assert second.identical_when_listed == FILES - 1
    assert second.copied == 1
    assert store.read(f"out/{rewritten}") == files[rewritten]
    assert [path.rsplit("/", 1)[-1] for path in per_file(object_requests.paths)] == [
        "f004.txt"
    ]


@pytest.mark.parametrize("store", ["s3", "gcs"], indirect=True)
def test_identical_object_cached_when_compared(
    tmp_path, local_store, store, object_requests
):
    """An object another tool uploaded is compared once, then listed alone."""
    files = tree()
    write_old_files(local_store, files)
    store.write_tree("out", files)
    first, entries = first_sync(tmp_path, local_store, store)
    assert first.copied == 0
    assert first.skipped == FILES
    assert first.identical_when_listed == 0
    assert len(entries) == FILES
    assert all(entry.etag for entry in entries.values())

    second = sync_again(tmp_path, local_store, store, object_requests)
    assert second.copied == 0
    assert second.identical_when_listed == FILES
    assert per_file(object_requests.paths) == []


def test_s3_multipart_object_decided_at_listing(
    tmp_path, local_store, s3_store, object_requests
):
    """A multipart ETag ("<hex>-<parts>") is no MD5 but still names the object."""
    content = os.urandom(PART_SIZE + 4096)
    old = time.time_ns() - 60 * 1_000_000_000
    local_store.write("data/mid.txt", content)
    os.utime(local_store.path("data/mid.txt"), ns=(old, old))
    with open_queue(tmp_path, local_store, s3_store) as queue:
        queue.sync("data", "out")
        assert queue.run().copied == 1
        (entry,) = destination_entries(queue.state).values()
    assert entry.etag is not None

    second = sync_again(tmp_path, local_store, s3_store, object_requests)
    assert second.identical_when_listed == 1
    assert per_file(object_requests.paths) == []


@pytest.mark.parametrize("store", ["s3", "gcs"], indirect=True)
def test_parts_upload_decided_at_listing(
    tmp_path, local_store, store, object_requests, monkeypatch
):
    """A copy in journaled parts caches its digest too.

    S3 returns the ETag of the completed object with the copy that stores
    its metadata, so the next sync decides it at listing. GCS returns no
    generation for an upload session, so the next sync compares the object
    once and the one after decides it at listing.
    """
    part_size = 5 * 1024 * 1024
    monkeypatch.setattr(digest, "PART_SIZE", part_size)
    old = time.time_ns() - 60 * 1_000_000_000
    local_store.write("data/big.txt", os.urandom(part_size + 4096))
    os.utime(local_store.path("data/big.txt"), ns=(old, old))

    def sync() -> RunSummary:
        return sync_again(
            tmp_path, local_store, store, object_requests, part_threshold=part_size
        )

    first = sync()
    assert first.failures == []
    assert first.copied == 1
    assert len(journaled(tmp_path / "queue", PartsPlanned)) == 1

    second = sync()
    assert second.copied == 0
    if store.name == "gcs":
        assert second.identical_when_listed == 0
        assert len(per_file(object_requests.paths)) >= 1
        second = sync()
    assert second.identical_when_listed == 1
    assert per_file(object_requests.paths) == []


@pytest.mark.parametrize("store", ["s3", "gcs"], indirect=True)
def test_size_mtime_compares_source_mtimes(
    tmp_path, local_store, store, object_requests
):
    """Under size+mtime an object's listing shows its upload time, not the
    source's mtime: the test uses the mtime cached under its ETag.

    A file rewritten right after its upload, with its size kept, has an
    mtime near the upload time but far from the mtime the object keeps.
    """
    files = tree()
    write_old_files(local_store, files)
    first, _ = first_sync(tmp_path, local_store, store, compare="size+mtime")
    assert first.copied == FILES
    rewritten = "d1/f004.txt"
    local_store.write(f"data/{rewritten}", b"CONTENT 004")
    assert len(b"CONTENT 004") == len(files[rewritten])

    second = sync_again(
        tmp_path, local_store, store, object_requests, compare="size+mtime"
    )

    assert second.failures == []
    assert second.copied == 1
    assert second.identical_when_listed == FILES - 1
    assert store.read(f"out/{rewritten}") == b"CONTENT 004"
    assert [path.rsplit("/", 1)[-1] for path in per_file(object_requests.paths)] == [
        "f004.txt"
    ]
