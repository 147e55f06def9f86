"""``journalq`` in a real terminal (tmux) and with its output piped.

A FIFO with no writer stands for a copy that takes as long as the test
needs. The run blocks on it while the test reads the screen, then the
test opens and closes the FIFO, so the copy ends with zero bytes, which
matches the size the FIFO reports.
With one worker the actions run in the order they were added.
"""

from __future__ import annotations

import errno
import os
import pty
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import (
    SAMPLE,
    invoke,
    journalq_process,
    json_lines,
    read_tree,
    write_tree,
)
from terminal_helpers import WIDTH, Terminal, open_fifo_writer, release_fifo

from journalq.cli.exits import ExitCode

FILES = {f"f{index:02d}.txt": b"%d\n" % index * 50 for index in range(20)}
#: The rate line of the display: ``Rate  1.2 KiB/s  ETA 0:00:03  elapsed ...``.
RATE_LINE = re.compile(r"Rate +(\d+(?:\.\d)?) (B|KiB|MiB|GiB)/s +ETA ")
#: The end of the summary line: ``...; 3.0 KiB in 0.4 s (7.5 KiB/s)``.
SUMMARY_RATE = re.compile(r" in [\d.]+ m?s \((\d+(?:\.\d)?) (B|KiB|MiB|GiB)/s\)")
#: ``python -c`` code that runs journalq with the ``faultymemory://``
#: filesystem of tests/survival/faulty.py registered, so the run in the
#: terminal meets real retries.
FAULTY_JOURNALQ = (
    "import runpy, sys; "
    f"sys.path.insert(0, {str(Path(__file__).parent.parent / 'survival')!r}); "
    "import faulty; "
    "runpy.run_module('journalq', run_name='__main__', alter_sys=True)"
)


@pytest.fixture
def terminal(queue_home: Path) -> Iterator[Terminal]:
    # `make test` installs tmux, so a missing tmux fails the test instead of
    # skipping it, like a missing sshd.
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed; `make test-deps` installs it")
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
    assert "retried 0" in during
    assert RATE_LINE.search(during) is not None, during
    assert "in flight" in during
    assert "Ctrl-C again exits at once" in stopping
    assert first_status == ExitCode.INTERRUPTED
    assert "interrupted" in after
    assert f"to resume: journalq run --queue {queue}" in after
    assert "1 action failed, and so did the tree that holds it:" in after
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
    assert "Resumed: 20 of 41 items were done by earlier runs" in resumed
    assert "22/22 (100%)" in resumed
    assert RATE_LINE.search(resumed) is not None, resumed
    assert "copied 22, skipped 0, failed 0" in resumed
    assert read_tree(tmp_path / "out" / "b") == FILES
    assert (tmp_path / "out" / "a" / "late.txt").read_bytes() == b"here now"


def test_terminal_stop_message_below_echo(
    terminal: Terminal, stalled_queue: tuple[str, Path]
) -> None:
    """Without the display, the message that Ctrl-C prints starts on a line
    of its own, below the ``^C`` that the terminal echoed."""
    queue, fifo = stalled_queue

    window = terminal.run("run", "--queue", queue, "-j", "1", "--no-progress")
    writer = open_fifo_writer(fifo)
    terminal.press(window, "C-c")
    screen = terminal.wait_for(window, "stopping:")
    os.close(writer)
    status = terminal.exit_status(window)
    lines = screen.splitlines()

    assert status == ExitCode.INTERRUPTED, terminal.screen(window)
    assert "^C" in lines, screen
    assert any(line.startswith("stopping: no new actions") for line in lines), screen


def test_terminal_rate_and_retries(terminal: Terminal, tmp_path: Path) -> None:
    """The display and the summary count each retry and show a rate.

    The first write of each file to ``faultymemory://`` fails with a reset
    connection (a mock, because no real filesystem fails a chosen write
    once), so each of the 20 files is retried once and then copied.
    """
    source = write_tree(tmp_path / "src", FILES)
    window = terminal.run_python(
        "-c",
        FAULTY_JOURNALQ,
        "copy",
        f"{source}/",
        "faultymemory:///out/",
        "--destination-option",
        "faults=reset",
        "--destination-option",
        "fault_operations=write",
        "--destination-option",
        "fault_first=1",
        "-j",
        "1",
    )
    status = terminal.exit_status(window)
    screen = terminal.screen(window)
    display_rate = RATE_LINE.search(screen)
    summary_rate = SUMMARY_RATE.search(screen)

    assert status == ExitCode.OK, screen
    assert "20/20 (100%)" in screen
    assert "copied 20  skipped 0  failed 0  retried 20  in flight 0" in screen
    assert "copied 20, skipped 0, failed 0, retried 20" in screen
    assert display_rate is not None, screen
    assert summary_rate is not None, screen
    assert float(summary_rate.group(1)) > 0


