"""Fixtures of the backend tests: real servers and one area per test on each.

The servers (moto for S3, fake-gcs-server for GCS, sshd for SFTP) start
once per session on free ports of 127.0.0.1. Each test gets a
:class:`Store` per backend it names: a fresh bucket or directory, the URL
and storage options a queue uses to reach it, and helpers to write and read
trees there.
"""

from __future__ import annotations

import itertools
import os
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# gcsfs otherwise asks a gRPC endpoint whether each bucket has a
# hierarchical namespace, which the emulator does not serve, and every
# bucket operation waits 60 s for the answer.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

import fsspec
import pytest
import servers
from fsspec.implementations.memory import MemoryFileSystem

#: Credentials moto accepts; any pair works, but both must be given.
S3_KEY = "testing"
S3_SECRET = "testing-secret-value"

_names = itertools.count()


@dataclass
class Store:
    """One backend's area of a test: a root path, its URL and options."""

    name: str
    fs: fsspec.AbstractFileSystem
    root: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)

    def path(self, relpath: str = "") -> str:
        """Return the path of ``relpath`` under the root on :attr:`fs`."""
        return posixpath.join(self.root, relpath) if relpath else self.root

    def write(self, relpath: str, data: bytes) -> None:
        """Write ``data`` to the file ``relpath``, with its parents."""
        path = self.path(relpath)
        parent = posixpath.dirname(path)
        if self.name in ("local", "sftp", "memory"):
            self.fs.makedirs(parent, exist_ok=True)
        self.fs.pipe_file(path, data)

    def write_tree(self, relpath: str, files: dict[str, bytes]) -> None:
        """Write every file of ``files`` (relative path -> content)."""
        for name, data in files.items():
            self.write(posixpath.join(relpath, name), data)

    def read(self, relpath: str) -> bytes:
        return self.fs.cat_file(self.path(relpath))

    def tree(self, relpath: str = "") -> dict[str, bytes]:
        """Return every file under ``relpath`` as relative path -> content."""
        top = self.path(relpath).rstrip("/")
        self.fs.invalidate_cache()
        if not self.fs.exists(top):
            return {}
        found = self.fs.find(top, detail=True)
        return {
            path[len(top) + 1 :]: self.fs.cat_file(path)
            for path, info in found.items()
            if info["type"] == "file" and not path.endswith("/")
        }


# Servers ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def s3_server(server_dir: Path) -> Iterator[servers.Server]:
    server = servers.moto_server(server_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_server(server_dir: Path) -> Iterator[servers.Server]:
    server = servers.gcs_server(server_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sftp_server(server_dir: Path) -> Iterator[tuple[servers.Server, Path]]:
    server, key = servers.sshd_server(server_dir / "ssh")
    server.start()
    yield server, key
    server.stop()


def s3_options(server: servers.Server) -> dict[str, Any]:
    """Storage options that reach moto, secret included."""
    return {
        "key": S3_KEY,
        "secret": S3_SECRET,
        "endpoint_url": f"http://{servers.HOST}:{server.port}",
    }


def gcs_options(server: servers.Server) -> dict[str, Any]:
    return {
        "endpoint_url": f"http://{servers.HOST}:{server.port}",
        "token": "anon",
        "project": "journalq-test",
    }


def sftp_options(key: Path) -> dict[str, Any]:
    return {"client_keys": [str(key)], "known_hosts": None}


def _bucket() -> str:
    return f"jq-{next(_names)}-{uuid.uuid4().hex[:8]}"


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
def s3_store(s3_server: servers.Server) -> Store:
    options = s3_options(s3_server)
    fs = fsspec.filesystem("s3", **options)
    bucket = _bucket()
    fs.mkdir(bucket)
    return Store("s3", fs, f"{bucket}/root", f"s3://{bucket}/root", options)


@pytest.fixture
def gcs_store(gcs_server: servers.Server) -> Store:
    options = gcs_options(gcs_server)
    fs = fsspec.filesystem("gcs", **options)
    bucket = _bucket()
    fs.mkdir(bucket)
    return Store("gcs", fs, f"{bucket}/root", f"gcs://{bucket}/root", options)


@pytest.fixture
def sftp_store(sftp_server: tuple[servers.Server, Path], tmp_path: Path) -> Store:
    server, key = sftp_server
    options = sftp_options(key)
    root = tmp_path / "sftp"
    root.mkdir()
    fs = fsspec.filesystem(
        "ssh", host=servers.HOST, port=server.port, username="root", **options
    )
    url = f"ssh://root@{servers.HOST}:{server.port}{root}"
    return Store("sftp", fs, str(root), url, options)


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
