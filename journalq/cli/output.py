"""What the ``journalq`` command prints: event lines, summaries and tables.

Plain output is for people: one line per finished file at ``-v``, failures
always (as warnings), and a summary on stderr at the end of a run. Tables
are aligned columns with a header, as ``ps`` and ``kubectl get`` print them,
so they read well on a terminal and still split on whitespace in scripts.
``--json`` prints one JSON object per line on stdout instead, built from
the library's own ``to_dict()`` forms, so scripts read exactly what the
library reports.
"""

from __future__ import annotations

import collections
import logging
import os
import posixpath
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self

import click
import msgspec

from journalq.effects import CHILDREN_FAILED
from journalq.errors import JournalError
from journalq.events import ActionInfo, Event, EventType, RunSummary
from journalq.progress import format_bytes, format_duration

__all__ = [
    "AcknowledgedEvents",
    "EventPrinter",
    "abbreviate_home",
    "common_errors",
    "failure_heading",
    "format_bytes",
    "format_duration",
    "format_elapsed",
    "format_summary",
    "location_url",
    "print_json",
    "print_table",
    "rate_of",
    "shorten_path",
]

#: Distinct errors a summary names; the rest are counted.
SHOWN_ERRORS: Final = 3
#: Kinds of action whose dry run is printed without ``-v``, one line each.
_LISTED_BY_DRY_RUN: Final = frozenset({"copy_file", "delete"})
#: Events that report an action as ended, held by :class:`AcknowledgedEvents`
#: until the journal has the record. A failure for good is journaled on
#: disk before its event, so ``failed`` needs no wait.
ACKNOWLEDGED_TYPES: Final = frozenset({EventType.COMPLETED, EventType.SKIPPED})

logger = logging.getLogger(__name__)

_json_encoder = msgspec.json.Encoder()


def print_json(value: Mapping[str, Any]) -> None:
    """Print ``value`` as one line of JSON on stdout."""
    click.echo(_json_encoder.encode(value).decode())


def rate_of(summary: RunSummary) -> float:
    """Return the bytes per second a run copied."""
    return summary.bytes / summary.elapsed if summary.elapsed > 0 else 0.0


def _skipped(summary: RunSummary) -> str:
    listed = summary.identical_when_listed
    if not listed:
        return f"skipped {summary.skipped}"
    if listed == summary.skipped:
        return f"skipped {summary.skipped} (identical when listed)"
    return f"skipped {summary.skipped} ({listed} identical when listed)"


def format_elapsed(seconds: float) -> str:
    """Format a run's duration: ``0.4 s`` under a minute, else ``H:MM:SS``.

    Under a minute it reads as the run summary prints its duration.
    """
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    return format_duration(seconds)


def format_summary(summary: RunSummary, *, dry_run: bool = False) -> str:
    """Return the one-line summary of a run."""
    verb = "would copy" if dry_run else "copied"
    parts = [
        f"{verb} {summary.copied}",
        _skipped(summary),
        f"failed {summary.failed}",
        f"retried {summary.retried}",
    ]
    if summary.deleted:
        parts.append(f"{'would delete' if dry_run else 'deleted'} {summary.deleted}")
    others = summary.done - summary.deleted
    if others:
        noun = "action" if others == 1 else "actions"
        parts.append(f"{others} other {noun} (mkdir, list)")
    text = ", ".join(parts)
    if dry_run:
        # A dry run moves no bytes, so it has no rate.
        text += f"; {format_bytes(summary.bytes)} to copy (dry run, "
        text += f"{summary.elapsed:.1f} s)"
    else:
        text += f"; {format_bytes(summary.bytes)} in {summary.elapsed:.1f} s"
        text += f" ({format_bytes(rate_of(summary))}/s)"
        if summary.resumed_bytes:
            resumed = format_bytes(summary.resumed_bytes)
            text += f", after {resumed} that earlier runs sent in journaled parts"
    if summary.interrupted:
        text += "; interrupted"
    # A dry run leaves every action it planned waiting, which is not what
    # a real run would leave.
    if summary.remaining and not dry_run:
        noun = "action" if summary.remaining == 1 else "actions"
        text += f"; {summary.remaining} {noun} left"
    return text


def common_errors(failures: Iterable[ActionInfo]) -> list[str]:
    """Return the most frequent kinds of error in ``failures``, with a count.

    Messages name their paths, so failures are grouped by the exception's
    name, and the first message of each group stands for the rest.
    """
    examples: dict[str, str] = {}
    counts: collections.Counter[str] = collections.Counter()
    for failure in failures:
        error = failure.error
        # The files' own errors are more specific than their tree's.
        if not error or error.startswith(CHILDREN_FAILED):
            continue
        name = error.partition(":")[0]
        counts[name] += 1
        examples.setdefault(name, error)
    lines = []
    for name, count in counts.most_common(SHOWN_ERRORS):
        if count == 1:
            lines.append(examples[name])
        else:
            lines.append(f"{count} x {name}, such as {examples[name]}")
    others = len(counts) - SHOWN_ERRORS
    if others > 0:
        lines.append(f"and {others} other kinds of error")
    return lines


