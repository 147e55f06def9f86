"""The click command classes: where errors become messages and exit codes.

Every ``journalq`` command is a :class:`Command` (or a :class:`Group`), whose
``invoke`` sets up logging from the common options and turns any exception
the library raises into one plain sentence on stderr and the exit code from
:mod:`journalq.cli.exits`. The traceback is printed only at ``-vv``.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from typing import Any, NoReturn

import click

from journalq.cli.context import configure_logging, settings
from journalq.cli.exits import ExitCode
from journalq.cli.messages import CommandError, code_for, describe
from journalq.errors import JournalqError

__all__ = ["Command", "Group", "command", "fail", "group"]

logger = logging.getLogger(__name__)


def fail(message: str, code: ExitCode) -> NoReturn:
    """Print ``message`` as an error and end the command with ``code``."""
    click.echo(f"journalq: error: {message}", err=True)
    raise click.exceptions.Exit(code)


def _report(ctx: click.Context, error: BaseException) -> None:
    if settings(ctx).verbosity >= 2:
        click.echo("".join(traceback.format_exception(error)), err=True, nl=False)
    if isinstance(error, CommandError | JournalqError | OSError | ImportError):
        fail(describe(error), code_for(error))
    hint = "" if settings(ctx).verbosity >= 2 else " (run with -vv for the traceback)"
    fail(f"unexpected {describe(error)}{hint}", code_for(error))


def _invoke_guarded(ctx: click.Context, invoke: Any) -> Any:
    configure_logging(ctx, settings(ctx).log_level)
    try:
        return invoke(ctx)
    except (click.exceptions.Exit, click.ClickException, click.Abort):
        raise
    except BrokenPipeError:
        # The reader of stdout went away (``journalq sync ... | head``). Like
        # a process that SIGPIPE ended, exit quietly with 141, so a script
        # can tell that a run stopped where it was. Python is kept from complaining
        # about stdout again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise click.exceptions.Exit(ExitCode.PIPE_CLOSED) from None
    except KeyboardInterrupt:
        fail(
            "interrupted; what was already journaled is kept, so running the "
            "same command again resumes",
            ExitCode.INTERRUPTED,
        )
    except Exception as error:  # the one place errors end a command
        _report(ctx, error)
    return None


class Command(click.Command):
    """A ``journalq`` command: logging set up, errors mapped to exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        return _invoke_guarded(ctx, super().invoke)


class Group(click.Group):
    """A ``journalq`` command group; its commands are :class:`Command`."""

    command_class = Command

    def invoke(self, ctx: click.Context) -> Any:
        return _invoke_guarded(ctx, super().invoke)


Group.group_class = Group

#: ``@command(...)``: a click command of class :class:`Command`.
command = functools.partial(click.command, cls=Command)
#: ``@group(...)``: a click group of class :class:`Group`.
group = functools.partial(click.group, cls=Group)