def test_actions_fit_terminal_width(terminal: Terminal, tmp_path: Path) -> None:
    """In a terminal, without COLUMNS, `actions` fits the terminal's width."""
    source = write_tree(tmp_path / ("source-" * 8), FILES)
    queue = str(tmp_path / "q")
    target = tmp_path / ("destination-" * 6)
    added = invoke("add", "tree", str(source), str(target), "--queue", queue)
    assert added.exit_code == ExitCode.OK, added.output
    actions = json_lines(invoke("actions", "--queue", queue, "--json").stdout)

    window = terminal.run("actions", "--queue", queue)
    status = terminal.exit_status(window)
    lines = terminal.screen(window).splitlines()

    assert status == ExitCode.OK, lines
    # capture-pane -J joins a line that wrapped, so a long one shows whole.
    assert max(len(line) for line in lines) <= WIDTH
    rows = [line.split()[0] for line in lines if line and not line.startswith(" ")]
    assert rows[0] == "ID"
    assert rows[1 : 1 + len(actions)] == [action["id"][:8] for action in actions]
    assert len(max((action["destination"] for action in actions), key=len)) > WIDTH


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


def run_with_pty(
    *arguments: str, stdout_on_pty: bool, stderr_on_pty: bool, stderr_file: Path
) -> tuple[int, str, str]:
    """Run ``python -m journalq ARGUMENTS`` with a pseudo-terminal on some streams.

    A stream not on the pseudo-terminal goes to a pipe (stdout) or to
    ``stderr_file`` (stderr), as ``> log`` and ``2> log`` do in a shell.
    Returns the exit status, what the terminal showed and what the
    redirected stream received.
    """
    controller, terminal = pty.openpty()
    with stderr_file.open("wb") as stderr_sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "journalq", *arguments],
            stdin=subprocess.DEVNULL,
            stdout=terminal if stdout_on_pty else subprocess.PIPE,
            stderr=terminal if stderr_on_pty else stderr_sink,
            env={**os.environ, "TERM": "xterm-256color"},
        )
    os.close(terminal)
    screen = bytearray()
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError as error:
            # Linux reports EIO once every process has closed the terminal.
            if error.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        screen += chunk
    os.close(controller)
    piped = process.stdout.read() if process.stdout is not None else b""
    status = process.wait(timeout=60)
    redirected = piped if stderr_on_pty else stderr_file.read_bytes()
    return status, screen.decode(errors="replace"), redirected.decode()


@pytest.mark.parametrize(
    ("stdout_on_pty", "stderr_on_pty", "drawn"),
    [
        pytest.param(True, True, True, id="both-terminal"),
        pytest.param(False, True, False, id="stdout-redirected"),
        pytest.param(True, False, False, id="stderr-redirected"),
    ],
)
def test_display_needs_both_terminals(
    sample: Path,
    tmp_path: Path,
    stdout_on_pty: bool,
    stderr_on_pty: bool,
    drawn: bool,
) -> None:
    """``sync > log`` and ``sync 2> log`` draw nothing; a terminal run does."""
    status, screen, redirected = run_with_pty(
        "sync",
        str(sample),
        str(tmp_path / "copy"),
        "-v",
        stdout_on_pty=stdout_on_pty,
        stderr_on_pty=stderr_on_pty,
        stderr_file=tmp_path / "stderr.log",
    )
    output = screen + redirected

    assert status == ExitCode.OK, output
    assert read_tree(tmp_path / "copy") == SAMPLE
    assert ("Files" in output) is drawn, output
    assert ("ETA" in output) is drawn, output
    assert "\x1b[" not in redirected
    assert "copied 5, skipped 0, failed 0" in output
    # -v lists each file on stdout, the terminal or the pipe.
    assert "a.txt" in (screen if stdout_on_pty else redirected)