def failure_heading(
    failed: int, trees: int, *, dry_run: bool, inside: int | None = None
) -> str:
    """Return the line above a run's errors: ``7 actions failed, and so did ...``.

    ``failed`` counts the actions that failed on their own, and ``trees`` the
    trees that failed because of them, which ``journalq actions --status
    failed`` lists too. ``inside`` counts the failed actions that are items
    of a tree, when some are not.
    """
    noun = "action" if failed == 1 else "actions"
    heading = f"{failed} {noun} {'would fail' if dry_run else 'failed'}"
    if not trees:
        return heading + ":"
    tree = "the tree that holds" if trees == 1 else f"the {trees} trees that hold"
    items = "it" if failed == 1 else "them"
    if inside is not None and inside < failed:
        items = f"{inside} of them"
    return f"{heading}, and {'so would' if dry_run else 'so did'} {tree} {items}:"


class EventPrinter:
    """Print the events of a run as they arrive (from any worker thread).

    ``verbosity`` 0 prints nothing, 1 prints finished files and retries, 2
    adds starts. A dry run prints each file it would copy or delete at
    verbosity 0 too, as ``rclone --dry-run`` does, unless ``quiet``. Failures are
    never printed here: the library logs each as a warning. ``as_json``
    prints every event, progress included, with its paths as journaled.

    ``filesystems`` holds the URLs of the queue's source and destination
    filesystems (``"file://"``, ``"s3://"``), which the plain lines put
    before each path, so ``bucket/key`` is printed as ``s3://bucket/key``.
    """

    def __init__(
        self,
        *,
        as_json: bool,
        verbosity: int,
        dry_run: bool,
        quiet: bool = False,
        filesystems: tuple[str, str] = ("file://", "file://"),
    ) -> None:
        self.as_json = as_json
        self.verbosity = verbosity
        self.dry_run = dry_run
        self.filesystems = filesystems
        #: Whether a dry run lists the files it would copy or delete.
        self.lists_dry_run = dry_run and not quiet
        self._lock = threading.Lock()

    @property
    def event_types(self) -> frozenset[EventType]:
        """The event types this printer shows; the run builds only those."""
        if self.as_json:
            return frozenset(EventType)
        wanted: set[EventType] = set()
        if self.lists_dry_run:
            wanted.add(EventType.COMPLETED)
        if self.verbosity >= 1:
            wanted |= {EventType.COMPLETED, EventType.SKIPPED, EventType.RETRIED}
        if self.verbosity >= 2:
            wanted.add(EventType.STARTED)
        return frozenset(wanted)

    def __call__(self, event: Event) -> None:
        if self.as_json:
            line = _json_encoder.encode(event.to_dict()).decode()
        else:
            line = self._describe(event)
        if line is None:
            return
        with self._lock:
            click.echo(line)

    def _describe(self, event: Event) -> str | None:
        source, destination = self.filesystems
        target = arrow(
            event.source and location_url(source, event.source),
            event.destination and location_url(destination, event.destination),
        )
        match event.type:
            case EventType.COMPLETED if self.dry_run:
                return self._describe_dry_run(event, target)
            case EventType.COMPLETED if self.verbosity >= 1:
                verb = "copied" if event.kind == "copy_file" else f"{event.kind} done:"
                return f"{verb} {target} ({format_bytes(event.bytes)})"
            case EventType.SKIPPED if self.verbosity >= 1 and event.kind != "copy_file":
                return f"skipped {event.kind} {target} ({event.method})"
            case EventType.SKIPPED if self.verbosity >= 1:
                return f"skipped {target} (identical by {event.method})"
            case EventType.RETRIED if self.verbosity >= 1:
                return f"retrying {event.kind} {target} ({event.error})"
            case EventType.STARTED if self.verbosity >= 2:
                return f"started {event.kind} {target} (attempt {event.attempt})"
        return None

    def _describe_dry_run(self, event: Event, target: str) -> str | None:
        """Describe what a dry run would do: ``would copy SRC -> DST (SIZE)``."""
        listed = event.kind in _LISTED_BY_DRY_RUN and self.lists_dry_run
        if not (listed or self.verbosity >= 1):
            return None
        if event.kind == "copy_file":
            return f"would copy {target} ({format_bytes(event.bytes)})"
        return f"would {event.kind} {target}"


