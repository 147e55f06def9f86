"""``journalq`` in a real terminal (tmux) and with its output piped.

A FIFO with no writer stands for a copy that takes as long as the test
needs. The run blocks on it while the test reads the screen, then the
test opens and closes the FIFO, so the copy ends with zero bytes, which
matches the size the FIFO reports.
With one worker the actions run in the order they were added.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import invoke, journalq_process, read_tree, write_tree
from terminal_helpers import Terminal, release_fifo

from journalq.cli.exits import ExitCode

FILES = {f"f{index:02d}.txt": b"%d\n" % index * 50 for index in range(20)}


@pytest.fixture
def terminal(queue_home: Path) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    terminal = Terminal({"JOURNALQ_HOME": str(queue_home), "TERM": "xterm-256color"})
    try:
        yield terminal
    finally:
        terminal.close()


@pytest.fixture
def stalled_queue(tmp_path: Path) -> tuple[str, Path]:
    """A queue of tree A (20 files and a dangling link), a FIFO, and tree B."""
    first = write_tree(tmp_path / "a", FILES)
    os.symlink(tmp_path / "later.txt", first / "late.txt")
    second = write_tree(tmp_path / "b", FILES)
    fifo = tmp_path / "stalled"
    os.mkfifo(fifo)
    queue = str(tmp_path / "q")
    for arguments in (
        ("tree", str(first), str(tmp_path / "out" / "a")),
        ("copy", str(fifo), str(tmp_path / "out" / "stalled")),
        ("tree", str(second), str(tmp_path / "out" / "b")),
    ):
        added = invoke("add", *arguments, "--queue", queue)
        assert added.exit_code == ExitCode.OK, added.output
    return queue, fifo


def test_terminal_progress_stop_and_resume(
    terminal: Terminal, stalled_queue: tuple[str, Path], tmp_path: Path
) -> None:
    queue, fifo = stalled_queue

    first = terminal.run("run", "--queue", queue, "-j", "1")
    during = terminal.wait_for(first, f"> {fifo}")
    terminal.press(first, "C-c")
    stopping = terminal.wait_for(first, "Stopping")
    release_fifo(fifo)
    first_status = terminal.exit_status(first)
    after = terminal.screen(first)

    # The display while the FIFO blocks: 42 actions, 21 files of tree A
    # (one of them failed) and the FIFO ahead of tree B.
    assert "Files" in during
    assert "/42 " in during
    assert "Bytes" in during
    assert "ETA" in during
    assert "failed 1" in during
    assert "in flight" in during
    assert "Ctrl-C again exits at once" in stopping
    assert first_status == ExitCode.INTERRUPTED
    assert "interrupted" in after
    assert f"to resume: journalq run --queue {queue}" in after
    assert "1 action failed:" in after
    assert "late.txt" in after

    (tmp_path / "later.txt").write_bytes(b"here now")
    retried = invoke("retry", "--queue", queue)
    assert retried.exit_code == ExitCode.OK, retried.output
    # The copy of the FIFO that Ctrl-C stopped waits again, and blocks again.
    second = terminal.run("run", "--queue", queue, "-j", "1")
    terminal.wait_for(second, f"> {fifo}")
    release_fifo(fifo)
    second_status = terminal.exit_status(second)
    resumed = terminal.screen(second)

    assert second_status == ExitCode.OK, resumed
    assert "Resumed: 20 of 41 were done by earlier runs" in resumed
    assert "22/22 (100%)" in resumed
    assert "copied 22, skipped 0, failed 0" in resumed
    assert read_tree(tmp_path / "out" / "b") == FILES
    assert (tmp_path / "out" / "a" / "late.txt").read_bytes() == b"here now"


def test_no_progress_display_without_terminal(
    stalled_queue: tuple[str, Path],
) -> None:
    queue, fifo = stalled_queue
    process = journalq_process(
        "run",
        "--queue",
        queue,
        "-j",
        "1",
        "-v",
        "--stats",
        "0.05",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "progress: files" in line:
            first_progress = line
            break
    else:
        raise AssertionError("no progress line before the run ended")
    release_fifo(fifo)
    stdout, stderr = process.communicate(timeout=60)

    assert "/42 (" in first_progress
    assert "INFO journalq.progress" in first_progress
    assert "\x1b[" not in stderr
    assert "━" not in stderr
    assert "Files" not in stderr
    assert "copied" in stderr
    assert "copied " in stdout
    assert process.returncode == ExitCode.FAILED, stderr
