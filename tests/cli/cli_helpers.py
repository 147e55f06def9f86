"""Helpers of the command-line tests: invoking journalq and comparing trees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result
from tree_helpers import write_tree  # noqa: F401 (the CLI tests import it here)

from journalq.cli import cli


def invoke(*arguments: str, input: str | None = None) -> Result:
    """Run ``journalq ARGUMENTS`` in this process and return its result."""
    return CliRunner().invoke(cli, list(arguments), input=input, catch_exceptions=False)


def json_lines(text: str) -> list[dict]:
    """Parse output of ``--json``: one JSON object per non-blank line."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_tree(root: Path) -> dict[str, bytes]:
    """Return every file under ``root`` by relative path."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def queue_files(queue: Path) -> dict[str, int | None]:
    """Return the size of every file under the queue directory ``queue``.

    Directories are listed too, with None, so a new empty one shows.
    """
    return {
        path.relative_to(queue).as_posix(): path.stat().st_size
        if path.is_file()
        else None
        for path in sorted(queue.rglob("*"))
    }


SAMPLE = {
    "a.txt": b"alpha\n",
    "empty.bin": b"",
    "docs/b.txt": b"bravo" * 100,
    "docs/deep/c.txt": b"charlie\n",
    "docs/deep/er/d.bin": bytes(range(256)) * 40,
}


def journalq_process(
    *arguments: str, env: dict[str, str] | None = None, **popen: object
) -> subprocess.Popen:
    """Start ``python -m journalq ARGUMENTS`` as a child process."""
    return subprocess.Popen(
        [sys.executable, "-m", "journalq", *arguments],
        env={**os.environ, **(env or {})},
        **popen,  # type: ignore[arg-type]
    )


def run_journalq(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``python -m journalq ARGUMENTS`` to its end, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "journalq", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


MIB = 1024 * 1024


def run_journalq_killed_at(point: str, *arguments: str) -> subprocess.CompletedProcess:
    """Run ``python -m journalq ARGUMENTS``, SIGKILLed at the crash point ``point``.

    ``point`` is ``NAME`` or ``NAME:N``, as ``JOURNALQ_CRASH_AT`` takes it.
    """
    return subprocess.run(
        [sys.executable, "-m", "journalq", *arguments],
        env={**os.environ, "JOURNALQ_CRASH_AT": point},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_large_file(path: Path, mebibytes: int) -> None:
    """Write ``mebibytes`` MiB: one random MiB repeated, which is quick to make."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(MIB) * mebibytes)