class AcknowledgedEvents:
    """Pass ``completed`` and ``skipped`` events on once the journal has them.

    A run journals a completion without waiting for the disk, so a process
    killed just after the event would lose the record and redo the action.
    A thread keeps these events back, flushes the journal and then passes them
    to ``printer``, so that a printed completion is an acknowledgement: no
    later run does that action again. Other events pass at once. Use it as
    a context manager around the run; leaving it passes on what is held.

    When stdout is closed (``journalq sync --json | head``), the thread
    ends quietly, and the ``BrokenPipeError`` is raised again to the run's
    next event and when the context is left, so the command stops with 141.
    """

    def __init__(
        self, printer: Callable[[Event], None], flush: Callable[[], None]
    ) -> None:
        self._printer = printer
        self._flush = flush
        self._pending: list[Event] = []
        self._closed = False
        #: The error that closed stdout, raised again to the caller.
        self._broken_pipe: BrokenPipeError | None = None
        self._condition = threading.Condition()
        self._thread = threading.Thread(
            target=self._loop, name="journalq-acknowledge", daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join()
        if self._broken_pipe is not None:
            if exc is None:
                raise self._broken_pipe
            return
        try:
            self._acknowledge()
        except JournalError as error:
            if exc is None:
                raise
            # The run failed with its own error, which is the one to report.
            logger.debug("completions not acknowledged: %s", error)

    def __call__(self, event: Event) -> None:
        if self._broken_pipe is not None:
            raise self._broken_pipe
        if event.type not in ACKNOWLEDGED_TYPES:
            self._printer(event)
            return
        with self._condition:
            self._pending.append(event)
            self._condition.notify()

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._closed:
                    self._condition.wait()
                if self._closed:
                    return
            try:
                self._acknowledge()
            except JournalError as error:
                # The run gets the same error from the journal and stops.
                logger.debug("completions not acknowledged: %s", error)
                return
            except BrokenPipeError as error:
                # The reader of stdout went away. The run stops at its next
                # event, and the command exits with 141.
                self._broken_pipe = error
                return

    def _acknowledge(self) -> None:
        with self._condition:
            ready, self._pending = self._pending, []
        if not ready:
            return
        self._flush()
        for event in ready:
            self._printer(event)


def arrow(source: str | None, destination: str | None) -> str:
    """Return ``"SRC -> DST"``, or the one path an action has."""
    if source and destination:
        return f"{source} -> {destination}"
    return source or destination or ""


def print_table(
    rows: Sequence[Sequence[str]],
    header: Sequence[str] | None = None,
    *,
    right: frozenset[int] = frozenset(),
) -> None:
    """Print ``rows`` as aligned columns.

    ``right`` holds the indexes of the columns aligned to the right, for
    numbers. A last column aligned to the left is not padded. The header is
    bold on a terminal.
    """
    for number, line in enumerate(table_lines(rows, header, right=right)):
        bold = bool(header) and number == 0
        click.echo(click.style(line, bold=True) if bold else line)


def table_lines(
    rows: Sequence[Sequence[str]],
    header: Sequence[str] | None = None,
    *,
    right: frozenset[int] = frozenset(),
) -> list[str]:
    """Return ``rows`` (after ``header``) as the lines of aligned columns."""
    every = [list(header)] if header else []
    every += [list(row) for row in rows]
    if not every:
        return []
    widths = [max(len(row[index]) for row in every) for index in range(len(every[0]))]
    lines = []
    for row in every:
        cells = []
        for index, cell in enumerate(row):
            if index in right:
                cells.append(cell.rjust(widths[index]))
            elif index == len(row) - 1:
                cells.append(cell)
            else:
                cells.append(cell.ljust(widths[index]))
        lines.append("  ".join(cells).rstrip())
    return lines


def location_url(filesystem: str, path: str) -> str:
    """Return the URL of ``path`` on the filesystem with URL ``filesystem``.

    A path on the local disk stays a plain path. A relative path joins the
    filesystem's own path, as :meth:`journalq.backends.Filesystem.path`
    joins it.
    """
    if "://" in path:
        return path
    if "://" not in filesystem:
        # A remote, NAME: or NAME:root.
        if filesystem.endswith(":") or path.startswith("/"):
            return filesystem + path
        return posixpath.join(filesystem, path)
    parts = urllib.parse.urlsplit(filesystem)
    if parts.path and not path.startswith("/"):
        path = posixpath.join(parts.path, path)
    if parts.scheme in ("file", "local"):
        return path
    return f"{parts.scheme}://{parts.netloc}{path}"


def abbreviate_home(path: str) -> str:
    """Return ``path`` with the home directory at its start written ``~``."""
    home = os.path.expanduser("~")
    if home != "/" and (path == home or path.startswith(home + "/")):
        return "~" + path[len(home) :]
    return path


def shorten_path(text: str, width: int) -> str:
    """Return ``text`` shortened to ``width`` characters for a table.

    A local path under the home directory starts with ``~``. A longer path
    keeps its start (``/``, ``~`` or ``scheme://host``) and as many of its
    last components as fit, with ``...`` for the ones left out:
    ``~/.../photos/2024``.
    """
    text = abbreviate_home(text)
    if len(text) <= width:
        return text
    scheme, separator, rest = text.partition("://")
    if separator:
        host, _, rest = rest.partition("/")
        head = f"{scheme}://{host}"
    elif text.startswith("~/"):
        head, rest = "~", text[2:]
    else:
        head, rest = "", text.lstrip("/")
    names = rest.split("/")
    tail = names[-1]
    marker = "/.../"
    if len(head) + len(marker) + len(tail) > width:
        return "..." + text[len(text) - width + 3 :]
    for name in reversed(names[:-1]):
        longer = f"{name}/{tail}"
        if len(head) + len(marker) + len(longer) > width:
            break
        tail = longer
    return head + marker + tail
