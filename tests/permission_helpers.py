"""Running journalq without root's right to ignore file permissions.

The test machine may run as root, which reads a directory of mode 000 and
writes into one of mode 555 anyway. :func:`unprivileged` then runs the
command under ``setpriv`` with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
dropped, and skips the test when ``setpriv`` is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def unprivileged(command: list[str]) -> list[str]:
    """Return ``command`` run without the right to ignore file permissions."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv is missing")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]


def journalq_unprivileged(*arguments: str) -> subprocess.CompletedProcess:
    """Run ``python -m journalq ARGUMENTS`` unprivileged, capturing its output.

    The process inherits the environment, ``JOURNALQ_HOME`` included.
    """
    return subprocess.run(
        unprivileged([sys.executable, "-m", "journalq", *arguments]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def mode(path: Path, bits: int) -> Iterator[Path]:
    """Give ``path`` the permission ``bits`` until the block ends.

    The old mode comes back even when the block fails, so pytest can
    delete ``tmp_path`` afterwards.
    """
    old = path.stat().st_mode & 0o7777
    path.chmod(bits)
    try:
        yield path
    finally:
        path.chmod(old)
