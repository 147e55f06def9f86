"""Names in a source listing that would write outside the destination.

A listing can name ``..``, ``.``, an absolute path, a NUL byte, or a path
outside the listed directory. journalq must never write outside the
destination root for any of them. Each such name becomes one failed item
whose error quotes the name and says why, the rest of the tree is copied,
``retry`` leaves those items failed, and ``journalq`` exits with status 1.

S3 keys are free text, so moto's S3 server on 127.0.0.1 stores and lists
``data/../escape.txt``, ``data/./dot.txt`` and ``data//abs.txt`` as a real
bucket does. No server lists a NUL byte or a path outside the listed
directory: an S3 listing is XML, which cannot carry a NUL, and local and
SFTP names cannot contain one. For those names the mock is
:class:`HostileMemoryFileSystem`, a memory filesystem whose ``find`` adds
such entries.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from tree_helpers import read_tree

from journalq import StorageQueue

HOSTILE_PROTOCOL = "hostilememory"
FAILED = 1
#: Files every source tree has, which must be copied.
GOOD = {"ok.txt": b"ok", "sub/fine.txt": b"fine"}


class HostileMemoryFileSystem(MemoryFileSystem):
    """A memory filesystem whose ``find`` also returns :attr:`extra` entries.

    Each extra entry is a path as a listing returns it. Its content is in
    the store under that path too, so a copy that took the name would find
    bytes to write.
    """

    protocol = (HOSTILE_PROTOCOL,)
    extra: tuple[str, ...] = ()

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return super()._strip_protocol(path.removeprefix(f"{HOSTILE_PROTOCOL}://"))

    def find(self, path: str, *args: Any, **kwargs: Any) -> Any:
        found = super().find(path, *args, **kwargs)
        if not kwargs.get("detail"):
            return [*found, *self.extra]
        entries = {
            name: {"name": name, "type": "file", "size": 4} for name in self.extra
        }
        return {**found, **entries}


fsspec.register_implementation(HOSTILE_PROTOCOL, HostileMemoryFileSystem, clobber=True)


@pytest.fixture
def hostile(memory: MemoryFileSystem) -> Iterator[MemoryFileSystem]:
    """The memory store, with no extra entries in hostile listings after the test."""
    yield memory
    HostileMemoryFileSystem.extra = ()


def _files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def _check_rejected(queue: StorageQueue, names: dict[str, str]) -> None:
    """Check one failed item per name, its error quoting the name and reason."""
    failed = [info for info in queue.get_actions("failed") if info.parent]
    assert len(failed) == len(names)
    errors = [info.error or "" for info in failed]
    for name, reason in names.items():
        matching = [error for error in errors if f"name {name!r}, which" in error]
        assert len(matching) == 1, (name, errors)
        assert reason in matching[0]
    for info in failed:
        assert info.source is None
        assert info.destination is None
    # A retry lists the tree again, as a new action, and rejects the names
    # again: none of them ever waits to be copied.
    retried = queue.retry()
    assert len(retried) == 1
    again = [info for info in queue.get_actions("failed") if info.parent]
    assert {info.parent for info in again} == set(retried)
    assert sorted(info.error or "" for info in again) == sorted(errors)
    waiting = [info for info in queue.get_actions("waiting") if info.parent]
    assert all(info.source is not None for info in waiting)


#: Directories that the memory filesystem's own find() derives from the
#: stored paths of the hostile names.
DERIVED = {
    "..": "contains '..'",
    "sub/..": "contains '..'",
    "sub/../..": "contains '..'",
}


def test_hostile_listing_stays_inside(tmp_path, hostile):
    escape = tmp_path / "escaped-absolute.txt"
    # Each path the listing returns, with the name and the reason its
    # error gives.
    extra = {
        "/src/../escape.txt": ("../escape.txt", "contains '..'"),
        "/src/sub/../../up.txt": ("sub/../../up.txt", "contains '..'"),
        "/src/nul\0name.txt": ("nul\0name.txt", "contains a NUL byte"),
        "/src//abs.txt": ("/abs.txt", "is an absolute path"),
        str(escape): (str(escape), "is not under the listed directory"),
    }
    for name, data in GOOD.items():
        hostile.pipe_file(f"/src/{name}", data)
    for name in extra:
        # Where a copy that joined the name to the root would read from.
        hostile.store[name] = hostile.store["/src/ok.txt"]
    HostileMemoryFileSystem.extra = tuple(extra)
    box = tmp_path / "box"
    destination = box / "dst"
    destination.mkdir(parents=True)
    before = _files_under(tmp_path)

    url = f"{HOSTILE_PROTOCOL}:///src"
    with StorageQueue(url, str(destination), name=tmp_path / "queue") as queue:
        queue.copy_tree(url, str(destination))
        summary = queue.run()
        _check_rejected(queue, {**dict(extra.values()), **DERIVED})
        again = queue.run()
        status = queue.status()

    new_files = _files_under(tmp_path) - before - _files_under(tmp_path / "queue")
    assert read_tree(destination) == GOOD
    assert new_files == {destination / name for name in GOOD}
    assert not escape.exists()
    assert summary.copied == len(GOOD)
    assert summary.failed == len(extra) + len(DERIVED)
    assert again.copied == 0
    assert again.failed == len(extra) + len(DERIVED)
    assert status["failed"] == len(extra) + len(DERIVED) + 1


def _s3_keys(s3_options: dict[str, Any], bucket: str) -> None:
    """Store keys with '..', '.' and '//' through boto3, which sends them as is."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_options["endpoint_url"],
        aws_access_key_id=s3_options["key"],
        aws_secret_access_key=s3_options["secret"],
        region_name="us-east-1",
    )
    for name, data in GOOD.items():
        client.put_object(Bucket=bucket, Key=f"data/{name}", Body=data)
    for key in ("data/../escape.txt", "data/./dot.txt", "data//abs.txt"):
        client.put_object(Bucket=bucket, Key=key, Body=b"evil")


