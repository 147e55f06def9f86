"""Fixtures of the survival tests.

The ``memory`` fixture empties fsspec's memory filesystem around a test.
The servers on 127.0.0.1 (moto's S3 server, fake-gcs-server and an
OpenSSH sshd) and their ``bucket`` and ``gcs_bucket`` fixtures are the
session's, from ``tests/server_fixtures.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem


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
