"""Fixtures of the command-line tests: a private queue home and sample trees."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from cli_helpers import SAMPLE, write_tree


@pytest.fixture(autouse=True)
def queue_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep named queues of each test in its own directory."""
    home = tmp_path / "home"
    monkeypatch.setenv("JOURNALQ_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def no_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Print tables whole, as to a pipe, even where the shell exports COLUMNS."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture
def memory() -> Iterator[fsspec.AbstractFileSystem]:
    """The memory filesystem, empty before and after the test."""
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]
    yield fs
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A small local tree with nested folders and an empty file."""
    return write_tree(tmp_path / "data", SAMPLE)
