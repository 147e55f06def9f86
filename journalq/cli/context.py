"""Options shared by the commands, the logging setup, and opening the queue.

The common options (``--queue``, ``-v``, ``-q`` and, on the commands that
run the queue, ``--parallelism``, ``--compare``, ``--dry-run``,
``--progress``, ``--stats``) are accepted both before and after the command
name: ``journalq -v sync A B`` and ``journalq sync A B -v`` mean the same.
Their values are collected in one :class:`Settings` object on the root click
context.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar

import click

from journalq.cli.completion import complete_queue
from journalq.cli.interrupt import DEFAULT_STOP_TIMEOUT
from journalq.cli.storage_options import StorageOption
from journalq.policy import Policy

__all__ = [
    "Settings",
    "common_options",
    "configure_logging",
    "demote_logs_mentioning",
    "run_options",
    "settings",
    "storage_options",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The queue commands use when neither ``--queue`` nor a default derived
#: from the command's arguments applies; the library's default name too.
DEFAULT_QUEUE = "local"

#: Failure warnings printed at the default verbosity before the rest are
#: only counted; ``-v`` prints them all.
MAX_FAILURE_WARNINGS: Final = 20

#: Seconds between two progress lines in a log. rclone's ``--stats``
#: defaults to one minute too (rclone 1.60, ``rclone help flags``).
DEFAULT_STATS_SECONDS: Final = 60.0


class Settings:
    """The common options of one ``journalq`` invocation.

    A plain class: a dataclass compiles generated methods at import, and a
    ``msgspec.Struct`` would import msgspec, which ``--help`` does not need.
    """

    queue: str | None = None
    verbosity: int = 0
    quiet: bool = False
    parallelism: int | None = None
    compare: str | None = None
    dry_run: bool = False
    #: ``--progress`` (True), ``--no-progress`` (False) or neither (None:
    #: draw progress when stdout and stderr are both terminals).
    progress: bool | None = None
    stats: float = DEFAULT_STATS_SECONDS
    #: ``--part-threshold`` in bytes, or None for the library's default.
    part_threshold: int | None = None
    #: ``--executor``: ``threads`` (this process) or ``dask`` (a cluster).
    executor: str = "threads"
    #: ``--scheduler``: the Dask scheduler's address for ``--executor dask``.
    scheduler: str | None = None
    #: ``--stop-timeout``: seconds from the first Ctrl-C to the exit; 0: none.
    stop_timeout: float = DEFAULT_STOP_TIMEOUT

    def __init__(self) -> None:
        self.source_options: dict[str, Any] = {}
        self.destination_options: dict[str, Any] = {}

    @property
    def log_level(self) -> int:
        if self.quiet:
            return logging.ERROR
        return {0: logging.WARNING, 1: logging.INFO}.get(self.verbosity, logging.DEBUG)


def settings(ctx: click.Context | None = None) -> Settings:
    """Return the settings of the current invocation."""
    ctx = ctx or click.get_current_context()
    return ctx.find_root().ensure_object(Settings)


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        # An option left out arrives as None (or False for a plain flag);
        # only --no-progress gives False on purpose.
        if value is None or (value is False and name != "progress"):
            return value
        target = settings(ctx)
        if name == "verbosity":
            target.verbosity += value
        elif name.endswith("_options"):
            getattr(target, name).update(dict(value))
        else:
            setattr(target, name, value)
        return value

    return callback


def _option(*names: str, name: str, **kwargs: Any) -> Callable[[F], F]:
    return click.option(*names, expose_value=False, callback=_remember(name), **kwargs)


def common_options(function: F) -> F:
    """Add ``--queue``, ``-v`` and ``-q`` to a command."""
    decorators = [
        _option(
            "--queue",
            name="queue",
            metavar="NAME_OR_DIR",
            shell_complete=complete_queue,
            help=(
                "Queue to use: a name (kept under $JOURNALQ_HOME) or a "
                "directory (a value with '/' or starting with '.' or '~')."
            ),
        ),
        _option(
            "-v",
            "--verbose",
            name="verbosity",
            count=True,
            help="Print more: -v lists each file and info logs, -vv debug logs.",
        ),
        _option(
            "-q",
            "--quiet",
            name="quiet",
            is_flag=True,
            default=None,
            help="Print errors only.",
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


class ByteSize(click.ParamType):
    """A byte count with an optional binary suffix: ``512``, ``64M``, ``2G``."""

    name = "size"
    _FACTORS: Final = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
        number, suffix = text[:-1], text[-1:]
        if suffix.isdigit():
            number, suffix = text, ""
        try:
            size = int(float(number) * self._FACTORS[suffix])
        except (KeyError, ValueError):
            self.fail(
                f"{value!r} is not a size; write a number of bytes with an "
                "optional K, M, G or T suffix, such as 64M",
                param,
                ctx,
            )
        if size < 1:
            self.fail(f"{value!r} must be at least 1 byte", param, ctx)
        return size


def run_options(function: F) -> F:
    """Add ``--parallelism``, ``--compare`` and ``--dry-run`` to a command."""
    decorators = [
        _option(
            "--parallelism",
            "-j",
            name="parallelism",
            type=click.IntRange(min=1),
            metavar="N",
            help="Actions to run at the same time (default: 4).",
        ),
        _option(
            "--compare",
            name="compare",
            type=click.Choice([str(policy) for policy in Policy]),
            help=(
                "How an existing destination file is judged identical: "
                "checksum (content digest), size, size+mtime, or always "
                "(never skip). Default: the mode the queue was created with, "
                "checksum for a new queue."
            ),
        ),
        _option(
            "--dry-run",
            "-n",
            name="dry_run",
            is_flag=True,
            default=None,
            help=(
                "Print each file that would be copied or deleted, then the "
                "summary, and write nothing at the destination."
            ),
        ),
        _option(
            "--progress/--no-progress",
            name="progress",
            default=None,
            help=(
                "Draw the progress display on stderr (default: only when stdout "
                "and stderr are both terminals)."
            ),
        ),
        _option(
            "--executor",
            name="executor",
            type=click.Choice(["threads", "dask"]),
            default="threads",
            help=(
                "Where copies run: threads of this process (the default), or "
                "the workers of a Dask cluster (needs --scheduler and "
                "journalq[dask])."
            ),
        ),
        _option(
            "--scheduler",
            name="scheduler",
            metavar="ADDRESS",
            help="The Dask scheduler for --executor dask, such as tcp://HOST:8786.",
        ),
        _option(
            "--part-threshold",
            name="part_threshold",
            type=ByteSize(),
            metavar="SIZE",
            help=(
                "Copy files of SIZE or more in journaled parts, so an "
                "interrupted copy resumes after its last part (default: 64M; "
                "suffixes K, M, G)."
            ),
        ),
        _option(
            "--stats",
            name="stats",
            type=click.FloatRange(min=0),
            metavar="SECONDS",
            help=(
                "Without the progress display, log a one-line progress "
                "summary every SECONDS at info level, shown with -v "
                f"(default: {DEFAULT_STATS_SECONDS:g}; 0: never)."
            ),
        ),
        _option(
            "--stop-timeout",
            name="stop_timeout",
            type=click.FloatRange(min=0),
            metavar="SECONDS",
            help=(
                "After the first Ctrl-C (or SIGTERM, SIGHUP), wait at most SECONDS for "
                "the actions in flight to stop, then exit as on a second "
                f"Ctrl-C (default: {DEFAULT_STOP_TIMEOUT:g}; 0: no limit)."
            ),
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def storage_options(function: F) -> F:
    """Add ``--source-option`` and ``--destination-option`` to a command."""
    decorators = [
        _option(
            f"--{role}-option",
            name=f"{role}_options",
            type=StorageOption(),
            multiple=True,
            metavar="KEY=VALUE",
            help=(
                f"A storage option of the {role} filesystem, passed to "
                "fsspec (repeat for several). A VALUE that is valid JSON "
                "gets its type (2222, true, null); others stay strings."
            ),
        )
        for role in ("source", "destination")
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


class _FailureLimit(logging.Filter):
    """Let through the first :data:`MAX_FAILURE_WARNINGS` failure warnings.

    The executor logs one warning per failed action, so a destination that
    is gone would otherwise print a line for every file of the tree. When
    the first warning is held back, one line reports that. At ``-v``
    and above every warning passes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "journalq.executor" or record.levelno != logging.WARNING:
            return True
        if logging.getLogger("journalq").getEffectiveLevel() < logging.WARNING:
            return True
        self.count += 1
        if self.count <= MAX_FAILURE_WARNINGS:
            return True
        if self.count == MAX_FAILURE_WARNINGS + 1:
            click.echo(
                "WARNING journalq: more failures are not shown (-v shows them "
                "all); the summary at the end counts them and names the most "
                "common errors",
                err=True,
            )
        return False


