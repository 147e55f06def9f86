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
from collections.abc import Callable, Iterator

from journalq.cli.exits import ExitCode

__all__ = ["stop_on_interrupt"]


#: Makes the terminal's cursor visible again. A progress display hides it,
#: and an exit on the spot leaves no time for the display to restore it.
_SHOW_CURSOR = "\x1b[?25h"


@contextlib.contextmanager
def stop_on_interrupt(
    stop: threading.Event,
    resume: str,
    *,
    on_stop: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Route SIGINT to ``stop`` while the block runs; ``resume`` is printed.

    ``on_stop``, when given, is called on the first press in place of
    printing the stopping message: a progress display shows it instead,
    because a line written under the display would be drawn over. It runs
    inside the signal handler, so it must only set a flag.

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
            if on_stop is not None:
                on_stop()
                return
            _write(
                "\nstopping: no new actions start; waiting for the ones in "
                f"flight (press Ctrl-C again to exit at once). To resume: {resume}\n"
            )
            return
        cursor = _SHOW_CURSOR if os.isatty(2) else ""
        _write(f"{cursor}\nexiting at once. To resume: {resume}\n")
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
