"""A private tmux server to run ``journalq`` in a real terminal and read its screen."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

#: Columns and rows of the terminal, wide enough that no line wraps.
WIDTH = 120
HEIGHT = 40


class Terminal:
    """A tmux server on its own socket; each command runs in a new window.

    Windows stay open after their command exits (``remain-on-exit``), so the
    last screen can still be read.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"journalq-test-{uuid.uuid4().hex[:12]}"
        self.env = env
        self._tmux(
            "-f",
            os.devnull,
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            str(WIDTH),
            "-y",
            str(HEIGHT),
        )
        self._tmux("set-option", "-g", "remain-on-exit", "on")
        self._tmux("set-option", "-g", "history-limit", "1000")

    def _tmux(self, *arguments: str) -> str:
        completed = subprocess.run(
            ["tmux", "-L", self.socket, *arguments],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if completed.returncode != 0:
            raise AssertionError(f"tmux {arguments} failed: {completed.stderr}")
        return completed.stdout

    def run(self, *arguments: str) -> str:
        """Start ``python -m journalq ARGUMENTS`` in a new window; return its id."""
        return self.run_python("-m", "journalq", *arguments)

    def run_python(self, *arguments: str) -> str:
        """Start ``python ARGUMENTS`` in a new window; return its id.

        A bash around the command prints its exit status when it ends: tmux
        3.3 sometimes marks a pane dead before it has the status. The
        shell's own trap keeps Ctrl-C from ending it before that line.
        """
        environment = []
        for name, value in self.env.items():
            environment += ["-e", f"{name}={value}"]
        script = 'trap : INT; "$@"; echo "[exit status $?]"'
        command = shlex.join(["bash", "-c", script, "bash", sys.executable, *arguments])
        window = self._tmux(
            "new-window",
            "-d",
            "-P",
            "-F",
            "#{window_id}",
            *environment,
            "-t",
            "main:",
            command,
        )
        return window.strip()

    def screen(self, window: str) -> str:
        """Return the window's text: its scrollback and the visible screen."""
        return self._tmux("capture-pane", "-p", "-J", "-S", "-1000", "-t", window)

    def wait_for(self, window: str, text: str, timeout: float = 30) -> str:
        """Return the screen once it contains ``text``; fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(window)
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen:\n{screen}")
            time.sleep(0.05)

    def exit_status(self, window: str, timeout: float = 30) -> int:
        """Wait for the window's command to exit; return its exit status."""
        screen = self.wait_for(window, "[exit status ", timeout)
        found = re.search(r"\[exit status (\d+)\]", screen)
        assert found is not None, screen
        return int(found.group(1))

    def press(self, window: str, key: str) -> None:
        """Type ``key`` (tmux's name, such as ``C-c``) into the window."""
        self._tmux("send-keys", "-t", window, key)

    def close(self) -> None:
        """Stop the tmux server and every command still running in it."""
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"],
            capture_output=True,
            check=False,
            timeout=30,
        )


def release_fifo(fifo: Path, timeout: float = 30) -> None:
    """Open ``fifo`` for writing and close it, so its reader sees the end."""
    os.close(open_fifo_writer(fifo, timeout))


def open_fifo_writer(fifo: Path, timeout: float = 30) -> int:
    """Open ``fifo`` for writing once a process reads it; return the descriptor.

    Opening without blocking fails while no process reads it yet, so the
    open is repeated until the reader is there. The reader sees the end of
    the data when the descriptor is closed.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
