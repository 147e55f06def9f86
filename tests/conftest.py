"""Fixtures shared by the test modules at this level."""

from __future__ import annotations

from collections.abc import Iterator

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem


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
