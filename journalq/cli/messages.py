"""Errors as plain sentences: what failed, on which path or URL, what to do.

:func:`describe` turns an exception that ended a command into the message
the user reads. journalq's own errors already contain all of that; ``OSError``
and the errors of fsspec backends get the path and a next step added.
:func:`step` names what the command was doing when a backend raised, so
``NoCredentialsError: Unable to locate credentials`` becomes "reading the
source s3://bucket/x failed: ...".
"""

from __future__ import annotations

import contextlib
import errno
import shlex
from collections.abc import Iterator
from typing import Final

from journalq.cli.exits import ExitCode, exit_code_for
from journalq.errors import (
    EndpointMismatchError,
    JournalqError,
    StorageOptionError,
    StorageOptionValueError,
)

__all__ = ["CommandError", "code_for", "describe", "install_hint", "step"]

#: The journalq extra that installs the backend of each protocol.
EXTRAS: Final = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "sftp": "sftp",
    "ssh": "sftp",
}

_NEXT_STEPS: Final = {
    errno.ENOENT: "check the path",
    errno.EACCES: "check its permissions",
    errno.EPERM: "check its permissions",
    errno.ENOSPC: "free some space, then run the same command again to resume",
    errno.EDQUOT: "free some space, then run the same command again to resume",
    errno.EROFS: "the filesystem is mounted read-only; choose a writable place",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "the path is a directory where a file was expected",
}


class CommandError(Exception):
    """A command cannot go on; ``message`` is the whole sentence to print."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        self.message = message
        self.code = code
        super().__init__(message)


def install_hint(protocol: str) -> str:
    """Return the pip command that installs the backend of ``protocol``."""
    extra = EXTRAS.get(protocol)
    if extra is None:
        return f"install the fsspec backend for {protocol}://"
    return f"install it with: pip install 'journalq[{extra}]'"


def describe(error: BaseException) -> str:
    """Return ``error`` as the sentence a user reads."""
    if isinstance(error, StorageOptionError):
        return _describe_storage_option(error)
    if isinstance(error, StorageOptionValueError):
        flag = (
            f"--{error.role}-option"
            if error.role
            else "--source-option or --destination-option"
        )
        return (
            f"{error.filesystem} ({error.value}) {error.problem()}. Give it as "
            f'{flag} \'{error.option}={{"name": "value"}}\', with double '
            "quotes around each name and string (nothing was created or added)"
        )
    if isinstance(error, EndpointMismatchError):
        return _describe_endpoint_mismatch(error)
    if isinstance(error, CommandError | JournalqError):
        return str(error)
    if isinstance(error, OSError):
        return _describe_os_error(error)
    if isinstance(error, ImportError):
        return f"a package is missing: {error}"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _describe_storage_option(error: StorageOptionError) -> str:
    """Describe a rejected option with the command line's own flags.

    The library's message names ``destination_options``, the keyword of
    ``StorageQueue``.
    """
    flag = "--source-option or --destination-option"
    if error.role:
        flag = f"--{error.role}-option"
    what = f"{error.filesystem} ({error.value}) {error.rejected_clause()}"
    if error.missing_secrets:
        again = " ".join(f"{flag} {name}=..." for name in error.missing_secrets)
        return (
            f"{what}, and {error.secrets_needed()}. Give them under their "
            f"right names: {again}"
        )
    if not error.journaled:
        value = f"{flag} {error.option}=..." if error.option else f"{flag}"
        return f"{what}; correct the {value} value (nothing was created or added)"
    if error.option is not None:
        return (
            f"queue {error.queue} keeps the {error.role} options it was created "
            f"with, and {what}. Give {flag} {error.option}=... again with the "
            "key corrected: it replaces the kept value"
        )
    queue = shlex.quote(str(error.queue))
    return (
        f"queue {error.queue} keeps the {error.role} options it was created "
        f"with, and {what}. A {flag} given again replaces the kept option of "
        "the same name but cannot remove one: delete the queue with "
        f"`journalq drop {queue}` (the files stay) and run the command again, "
        "or name another queue with --queue"
    )


def _describe_endpoint_mismatch(error: EndpointMismatchError) -> str:
    """Describe what the command line can do with a queue of another filesystem.

    The command line gives a queue the roots of its filesystems
    (``file://``, ``s3://``), so a queue that a program created with a
    path (``/data``) is not one it can add to, but one it can run.
    """
    queue = shlex.quote(error.queue)
    if _filesystem_of(error.created) == error.value:
        return (
            f"queue {error.queue} was created with the {error.role} "
            f"{error.created!r}, a directory on {error.value}, as StorageQueue "
            "does from Python. `journalq copy`, `sync` and `add` add only to "
            "queues created with the whole filesystem. Run the actions it "
            f"has with `journalq run --queue {queue}`, add to it from Python "
            "with StorageQueue(name=...), or name another queue with --queue"
        )
    return (
        f"queue {error.queue} was created with the {error.role} "
        f"{error.created!r}, not {error.value!r}; name another queue with "
        f"--queue for this {error.role} (`journalq queues` lists them)"
    )


def _filesystem_of(url: str) -> str | None:
    """Return the filesystem part of ``url`` as the command line writes it."""
    # Imported here: the module of locations imports this one.
    from journalq.cli.queues import parse_location

    try:
        return parse_location(url).filesystem
    except (JournalqError, ValueError, ImportError):
        return None


def _describe_os_error(error: OSError) -> str:
    if error.strerror is None or error.filename is None:
        return str(error) or type(error).__name__
    where = error.filename
    if error.filename2 is not None:
        where = f"{where} -> {error.filename2}"
    text = f"{where}: {error.strerror.lower()}"
    next_step = _NEXT_STEPS.get(error.errno or 0)
    return f"{text}; {next_step}" if next_step else text


def code_for(error: BaseException) -> ExitCode:
    """Return the exit code of a command that ``error`` ended."""
    if isinstance(error, CommandError):
        return error.code
    return exit_code_for(error)


@contextlib.contextmanager
def step(doing: str, what: str, next_step: str) -> Iterator[None]:
    """Name the step when a backend raises: "DOING WHAT failed: ERROR; NEXT".

    journalq's own errors pass unchanged, because they already name the
    path and the next step.
    """
    try:
        yield
    except (JournalqError, CommandError):
        raise
    except ImportError as error:
        raise CommandError(f"{doing} {what} failed: {error}", ExitCode.USAGE) from error
    except Exception as error:  # a backend may raise anything
        raise CommandError(
            f"{doing} {what} failed: {describe(error)}; {next_step}",
            code_for(error),
        ) from error
