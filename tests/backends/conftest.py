"""Fixtures of the backend tests: one area per test on each backend.

The servers (moto for S3, fake-gcs-server for GCS, sshd for SFTP) are the
session's, from ``tests/server_fixtures.py``. Each test gets a
:class:`Store` per backend it names: a fresh bucket or directory, the URL
and storage options a queue uses to reach it, and helpers to write and read
trees there.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
import servers
from fsspec.implementations.memory import MemoryFileSystem
from server_fixtures import new_bucket
from store_helpers import Store

# Stores ----------------------------------------------------------------------


@pytest.fixture
def local_store(tmp_path: Path) -> Store:
    root = tmp_path / "local"
    root.mkdir()
    return Store("local", fsspec.filesystem("file"), str(root), str(root))


@pytest.fixture
def memory_store() -> Iterator[Store]:
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]
    root = f"/jq-{uuid.uuid4().hex[:8]}"
    fs.makedirs(root, exist_ok=True)
    yield Store("memory", fs, root, f"memory://{root}")
    fs.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]


@pytest.fixture
def s3_store(s3_options: dict[str, Any]) -> Store:
    fs = fsspec.filesystem("s3", **s3_options)
    bucket = new_bucket(fs)
    return Store("s3", fs, f"{bucket}/root", f"s3://{bucket}/root", s3_options)


@pytest.fixture
def gcs_store(gcs_options: dict[str, Any]) -> Store:
    fs = fsspec.filesystem("gcs", **gcs_options)
    bucket = new_bucket(fs)
    return Store("gcs", fs, f"{bucket}/root", f"gcs://{bucket}/root", gcs_options)


@pytest.fixture
def sftp_store(
    sftp_server: tuple[servers.Server, Path],
    sftp_options: dict[str, Any],
    tmp_path: Path,
) -> Store:
    server, _ = sftp_server
    root = tmp_path / "sftp"
    root.mkdir()
    fs = fsspec.filesystem(
        "ssh", host=servers.HOST, port=server.port, username="root", **sftp_options
    )
    url = f"ssh://root@{servers.HOST}:{server.port}{root}"
    return Store("sftp", fs, str(root), url, sftp_options)


@pytest.fixture
def store(request: pytest.FixtureRequest) -> Store:
    """The store named by the test's ``store`` parameter."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def source(request: pytest.FixtureRequest) -> Store:
    """The source store of a pairing parameter ``"s3->local"``."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def destination(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")
