"""Fixtures of the journal tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from journalq import durable, faults


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    """A journal directory that does not exist yet, inside a queue directory."""
    return tmp_path / "queue" / "journal"


@pytest.fixture(autouse=True)
def _restore_hooks() -> Iterator[None]:
    """Undo fault hooks and replaced file operations after every test."""
    original = durable.ops
    yield
    faults.clear()
    durable.ops = original
