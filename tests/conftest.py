"""Fixtures shared by the test modules at this level.

The test servers' fixtures, which every test directory shares, are in
``server_fixtures.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

pytest_plugins = ["server_fixtures"]


@pytest.fixture(autouse=True)
def queue_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Keep the queues a test names (or derives) out of the user's state dir.

    ``JOURNALQ_HOME`` reaches the ``journalq`` subprocesses too. A test that
    sets it itself overrides this one.
    """
    home = tmp_path_factory.mktemp("journalq-home")
    monkeypatch.setenv("JOURNALQ_HOME", str(home))


@pytest.fixture
def memory_fs() -> Iterator[MemoryFileSystem]:
    """The memory filesystem, emptied before and after the test.

    Its store is shared by every instance in the process, so a test that
    left files behind would change the next test's listing.
    """
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]
    yield fs
    fs.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]


@pytest.fixture
def local_fs() -> fsspec.AbstractFileSystem:
    """The local filesystem."""
    return fsspec.filesystem("file")
