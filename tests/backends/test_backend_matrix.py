"""Queues between every pair of backends, against real servers on 127.0.0.1.

Each test runs a real :class:`journalq.StorageQueue` whose source and
destination are stores of ``conftest.py``: a local directory, fsspec's
memory filesystem, a bucket on moto (S3), a bucket on fake-gcs-server
(GCS), or a directory reached through sshd (SFTP).
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

import pytest
from conftest import Store

from journalq import StorageQueue

PAIRS = [
    ("local", "s3"),
    ("s3", "local"),
    ("local", "gcs"),
    ("gcs", "local"),
    ("local", "sftp"),
    ("sftp", "local"),
    ("s3", "sftp"),
    ("gcs", "s3"),
    ("memory", "s3"),
    ("sftp", "gcs"),
]

TREE = {
    "a.txt": b"alpha",
    "empty.bin": b"",
    "with space.txt": b"a name with spaces",
    "caf\u00e9/\u65e5\u672c\u8a9e.txt": "caf\u00e9 \u2192 \u65e5\u672c".encode(),
    "nested/deeper/c.bin": hashlib.sha256(b"c").digest() * 40,
    "nested/b.txt": b"bravo",
    **{f"many/f{index:02d}.txt": f"file {index}".encode() for index in range(14)},
}
#: The directories of TREE; a copy of the tree makes each with a mkdir.
DIRECTORIES = {
    str(parent)
    for path in TREE
    for parent in PurePosixPath(path).parents
    if str(parent) != "."
}


def pair_id(pair: tuple[str, str]) -> str:
    return f"{pair[0]}->{pair[1]}"


pairs = pytest.mark.parametrize(
    ("source", "destination"), PAIRS, indirect=True, ids=[pair_id(p) for p in PAIRS]
)


def open_queue(tmp_path: Path, source: Store, destination: Store) -> StorageQueue:
    return StorageQueue(
        source.url,
        destination.url,
        name=tmp_path / "queue",
        source_options=source.options,
        destination_options=destination.options,
    )


def run_tree(tmp_path: Path, source: Store, destination: Store, *, sync: bool = False):
    with open_queue(tmp_path, source, destination) as queue:
        if sync:
            queue.sync("data", "out", delete=True)
        else:
            queue.copy_tree("data", "out")
        summary = queue.run()
    assert summary.failures == []
    return summary


@pairs
def test_copy_tree_then_nothing_to_copy(tmp_path, source, destination):
    source.write_tree("data", TREE)

    first = run_tree(tmp_path, source, destination)
    assert first.copied == len(TREE)
    assert destination.tree("out") == TREE

    second = run_tree(tmp_path, source, destination)
    # Every directory exists by now, on an object store as the prefix of its
    # files, so the second copy makes none.
    assert second.copied == 0
    assert second.bytes == 0
    assert second.skipped == len(TREE)
    assert second.done == 0


@pairs
def test_sync_delete_removes_extras(tmp_path, source, destination):
    source.write_tree("data", {"keep.txt": b"keep", "sub/new.txt": b"new"})
    destination.write_tree(
        "out", {"keep.txt": b"old!", "gone.txt": b"x", "old/deep/y.txt": b"y"}
    )

    run_tree(tmp_path, source, destination, sync=True)

    assert destination.tree("out") == {"keep.txt": b"keep", "sub/new.txt": b"new"}
    assert not destination.fs.exists(destination.path("out/old"))


@pairs
def test_same_size_other_content_copied(tmp_path, source, destination):
    source.write("data/f.txt", b"new content")
    destination.write("out/f.txt", b"old content")

    summary = run_tree(tmp_path, source, destination)

    assert summary.copied == 1
    assert destination.read("out/f.txt") == b"new content"


@pytest.mark.parametrize("store", ["s3", "gcs", "sftp", "memory"], indirect=True)
def test_single_actions_on_store(tmp_path, local_store, store):
    local_store.write("one.txt", b"one")
    store.write("doomed/x.txt", b"x")
    with StorageQueue(
        local_store.url,
        store.url,
        name=tmp_path / "queue",
        destination_options=store.options,
    ) as queue:
        queue.copy_file("one.txt", "copied/one.txt")
        queue.mkdir("destination", "made")
        queue.delete("destination", "doomed", recursive=True)
        summary = queue.run()
        # Top-level actions run in parallel, so the listing waits for a
        # run of its own.
        listing = queue.list("copied", service="destination")
        listed = queue.run()
        entries = queue.list_result(listing)

    assert summary.failures == []
    assert listed.failures == []
    assert store.read("copied/one.txt") == b"one"
    assert not store.fs.exists(store.path("doomed/x.txt"))
    names = [entry["name"].rsplit("/", 1)[-1] for entry in entries]
    assert names == ["one.txt"]
    if store.name in ("sftp", "memory"):
        assert store.fs.isdir(store.path("made"))


@pytest.mark.parametrize("store", ["s3", "gcs", "sftp"], indirect=True)
def test_copy_sets_source_mtime(tmp_path, local_store, store):
    local_store.write("data/f.txt", b"timed")
    with StorageQueue(
        local_store.url,
        store.url,
        name=tmp_path / "queue",
        destination_options=store.options,
        compare="size+mtime",
    ) as queue:
        queue.copy_tree("data", "out")
        assert queue.run().copied == 1
        queue.copy_tree("data", "out")
        second = queue.run()

    assert second.copied == 0
    assert second.skipped == 1


METHODS = [
    (("local", "s3"), "xxh128"),
    (("s3", "local"), "md5"),
    (("local", "gcs"), "xxh128"),
    (("gcs", "local"), "md5"),
    (("sftp", "local"), "sha256"),
    (("s3", "sftp"), "md5"),
    (("gcs", "s3"), "md5"),
]


@pytest.mark.parametrize(
    ("source", "destination", "method"),
    [(*pair, method) for pair, method in METHODS],
    indirect=["source", "destination"],
    ids=[pair_id(pair) for pair, _ in METHODS],
)
def test_skip_records_backend_identity(tmp_path, source, destination, method):
    source.write("data/f.txt", b"same")
    run_tree(tmp_path, source, destination)

    # Adding and running in two openings, as two commands would, makes
    # the run stat each file instead of reusing what the listing found.
    with open_queue(tmp_path, source, destination) as queue:
        queue.copy_tree("data", "out")
    with open_queue(tmp_path, source, destination) as queue:
        queue.run()
        skipped = [
            action
            for action in queue.get_actions("completed")
            if action.outcome == "skipped"
        ]

    assert [action.method for action in skipped] == [method]
