"""A sync's delete on remote stores: unchanged files go, changed ones stay.

The listing and the stat before the delete read a file's identity from
different requests (a list call, then a HEAD or info call), so an
unchanged file must compare equal, including one that journalq uploaded
with its own mtime metadata, and a changed one must not.
"""

from __future__ import annotations

import pytest
from test_backend_matrix import open_queue

from journalq import StorageQueue
from journalq.executor import CONFLICT
from journalq.records import Kind


def delete_errors(queue: StorageQueue) -> list[str]:
    return [
        action.error.reason
        for action in queue.state.actions.values()
        if action.kind is Kind.DELETE and action.error is not None
    ]


@pytest.mark.parametrize("store", ["s3", "gcs", "sftp", "memory"], indirect=True)
def test_sync_deletes_unchanged_uploads(tmp_path, local_store, store):
    local_store.write("data/keep.txt", b"keep")
    local_store.write("data/gone.txt", b"gone")
    with open_queue(tmp_path, local_store, store) as queue:
        queue.copy_tree("data", "out")
        assert queue.run().failures == []
    local_store.fs.rm(local_store.path("data/gone.txt"))

    with open_queue(tmp_path, local_store, store) as queue:
        queue.sync("data", "out", delete=True)
        summary = queue.run()
        errors = delete_errors(queue)

    assert summary.failures == []
    assert errors == []
    assert store.tree("out") == {"keep.txt": b"keep"}


@pytest.mark.parametrize(
    ("store", "replacement"),
    [
        ("s3", b"STALE"),
        ("gcs", b"STALE"),
        ("s3", b"a longer replacement"),
        ("gcs", b"a longer replacement"),
        ("sftp", b"a longer replacement"),
        ("memory", b"a longer replacement"),
    ],
    indirect=["store"],
)
def test_sync_keeps_changed_object(tmp_path, local_store, store, replacement):
    local_store.write("data/keep.txt", b"keep")
    store.write_tree("out", {"keep.txt": b"keep", "stale.txt": b"stale"})
    with open_queue(tmp_path, local_store, store) as queue:
        queue.sync("data", "out", delete=True)
        # Another writer replaces the file after the listing planned its delete.
        store.write("out/stale.txt", replacement)
        summary = queue.run()
        errors = delete_errors(queue)

    assert summary.failed == 1
    assert errors == [CONFLICT]
    assert store.tree("out") == {"keep.txt": b"keep", "stale.txt": replacement}
