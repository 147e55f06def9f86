"""The ``journalq`` command line; ``main`` is the console script.

The command definitions are imported by :func:`main` and on first use of
``cli``, not with this package, and a Ctrl-C while they load must end the
command as one during a run does, not with a traceback. They import click
and little else (:mod:`journalq.cli.commands`): about 60 ms of wall time
for ``journalq --help`` against 220 ms when they imported the queue
engine (2-core development VM). A command imports the modules that do its
work when it runs.
"""

from __future__ import annotations

import gc
import sys

# The idiom that type checkers read as True, without importing typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from journalq.cli.main import cli

__all__ = ["cli", "main"]

#: The exit status of a command stopped by Ctrl-C (128 + SIGINT); the same
#: as ``journalq.cli.exits.ExitCode.INTERRUPTED``, which imports more.
_INTERRUPTED = 130


def main() -> None:
    """Run the ``journalq`` command line (the console script)."""
    try:
        # The imports create tracked objects that live as long as the
        # process, so a collection during them frees nothing. Frozen, they
        # are not walked by any later collection either. When these imports
        # included the queue engine (some 27,000 objects), this cut journalq
        # --version from 137 ms to 129 ms and a no-op re-sync of 10,000
        # files from 282 ms to 273 ms (medians of 21 interleaved runs).
        gc.disable()
        try:
            from journalq.cli.main import main as run_command_line
        finally:
            gc.freeze()
            gc.enable()
        run_command_line()
    except KeyboardInterrupt:
        # Before a command starts (while importing or parsing) or after it
        # ended. A command reports a Ctrl-C during its work itself, with the
        # same words.
        sys.stderr.write(
            "journalq: error: interrupted; what was already journaled is "
            "kept, so running the same command again resumes\n"
        )
        sys.exit(_INTERRUPTED)


def __getattr__(name: str) -> object:
    if name == "cli":
        from journalq.cli.main import cli

        return cli
    raise AttributeError(f"module 'journalq.cli' has no attribute {name!r}")
