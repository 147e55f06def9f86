"""Ctrl-C during a run: the first press stops it, the second exits at once.

SIGTERM counts as a press too, so a service manager's stop is as clean.

The first SIGINT sets the run's stop event. No new action starts, copies in
flight stop at their next chunk (the next run copies them again), the
journal is flushed and the run returns, so the command prints its summary
and exits with 130. A second SIGINT ends the process on the spot with ``os._exit``:
journal records that were already synced stay, and the next run resumes from
them (actions that were in progress are redone).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

from journalq.cli.exits import ExitCode

__all__ = ["stop_on_interrupt"]


@contextlib.contextmanager
def stop_on_interrupt(stop: threading.Event, resume: str) -> Iterator[None]:
    """Route SIGINT to ``stop`` while the block runs; ``resume`` is printed.

    Signal handlers can only be installed from the main thread; elsewhere
    (a library caller running the command in a thread) SIGINT keeps its
    previous handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    presses = 0

    def handle(signum: int, frame: object) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            stop.set()
            _write(
                "\nstopping: no new actions start; waiting for the ones in "
                f"flight (press Ctrl-C again to exit at once). To resume: {resume}\n"
            )
            return
        _write(f"\nexiting at once. To resume: {resume}\n")
        os._exit(ExitCode.INTERRUPTED)

    previous = signal.signal(signal.SIGINT, handle)
    # SIGTERM (systemd, docker stop, kill) stops the run the same way.
    previous_term = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


def _write(text: str) -> None:
    # The handler runs between two bytecodes of the main thread, possibly in
    # the middle of a print to sys.stderr; a raw write cannot re-enter it.
    os.write(2, text.encode("utf-8", "replace"))
