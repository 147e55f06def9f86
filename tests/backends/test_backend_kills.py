"""Uploads of small files killed at the commit of S3, GCS and SFTP, then resumed.

A file below the part threshold is committed in one step: a ``PutObject``
on S3, a one-request upload on GCS, and on SFTP the rename of a finished
temporary file over the destination. ``journalq copy`` runs with one
worker and SIGKILLs itself at the second commit, just before it
(``transfer.before_rename``) or just after it (``transfer.after_rename``),
as armed by ``JOURNALQ_CRASH_AT``. The same command then resumes the copy.
After the resume the destination must hold exactly the source tree, with
no temporary file or unfinished upload left, and one more run must copy
nothing.
"""

from __future__ import annotations

import re

import pytest
from cli_runs import KILLED, journalq_command, run_journalq, summary_of
from store_helpers import Store

FILES = {
    "a.txt": b"alpha" * 40,
    "b.txt": b"bravo",
    "sub/c.txt": b"charlie" * 100,
    "sub/d.bin": bytes(range(256)) * 8,
}
#: The commit the process dies at: the second, so one file is complete.
KILLED_COMMIT = 2
#: The name of a temporary file of an SFTP copy (see journalq.transfer).
TEMPORARY = re.compile(r"(^|/)\.[^/]+\.jq-[0-9a-f]{8}-\d+\.tmp$")


def temporaries(store: Store) -> list[str]:
    return [name for name in store.tree("out") if TEMPORARY.search(name)]


def unfinished_uploads(store: Store) -> list[dict]:
    """Return the multipart uploads left in an S3 store's bucket."""
    bucket = store.root.split("/", 1)[0]
    listing = store.fs.call_s3("list_multipart_uploads", Bucket=bucket)
    return listing.get("Uploads", [])


@pytest.mark.parametrize("point", ["transfer.before_rename", "transfer.after_rename"])
@pytest.mark.parametrize("store", ["s3", "gcs", "sftp"], indirect=True)
def test_killed_commit_resumes(tmp_path, local_store, store, point):
    local_store.write_tree("data", FILES)
    command = journalq_command(tmp_path, local_store, store, "-j", "1")
    crash_at = f"{point}:{KILLED_COMMIT}"

    killed = run_journalq(command, crash_at)
    assert killed.returncode == KILLED, f"{crash_at} not reached\n{killed.stderr}"
    committed = KILLED_COMMIT if point == "transfer.after_rename" else 1
    arrived = store.tree("out")
    left = temporaries(store)
    resumed = summary_of(run_journalq(command))
    rerun = summary_of(run_journalq(command))

    # What the kill left: whole objects only, and on SFTP before the
    # rename the finished temporary file of the second copy.
    assert len(arrived) - len(left) == committed
    for name in set(arrived) - set(left):
        assert arrived[name] == FILES[name]
    if store.name == "sftp" and point == "transfer.before_rename":
        assert len(left) == 1
    else:
        assert left == []
    # The resume copies what had not been committed, and finds the file
    # committed just before the kill identical.
    assert resumed["failed"] == 0
    assert resumed["copied"] == len(FILES) - committed
    assert store.tree("out") == FILES
    assert temporaries(store) == []
    if store.name == "s3":
        assert unfinished_uploads(store) == []
    assert rerun["copied"] == 0
    assert rerun["bytes"] == 0
