"""Servers of the survival tests, started once per session on 127.0.0.1.

moto's S3 server, fake-gcs-server and an OpenSSH sshd (see
``tests/servers.py``). A test
that names one of these fixtures gets what reaches the server, and the
``bucket`` fixture gives each test a bucket of its own. The ``memory``
fixture empties fsspec's memory filesystem around a test.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# gcsfs otherwise queries a gRPC endpoint whether each bucket has a
# hierarchical namespace, which the emulator does not serve, and every
# bucket operation waits 60 s for the answer.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

import fsspec
import pytest
import servers
from fsspec.implementations.memory import MemoryFileSystem

#: Credentials that moto accepts. They reach no real account.
S3_KEY, S3_SECRET = "survival-key", "survival-secret"

_buckets = itertools.count()


@pytest.fixture
def memory() -> Iterator[MemoryFileSystem]:
    """fsspec's memory filesystem, emptied before and after the test.

    Its store is shared by every instance in the process, the faulty and
    hostile subclasses of the tests included.
    """
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    yield fs
    fs.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]


@pytest.fixture(scope="session")
def moto_options(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Storage options, secret included, of a running moto S3 server."""
    pytest.importorskip("s3fs")
    server = servers.moto_server(tmp_path_factory.mktemp("moto"))
    server.start()
    try:
        yield {
            "key": S3_KEY,
            "secret": S3_SECRET,
            "endpoint_url": f"http://{servers.HOST}:{server.port}",
        }
    finally:
        server.stop()


@pytest.fixture
def bucket(moto_options: dict[str, Any]) -> str:
    """A new, empty bucket on the moto server."""
    name = f"survival-{next(_buckets)}"
    fsspec.filesystem("s3", **moto_options).mkdir(name)
    return name


@pytest.fixture(scope="session")
def gcs_options(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Storage options of a running fake-gcs-server."""
    pytest.importorskip("gcsfs")
    server = servers.gcs_server(tmp_path_factory.mktemp("gcs"))
    server.start()
    try:
        yield {
            "endpoint_url": f"http://{servers.HOST}:{server.port}",
            "token": "anon",
            "project": "journalq-survival",
        }
    finally:
        server.stop()


@pytest.fixture
def gcs_bucket(gcs_options: dict[str, Any]) -> str:
    """A new, empty bucket on fake-gcs-server."""
    name = f"survival-{next(_buckets)}"
    fsspec.filesystem("gcs", **gcs_options).mkdir(name)
    return name


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """The port of a running sshd that takes root logins, and the client key."""
    pytest.importorskip("sshfs")
    server, key = servers.sshd_server(tmp_path_factory.mktemp("sshd"))
    server.start()
    try:
        yield server.port, key
    finally:
        server.stop()


def sftp_options(key: Path) -> dict[str, Any]:
    """Storage options that log in to :func:`sshd` with ``key``."""
    return {"client_keys": [str(key)], "known_hosts": None}
