"""Ctrl-C during a run: the first press stops it, the second exits at once.

SIGTERM counts as a press too, so a service manager's stop is as clean,
and so does SIGHUP, which a closed terminal or a dropped ssh session sends.

The first SIGINT sets the run's stop event. No new action starts, copies in
flight stop at their next chunk (the next run copies them again), the
journal is flushed and the run returns, so the command prints its summary
and exits with 130. A second SIGINT ends the process on the spot with ``os._exit``:
journal records that were already synced stay, and the next run resumes from
them (actions that were in progress are redone).

A read that hangs (a stalled server, a FIFO with no writer) never reaches
its next chunk. So the first press also starts a timer, and when the run
has not returned after ``timeout`` seconds, the process exits as on the
second press.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Final, NoReturn

from journalq.cli.exits import ExitCode

__all__ = ["DEFAULT_STOP_TIMEOUT", "stop_on_interrupt"]


#: Seconds after the first Ctrl-C until the process exits as on the second.
#: A copy stops at its next chunk of 1 MiB, and 30 s cover that chunk on a
#: link of 35 KB/s or more. A run still busy after that is most likely
#: stuck on a read or a write that does not return (an estimate).
DEFAULT_STOP_TIMEOUT: Final = 30.0

#: Makes the terminal's cursor visible again. A progress display hides it,
#: and an exit on the spot leaves no time for the display to restore it.
_SHOW_CURSOR = "\x1b[?25h"


@contextlib.contextmanager
def stop_on_interrupt(
    stop: threading.Event,
    resume: str,
    *,
    on_stop: Callable[[], None] | None = None,
    timeout: float = DEFAULT_STOP_TIMEOUT,
) -> Iterator[None]:
    """Route SIGINT to ``stop`` while the block runs; ``resume`` is printed.

    ``on_stop``, when given, is called on the first press in place of
    printing the stopping message: a progress display shows it instead,
    because a line written under the display would be drawn over. It runs
    inside the signal handler, so it must only set a flag.

    ``timeout`` is the number of seconds after the first press until the
    process exits as on the second, and 0 waits without a limit.

    Signal handlers can only be installed from the main thread; elsewhere
    (a library caller running the command in a thread) SIGINT keeps its
    previous handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    presses = 0
    timer: threading.Timer | None = None

    def expire() -> None:
        _exit_now(
            f"the actions in flight did not stop within {timeout:g} s "
            f"(--stop-timeout); exiting. To resume: {resume}"
        )

    def handle(signum: int, frame: object) -> None:
        nonlocal presses, timer
        presses += 1
        if presses > 1:
            _exit_now(f"exiting at once. To resume: {resume}")
        stop.set()
        if timeout > 0:
            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        if on_stop is not None:
            on_stop()
            return
        _write(
            f"{_after_echo()}stopping: no new actions start; waiting for the "
            f"ones in flight {_limit(timeout)}(press Ctrl-C again to exit at "
            f"once). To resume: {resume}\n"
        )

    # SIGTERM (systemd, docker stop, kill) and SIGHUP (a closed terminal,
    # a dropped ssh session) stop the run the same way.
    stopping = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {number: signal.signal(number, handle) for number in stopping}
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        for number, handler in previous.items():
            signal.signal(number, handler)


def _limit(timeout: float) -> str:
    return f"for at most {timeout:g} s " if timeout > 0 else ""


def _exit_now(message: str) -> NoReturn:
    """Print ``message`` and end the process with 130, leaving the journal as is.

    Records already written stay, and the next run redoes the actions that
    were in progress.
    """
    cursor = _SHOW_CURSOR if os.isatty(2) else ""
    _write(f"{cursor}{_after_echo()}{message}\n")
    os._exit(ExitCode.INTERRUPTED)


def _after_echo() -> str:
    """Return a newline when stderr is a terminal, else nothing.

    The terminal driver echoes Ctrl-C as ``^C`` without a newline (termios
    ECHOCTL), so a message written after it would start on that line. A
    log file or a pipe gets no echo, and a blank first line there is noise.
    """
    return "\n" if os.isatty(2) else ""


def _write(text: str) -> None:
    # The handler runs between two bytecodes of the main thread, possibly in
    # the middle of a print to sys.stderr; a raw write cannot re-enter it.
    # After a hangup the terminal is gone, and the run must stop anyway.
    with contextlib.suppress(OSError):
        os.write(2, text.encode("utf-8", "replace"))