class _DemoteToDebug(logging.Filter):
    """Turn the info records whose message contains ``text`` into debug records."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or self.text not in record.getMessage():
            return True
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        return logging.getLogger("journalq").isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def demote_logs_mentioning(text: str) -> Iterator[None]:
    """Print the info logs that mention ``text`` only at ``-vv``, as debug logs.

    A dry run of ``copy`` or ``sync`` plans in a temporary queue, deleted
    when the command ends, so at ``-v`` the library's lines about locking
    it and opening its journal would name a directory the user never gave.
    Warnings and errors pass unchanged.
    """
    handlers = [
        handler
        for handler in logging.getLogger("journalq").handlers
        if isinstance(handler, _EchoHandler)
    ]
    demote = _DemoteToDebug(text)
    for handler in handlers:
        handler.addFilter(demote)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(demote)


class _EchoHandler(logging.Handler):
    """Write log records to the current stderr (click swaps it in tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # a log line must never end a run
            self.handleError(record)


def configure_logging(ctx: click.Context, level: int) -> None:
    """Send journalq's log records at ``level`` and above to stderr.

    The library never configures logging; this is the one place that does.
    The previous configuration is restored when the command ends, so an
    invocation inside another program (or a test) leaves no trace.
    """
    logger = logging.getLogger("journalq")
    if any(isinstance(handler, _EchoHandler) for handler in logger.handlers):
        # A command inside a group: the group installed the handler already.
        logger.setLevel(level)
        return
    previous_level = logger.level
    handler = _EchoHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_FailureLimit())
    logger.addHandler(handler)
    logger.setLevel(level)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)

    ctx.call_on_close(restore)
