"""The ``journalq`` command as a child process, for the backend kill tests.

A test builds the command with :func:`journalq_command` from two stores of
``conftest.py`` and runs it with :func:`run_journalq`, which can arm a
crash point through ``JOURNALQ_CRASH_AT``. The stores' options, secrets
included, go on the command line, as a user resuming a copy gives them
again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from store_helpers import Store

#: Exit status of a process that SIGKILLed itself at its crash point.
KILLED = -9


def url_with_slash(store: Store, relpath: str) -> str:
    """Return the URL of ``relpath`` on ``store`` with a trailing slash."""
    return f"{store.url.rstrip('/')}/{relpath}/"


def journalq_command(
    tmp_path: Path, source: Store, destination: Store, *extra: str
) -> list[str]:
    """Return ``journalq copy SRC/ DST --json`` with both stores' options.

    It copies the contents of ``data`` on ``source`` into ``out`` on
    ``destination``, in the queue ``tmp_path/queue``. ``extra`` are more
    arguments, such as ``-j 1``.
    """
    options = []
    for flag, store in (
        ("--source-option", source),
        ("--destination-option", destination),
    ):
        for name, value in store.options.items():
            options += [flag, f"{name}={json.dumps(value)}"]
    return [
        *(sys.executable, "-m", "journalq", "copy"),
        url_with_slash(source, "data"),
        f"{destination.url.rstrip('/')}/out",
        *("--queue", str(tmp_path / "queue"), "--json", *options, *extra),
    ]


def run_journalq(
    command: list[str], crash_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command``; with ``crash_at`` (``NAME:N``) it SIGKILLs itself there."""
    environment = dict(os.environ)
    if crash_at is not None:
        environment["JOURNALQ_CRASH_AT"] = crash_at
    return subprocess.run(
        command,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def summary_of(completed: subprocess.CompletedProcess[str]) -> dict:
    """Return the summary line of a run that exited with status 0."""
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout.splitlines()[-1])
    assert summary["event"] == "summary"
    return summary
