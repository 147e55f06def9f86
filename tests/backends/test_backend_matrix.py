"""Queues between every pair of backends, against real servers on 127.0.0.1.

Each test runs a real :class:`journalq.StorageQueue` whose source and
destination are stores of ``conftest.py``: a local directory, fsspec's
memory filesystem, a bucket on moto (S3), a bucket on fake-gcs-server
(GCS), or a directory reached through sshd (SFTP). The kill-and-resume
test runs the ``journalq`` command instead, in a process that SIGKILLs
itself at a crash point.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

import pytest
from cli_runs import KILLED, journalq_command, run_journalq, summary_of
from store_helpers import Store

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
#: The pairings of the operation tests below: local to each remote, each
#: remote to local, and two remote-to-remote pairs.
CORE_PAIRS = [
    pair for pair in PAIRS if "memory" not in pair and pair != ("sftp", "gcs")
]
REMOTE_PAIRS = [("s3", "sftp"), ("gcs", "s3")]

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


def pairings(chosen: list[tuple[str, str]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        ("source", "destination"),
        chosen,
        indirect=True,
        ids=[pair_id(pair) for pair in chosen],
    )


pairs = pairings(PAIRS)
core_pairs = pairings(CORE_PAIRS)
remote_pairs = pairings(REMOTE_PAIRS)


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


# Operations on the core pairings ------------------------------------------------


@core_pairs
def test_sync_keeps_extras_without_delete(tmp_path, source, destination):
    source.write_tree("data", {"keep.txt": b"keep", "sub/new.txt": b"new"})
    destination.write_tree(
        "out", {"keep.txt": b"old!", "extra.txt": b"x", "old/deep/y.txt": b"y"}
    )
    with open_queue(tmp_path, source, destination) as queue:
        queue.sync("data", "out")
        summary = queue.run()

    assert summary.failures == []
    assert summary.copied == 2
    assert destination.tree("out") == {
        "keep.txt": b"keep",
        "sub/new.txt": b"new",
        "extra.txt": b"x",
        "old/deep/y.txt": b"y",
    }


def children_of(queue: StorageQueue, tree: str) -> dict[str, str]:
    """Return the ids of a tree's files, by destination path."""
    return {
        action.destination: action.id
        for action in queue.get_actions()
        if action.parent == tree and action.destination is not None
    }


@pairings([pair for pair in CORE_PAIRS if pair[1] != "local"])
def test_canceled_actions_never_run(tmp_path, source, destination):
    """Actions canceled before the run: a file, a tree's file, a whole tree."""
    source.write_tree("data", {"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})
    source.write_tree("other", {"d.txt": b"d", "e.txt": b"e"})
    with open_queue(tmp_path, source, destination) as queue:
        single = queue.copy_file("data/a.txt", "single/a.txt")
        tree = queue.copy_tree("data", "out")
        whole = queue.copy_tree("other", "other")
        child = children_of(queue, tree)[destination.path("out/b.txt")]
        canceled = [*queue.cancel(single), *queue.cancel(child), *queue.cancel(whole)]
        summary = queue.run()
        again = queue.run()
        status = queue.status()

    assert summary.failures == []
    assert summary.copied == 2
    assert again.copied == 0
    assert len(canceled) == 5
    assert status["canceled"] == 5
    assert destination.tree("out") == {"a.txt": b"a", "c.txt": b"c"}
    assert destination.tree("single") == {}
    assert destination.tree("other") == {}


@remote_pairs
def test_single_actions_between_remotes(tmp_path, source, destination):
    """mkdir, delete and list on both sides of a remote-to-remote queue."""
    if destination.name in ("s3", "gcs"):
        destination.options = {**destination.options, "directory_markers": True}
    source.write_tree("data", {"one.txt": b"one", "gone.txt": b"g", "sub/t.txt": b"t"})
    destination.write_tree("doomed", {"x.txt": b"x", "deep/y.txt": b"y"})
    destination.write("stale.txt", b"stale")
    with open_queue(tmp_path, source, destination) as queue:
        queue.copy_file("data/one.txt", "copied/one.txt")
        queue.mkdir("destination", "made")
        queue.delete("destination", "doomed", recursive=True)
        queue.delete("destination", "stale.txt")
        queue.delete("source", "data/gone.txt")
        summary = queue.run()
        # Top-level actions run in parallel, so the listings wait for a
        # run of their own.
        source_listing = queue.list("data", service="source")
        destination_listing = queue.list("", recursive=True, service="destination")
        listed = queue.run()
        source_entries = queue.list_result(source_listing)
        destination_entries = queue.list_result(destination_listing)

    assert summary.failures == []
    assert summary.copied == 1
    assert summary.done == 4
    assert listed.failures == []
    assert destination.read("copied/one.txt") == b"one"
    assert destination.tree("doomed") == {}
    assert not destination.fs.exists(destination.path("stale.txt"))
    assert source.tree("data") == {"one.txt": b"one", "sub/t.txt": b"t"}
    destination.fs.invalidate_cache()
    assert destination.fs.isdir(destination.path("made"))

    def names(entries: list[dict]) -> dict[str, str]:
        return {entry["name"].rsplit("/", 1)[-1]: entry["type"] for entry in entries}

    assert names(source_entries) == {"one.txt": "file", "sub": "directory"}
    found = names(destination_entries)
    assert found["one.txt"] == "file"
    assert found["made"] == "directory"
    assert "x.txt" not in found
    assert "stale.txt" not in found


# Kill and resume --------------------------------------------------------------

#: A handful of files, because moto spends CPU time on every request.
KILL_TREE = {
    "a.txt": b"alpha" * 50,
    "b.txt": b"bravo",
    "empty.bin": b"",
    "sub/c.txt": b"charlie" * 300,
    "sub/deeper/d.bin": hashlib.sha256(b"d").digest() * 64,
    "with space.txt": b"spaced",
}
#: The crash point and its count: the process dies just after the third
#: file reached the destination, before its completion was journaled.
KILL_AT = "transfer.after_rename:3"


@core_pairs
def test_killed_copy_resumes(tmp_path, source, destination):
    """``journalq copy`` SIGKILLed mid-tree, then the same command resumes it."""
    source.write_tree("data", KILL_TREE)
    command = journalq_command(tmp_path, source, destination)

    killed = run_journalq(command, KILL_AT)
    assert killed.returncode == KILLED, f"{KILL_AT} not reached\n{killed.stderr}"
    arrived = destination.tree("out")
    resumed = summary_of(run_journalq(command))
    rerun = summary_of(run_journalq(command))

    assert len(arrived) >= 3
    assert resumed["failed"] == 0
    assert resumed["copied"] + resumed["skipped"] <= len(KILL_TREE)
    assert resumed["copied"] < len(KILL_TREE)
    # Exactly the tree: no temporary file of the killed copy is left.
    assert destination.tree("out") == KILL_TREE
    assert rerun["copied"] == 0
    assert rerun["bytes"] == 0
    assert rerun["skipped"] == len(KILL_TREE)
