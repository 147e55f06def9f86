"""Digests of objects cached under their ETag, against moto and fake-gcs-server.

A checksum sync to S3 or GCS journals the destination's digest with the
ETag (S3) or generation (GCS) the object had, so the next sync decides an
unchanged object from the listing alone, with no request per object. The
request counts come from wrapping the filesystem classes' request methods
in this process: the wrappers only count the calls, and the servers
still handle every request.
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


@pytest.fixture
def object_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the per-object stat requests journalq's filesystems send.

    S3 counts each ``HeadObject``, GCS each object metadata request
    (``_info`` of a path, which fetches one object's resource).
    """
    requests: list[str] = []
    call_s3 = S3Filesystem._call_s3
    call_s3_sync = S3Filesystem.call_s3
    info_gcs = GCSFilesystem._info
    info_gcs_sync = GCSFilesystem.info

    def note(method: str, kwargs: dict[str, Any]) -> None:
        if method == "head_object":
            requests.append(kwargs.get("Key", ""))

    async def counting_call_s3(self: Any, method: str, *args: Any, **kwargs: Any):
        note(method, kwargs)
        return await call_s3(self, method, *args, **kwargs)

    # s3fs's call_s3 and gcsfs's info wrap the base class's coroutine
    # itself, so they bypass the wrappers of the coroutines and need
    # their own.
    def counting_call_s3_sync(self: Any, method: str, *args: Any, **kwargs: Any):
        note(method, kwargs)
        return call_s3_sync(self, method, *args, **kwargs)

    async def counting_info(self: Any, path: str, *args: Any, **kwargs: Any):
        requests.append(path)
        return await info_gcs(self, path, *args, **kwargs)

    def counting_info_sync(self: Any, path: str, *args: Any, **kwargs: Any):
        requests.append(path)
        return info_gcs_sync(self, path, *args, **kwargs)

    monkeypatch.setattr(S3Filesystem, "_call_s3", counting_call_s3)
    monkeypatch.setattr(S3Filesystem, "call_s3", counting_call_s3_sync)
    monkeypatch.setattr(GCSFilesystem, "_info", counting_info)
    monkeypatch.setattr(GCSFilesystem, "info", counting_info_sync)
    return requests


def sync_again(tmp_path: Path, source: Store, destination: Store) -> RunSummary:
    """Open the queue again, add the same sync and run it."""
    with open_queue(tmp_path, source, destination) as queue:
        queue.sync("data", "out")
        return queue.run()


def destination_entries(state: QueueState) -> dict[str, Digested]:
    return dict(state.digests.by_path(Service.DESTINATION))


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
    with open_queue(tmp_path, local_store, store) as queue:
        queue.sync("data", "out")
        first = queue.run()
        entries = destination_entries(queue.state)
    assert first.failures == []
    assert first.copied == FILES
    assert len(entries) == FILES
    assert all(entry.etag for entry in entries.values())

    object_requests.clear()
    second = sync_again(tmp_path, local_store, store)
    assert second.failures == []
    assert second.copied == 0
    assert second.skipped == FILES
    assert second.identical_when_listed == FILES
    assert per_file(object_requests) == []


@pytest.mark.parametrize("store", ["s3", "gcs"], indirect=True)
def test_rewritten_object_compared_again(tmp_path, local_store, store, object_requests):
    files = tree()
    write_old_files(local_store, files)
    with open_queue(tmp_path, local_store, store) as queue:
        queue.sync("data", "out")
        assert queue.run().copied == FILES

    # Another writer replaces one object with other content of the same
    # size: its ETag (S3) or generation (GCS) changes, its size does not.
    rewritten = "d1/f004.txt"
    store.write(f"out/{rewritten}", b"CONTENT 004")
    assert len(b"CONTENT 004") == len(files[rewritten])

    object_requests.clear()
    second = sync_again(tmp_path, local_store, store)
    assert second.failures == []
    assert second.identical_when_listed == FILES - 1
    assert second.copied == 1
    assert store.read(f"out/{rewritten}") == files[rewritten]
    assert [path.rsplit("/", 1)[-1] for path in per_file(object_requests)] == [
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
    with open_queue(tmp_path, local_store, store) as queue:
        queue.sync("data", "out")
        first = queue.run()
        entries = destination_entries(queue.state)
    assert first.copied == 0
    assert first.skipped == FILES
    assert first.identical_when_listed == 0
    assert len(entries) == FILES
    assert all(entry.etag for entry in entries.values())

    object_requests.clear()
    second = sync_again(tmp_path, local_store, store)
    assert second.copied == 0
    assert second.identical_when_listed == FILES
    assert per_file(object_requests) == []


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

    object_requests.clear()
    second = sync_again(tmp_path, local_store, s3_store)
    assert second.identical_when_listed == 1
    assert per_file(object_requests) == []


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
        with open_queue(tmp_path, local_store, store, part_threshold=part_size) as q:
            q.sync("data", "out")
            return q.run()

    first = sync()
    assert first.failures == []
    assert first.copied == 1
    assert len(journaled(tmp_path / "queue", PartsPlanned)) == 1

    object_requests.clear()
    second = sync()
    assert second.copied == 0
    if store.name == "gcs":
        assert second.identical_when_listed == 0
        assert len(per_file(object_requests)) >= 1
        object_requests.clear()
        second = sync()
    assert second.identical_when_listed == 1
    assert per_file(object_requests) == []
