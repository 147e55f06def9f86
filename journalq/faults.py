"""Named crash points for tests.

Code that has a crash-sensitive step calls :func:`point` with a stable name
(``"journal.after_write"``, ``"transfer.before_rename"``...). In normal use
the hook is ``None`` and the call costs one global lookup. Tests install a
hook that raises, or that kills the process with SIGKILL when a chosen point
is reached, to check that recovery from exactly that moment is correct.

A child process can arm a point through the environment:
``JOURNALQ_CRASH_AT=NAME[:N]`` sends SIGKILL to the process the N-th time
(default 1) the point named NAME is reached.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

__all__ = ["clear", "install", "point"]

_hook: Callable[[str], None] | None = None


def point(name: str) -> None:
    """Mark the crash point ``name``; a no-op unless a hook is installed."""
    if _hook is not None:
        _hook(name)


def install(hook: Callable[[str], None] | None) -> None:
    """Install ``hook``, called with each point's name; ``None`` removes it."""
    global _hook  # noqa: PLW0603
    _hook = hook


def clear() -> None:
    """Remove the installed hook."""
    install(None)


def _kill_at(target: str, count: int) -> Callable[[str], None]:
    seen = 0

    def hook(name: str) -> None:
        nonlocal seen
        if name == target:
            seen += 1
            if seen >= count:
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _install_from_environment() -> None:
    spec = os.environ.get("JOURNALQ_CRASH_AT")
    if not spec:
        return
    name, _, count = spec.partition(":")
    install(_kill_at(name, int(count) if count else 1))


_install_from_environment()