#: What the S3 listing of those keys gives, beside the good files: the keys
#: and the directories "." and ".." that s3fs derives from them.
S3_REJECTED = {
    "../escape.txt": "contains '..'",
    "./dot.txt": "contains an empty or '.' component",
    "/abs.txt": "is an absolute path",
    "..": "contains '..'",
    ".": "contains an empty or '.' component",
}


def test_s3_dot_keys_stay_inside(tmp_path, s3_options, bucket):
    _s3_keys(s3_options, bucket)
    destination = tmp_path / "box" / "dst"
    before = _files_under(tmp_path)
    url = f"s3://{bucket}/data"

    with StorageQueue(
        url, str(destination), name=tmp_path / "queue", source_options=s3_options
    ) as queue:
        queue.copy_tree(url, str(destination))
        summary = queue.run()
        _check_rejected(queue, S3_REJECTED)

    new_files = _files_under(tmp_path) - before - _files_under(tmp_path / "queue")
    assert read_tree(destination) == GOOD
    assert new_files == {destination / name for name in GOOD}
    assert summary.copied == len(GOOD)
    assert summary.failed == len(S3_REJECTED)


def test_cli_exits_one_on_dot_keys(tmp_path, s3_options, bucket):
    _s3_keys(s3_options, bucket)
    destination = tmp_path / "dst"
    options = [
        word
        for key, value in s3_options.items()
        for word in ("--source-option", f"{key}={value}")
    ]

    result = subprocess.run(
        [
            *(sys.executable, "-m", "journalq", "copy", f"s3://{bucket}/data/"),
            *(str(destination), "--queue", str(tmp_path / "queue"), *options),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == FAILED, result.stderr
    assert "not copying '../escape.txt'" in result.stderr
    assert read_tree(destination) == GOOD
    assert not (tmp_path / "escape.txt").exists()
