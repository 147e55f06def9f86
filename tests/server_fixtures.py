"""Fixtures of the test servers on 127.0.0.1: S3, GCS and SFTP.

``tests/conftest.py`` loads this module as a plugin, so every test
directory shares one moto S3 server, one fake-gcs-server and one sshd
(see ``servers.py``). Each server starts when the first test that needs
it requests its fixture, and stops when the session ends. The ``bucket``
and ``gcs_bucket`` fixtures give each test a new, empty bucket.

A test that breaks, restarts or counts the requests of a server starts
one of its own with ``servers.moto_server`` and the like, or counts
through a relay of its own (``tests/backends/relay.py``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# gcsfs otherwise queries a gRPC endpoint whether each bucket has a
# hierarchical namespace, which the emulator does not serve, and every
# bucket operation waits 60 s for the response. Set before gcsfs is imported,
# and inherited by the journalq processes the tests start.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

import fsspec
import pytest
import servers

_bucket_numbers = itertools.count()


def new_bucket(fs: fsspec.AbstractFileSystem) -> str:
    """Create a bucket on ``fs`` under a name no other test of the session uses."""
    name = f"jq-{next(_bucket_numbers)}"
    fs.mkdir(name)
    return name


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of the servers' logs, keys and configuration."""
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def s3_server(server_dir: Path) -> Iterator[servers.Server]:
    """moto's S3 server."""
    with servers.moto_server(server_dir) as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server(server_dir: Path) -> Iterator[servers.Server]:
    """fake-gcs-server with an in-memory backend."""
    with servers.gcs_server(server_dir) as server:
        yield server


@pytest.fixture(scope="session")
def sftp_server(server_dir: Path) -> Iterator[tuple[servers.Server, Path]]:
    """An sshd that takes root logins, and the client's private key file."""
    server, key = servers.sshd_server(server_dir / "ssh")
    with server:
        yield server, key


# Storage options are built anew for each test, so a test that changes its
# dict changes no other test's.


@pytest.fixture
def s3_options(s3_server: servers.Server) -> dict[str, Any]:
    """Storage options that reach :func:`s3_server`, secret included."""
    return servers.s3_options(s3_server)


@pytest.fixture
def gcs_options(gcs_server: servers.Server) -> dict[str, Any]:
    """Storage options that reach :func:`gcs_server`."""
    return servers.gcs_options(gcs_server)


@pytest.fixture
def sftp_options(sftp_server: tuple[servers.Server, Path]) -> dict[str, Any]:
    """Storage options that log in to :func:`sftp_server` with its client key."""
    return servers.sftp_options(sftp_server[1])


@pytest.fixture
def bucket(s3_options: dict[str, Any]) -> str:
    """A new, empty bucket on :func:`s3_server`."""
    return new_bucket(fsspec.filesystem("s3", **s3_options))


@pytest.fixture
def gcs_bucket(gcs_options: dict[str, Any]) -> str:
    """A new, empty bucket on :func:`gcs_server`."""
    return new_bucket(fsspec.filesystem("gcs", **gcs_options))
