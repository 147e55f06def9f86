"""Queues shared by the command line and the library.

The command line creates a queue with the roots of its filesystems
(``file://``), a program usually with directories (``/data``). Each can
open the other's queues by name, and the error for a mismatch names the
next step in the caller's own terms.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import SAMPLE, invoke, read_tree

from journalq import EndpointMismatchError, StorageQueue
from journalq.cli.exits import ExitCode
from journalq.cli.queues import default_queue_name, parse_location


def test_cli_queue_opened_from_python(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    extra = tmp_path / "extra.txt"
    extra.write_bytes(b"extra")
    copied = invoke("copy", f"{sample}/", str(out))
    name = default_queue_name(
        "copy", parse_location(f"{sample}/"), parse_location(str(out))
    )

    with pytest.raises(EndpointMismatchError) as raised:
        StorageQueue(str(sample), str(out), name=name)
    with StorageQueue(name=name) as queue:
        waiting = queue.status()["waiting"]
        queue.copy_file(str(extra), str(out / "extra.txt"))
        summary = queue.run()

    message = str(raised.value)
    assert copied.exit_code == ExitCode.OK, copied.output
    assert raised.value.created == "file://"
    assert raised.value.role == "source"
    assert "StorageQueue(name=...)" in message
    assert "--queue" not in message
    assert waiting == 0
    assert summary.copied == 1
    assert read_tree(out) == {**SAMPLE, "extra.txt": b"extra"}


def test_python_queue_run_from_cli(sample: Path, tmp_path: Path) -> None:
    directory = tmp_path / "nightly"
    out = tmp_path / "out"
    with StorageQueue(str(sample), str(out), name=directory) as queue:
        queue.copy_tree(str(sample), str(out))

    run = invoke("run", "--queue", str(directory))
    status = invoke("status", "--queue", str(directory))
    added = invoke(
        "copy", f"{sample}/", str(tmp_path / "more"), "--queue", str(directory)
    )

    assert run.exit_code == ExitCode.OK, run.output
    assert read_tree(out) == SAMPLE
    assert status.exit_code == ExitCode.OK, status.output
    assert added.exit_code == ExitCode.USAGE
    assert f"created with the source 'file://{sample}'" in added.stderr
    assert f"`journalq run --queue {directory}`" in added.stderr
    assert "StorageQueue(name=...)" in added.stderr
    assert "another queue with --queue" in added.stderr
    assert not (tmp_path / "more").exists()


def test_cli_other_filesystem_rejected(sample: Path, tmp_path: Path, memory) -> None:
    directory = tmp_path / "q"
    first = invoke(
        "copy", f"{sample}/", str(tmp_path / "out"), "--queue", str(directory)
    )
    shutil.rmtree(tmp_path / "out")

    other = invoke("copy", f"{sample}/", "memory://out", "--queue", str(directory))

    assert first.exit_code == ExitCode.OK, first.output
    assert other.exit_code == ExitCode.USAGE
    assert "created with the destination 'file://', not 'memory://'" in other.stderr
    assert "`journalq queues` lists them" in other.stderr
    assert "StorageQueue" not in other.stderr


def test_python_root_queue_takes_cli_adds(sample: Path, tmp_path: Path) -> None:
    """A program that creates its queue as the command line does shares it."""
    directory = tmp_path / "q"
    StorageQueue("file://", "file://", name=directory).close()

    added = invoke(
        "add", "copy", f"{sample}/", str(tmp_path / "out"), "--queue", str(directory)
    )
    run = invoke("run", "--queue", str(directory))

    assert added.exit_code == ExitCode.OK, added.output
    assert run.exit_code == ExitCode.OK, run.output
    assert read_tree(tmp_path / "out") == SAMPLE
