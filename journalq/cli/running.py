"""The commands that run a queue: ``copy``, ``sync`` and ``run`` (``resume``)."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click
import fsspec

from journalq import failures
from journalq.backends import configured_options
from journalq.backends.objects import MissingBucketError
from journalq.backends.options import secret_names
from journalq.cli.base import fail
from journalq.cli.context import (
    Settings,
    demote_logs_mentioning,
    settings,
)
from journalq.cli.exits import ExitCode, run_exit_code
from journalq.cli.interrupt import stop_on_interrupt
from journalq.cli.lastrun import save_last_run
from journalq.cli.messages import step
from journalq.cli.output import (
    CHILDREN_FAILED,
    AcknowledgedEvents,
    EventPrinter,
    common_errors,
    failure_heading,
    format_summary,
    print_json,
    rate_of,
)
from journalq.cli.queues import (
    Location,
    default_queue_name,
    describe_holder,
    open_existing_queue,
    open_queue,
    parse_location,
    removed_when_rejected,
)
from journalq.errors import ActionError
from journalq.events import Event, EventType, RunSummary
from journalq.expansion import PARENTS, not_a_directory
from journalq.plan import resolve_target
from journalq.progress import ProgressDisplay, RunProgress, log_progress
from journalq.queue import StorageQueue
from journalq.store import queue_directory

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "add_copy",
    "copy",
    "run",
    "secret_note",
    "sync",
]


def add_copy(queue: StorageQueue, source: Location, destination: Location) -> str:
    """Add ``copy SRC DST``: a file or a tree, by the trailing-slash rules.

    ``SRC/`` copies the directory's contents into DST, ``SRC`` copies the
    directory itself into DST, and a file lands inside a DST that ends with
    ``/`` or is a directory (see :func:`journalq.plan.resolve_target`). A
    SRC with wildcards that names no file itself (``dir/*``) copies each
    match into DST (see :meth:`StorageQueue.copy_glob`). Returns the ids
    added, separated by spaces.
    """
    source_path = queue.source.path(source.path)
    hint = "check the URL, the credentials and the --source-option values"
    with step("reading the source", source.url, hint):
        source_kind = path_kind(queue, queue.source.fs, source_path)
        if source_kind is None and fsspec.core.has_magic(source.path):
            return " ".join(queue.copy_glob(source.path, destination.path))
        if source_kind is None:
            raise ActionError(
                source.path, "source not found; check the path (nothing was added)"
            )
    hint = "check the URL, the credentials and the --destination-option values"
    with step("reading the destination", destination.url, hint):
        destination_path = queue.destination.path(destination.path)
        try:
            destination_kind = path_kind(queue, queue.destination.fs, destination_path)
        except NotADirectoryError as error:
            raise not_a_directory(queue.destination.fs, destination_path) from error
    # `copy SRC FILE/` requests a copy inside FILE. An object store can contain
    # an object and objects below its name, so only a local disk rejects it.
    inside_file = destination_kind == "file" and destination.path.endswith("/")
    if inside_file and queue.destination.local:
        raise not_a_directory(queue.destination.fs, destination_path)
    source_is_dir = source_kind == "directory"
    target = resolve_target(
        source.path,
        destination.path,
        source_is_dir=source_is_dir,
        destination_is_dir=destination_kind == "directory",
    )
    if source_is_dir:
        return queue.copy_tree(source.path, target)
    return queue.copy_file(source.path, target)


def path_kind(
    queue: StorageQueue, fs: fsspec.AbstractFileSystem, path: str
) -> str | None:
    """Return ``"file"``, ``"directory"`` or None (nothing there) for ``path``.

    One ``info`` call, tried again after transient failures: fsspec's
    ``exists`` and ``isdir`` return False on any error, which would turn a
    reset connection into a missing source. A bucket that does not exist
    raises ``ActionError``, because nothing can be copied from or into it,
    as adding a tree does (see :func:`journalq.expansion.destination_listing`).
    """

    def kind() -> str | None:
        try:
            info = fs.info(path)
        except MissingBucketError:
            raise
        except FileNotFoundError:
            return None
        return "directory" if info.get("type") == "directory" else "file"

    try:
        return queue.with_retries(kind, path)
    except MissingBucketError as exc:
        raise ActionError(path, f"{exc}; nothing was added") from exc


def resume_command(queue: StorageQueue) -> str:
    """Return the command that resumes ``queue`` with this run's settings."""
    words = ["journalq", "run", "--queue", str(queue.directory)]
    compare = settings().compare
    if compare:
        words += ["--compare", compare]
    return shlex.join(words)


def secret_note(queue: StorageQueue) -> str | None:
    """Name the storage options with secrets that the printed commands need again.

    They are the options the queue journaled without their secrets, a
    password that was given in a URL included, except those that fsspec's
    configuration sets (``FSSPEC_S3_KEY``), which apply to every command.
    """
    created = queue.state.created
    if created is None:
        return None
    again = [
        f"--{role}-option {name}=..."
        for role, journaled in (
            ("source", created.source),
            ("destination", created.destination),
        )
        for name in secret_names(journaled.options)
        if name not in configured_options(journaled.url)
    ]
    if not again:
        return None
    return (
        "secret storage options are not stored in the queue; add "
        + ", ".join(again)
        + " to each journalq command above"
    )


def _wants_display(as_json: bool) -> bool:
    """Decide whether to draw the progress display on stderr.

    Without ``--progress`` it is drawn only when stdout and stderr are both
    terminals. The display goes to stderr, so ``2> log`` would fill the log
    with escape codes. ``> log`` turns it off too, as it does for rsync,
    which prints its ``--progress`` lines on stdout.
    """
    options = settings()
    if options.quiet or as_json or options.progress is False:
        return False
    if options.progress:
        return True
    on_terminal = sys.stdout.isatty() and sys.stderr.isatty()
    return on_terminal and os.environ.get("TERM") != "dumb"


def _fan_out(
    printer: EventPrinter | _ClosedPipeStop,
    output: Callable[[Event], None],
    progress: RunProgress | None,
) -> tuple[Callable[[Event], None], frozenset[EventType]]:
    """Return one ``on_event`` callback for the printer and the progress.

    The printer's events go through ``output``: the printer itself, or a
    wrapper that passes some of them on later.
    """
    if progress is None:
        return output, printer.event_types

    def on_event(event: Event) -> None:
        progress(event)
        if event.type in printer_types:
            output(event)

    printer_types = printer.event_types
    return on_event, printer_types | progress.event_types


@contextlib.contextmanager
def _progress_output(progress: RunProgress | None, display: bool) -> Iterator[None]:
    if progress is None:
        yield
    elif display:
        with ProgressDisplay(progress, console=_display_console()):
            yield
    else:
        with log_progress(progress, settings().stats):
            yield


def _display_console() -> Console:
    from rich.console import Console

    # --progress draws even when stderr is not a terminal (a CI log that
    # renders escape codes); otherwise rich's own detection decides.
    return Console(stderr=True, force_terminal=True if settings().progress else None)


@contextlib.contextmanager
def _listing(source: Location, *, as_json: bool) -> Iterator[None]:
    """Show a spinner while ``copy`` or ``sync`` lists SRC and DST."""
    if not _wants_display(as_json):
        yield
        return
    with _display_console().status(f"Listing {source.url} ..."):
        yield


def _run_event(queue: StorageQueue, progress: RunProgress) -> dict[str, object]:
    """Return the first JSON line of a run: what it is about to do."""
    view = progress.view()
    return {
        "event": "run",
        "queue": str(queue.directory),
        "files": view.files_total,
        "bytes": view.bytes_total,
        "done_earlier": view.done_earlier,
        "earlier_total": view.earlier_total,
        "dry_run": settings().dry_run,
    }


def run_and_report(
    queue: StorageQueue, *, as_json: bool, added: str | None = None
) -> ExitCode:
    """Run ``queue`` until it is done or stopped; print events and a summary.

    ``added`` names what the command added before (``"the sync"``). When
    another process runs the queue, that was handed to it, and the command
    prints where it went and ends with exit status 3. Without ``added`` the run raises
    ``QueueLockedError``, which names the holder.
    """
    options = settings()
    if queue.handoff and added is not None:
        return _report_handoff(queue, added)
    printer = EventPrinter(
        as_json=as_json,
        verbosity=options.verbosity,
        dry_run=options.dry_run,
        quiet=options.quiet,
        filesystems=_filesystem_urls(queue),
    )
    display = _wants_display(as_json)
    progress = None
    if display or as_json or options.verbosity >= 1:
        progress = RunProgress.for_queue(queue)
    if as_json and progress is not None:
        print_json(_run_event(queue, progress))
    # A JSON line of a completion is an acknowledgement for scripts, so it
    # waits for the journal; a dry run journals nothing.
    acknowledged = as_json and not options.dry_run
    stop = threading.Event()
    guarded = _ClosedPipeStop(printer, stop)
    printed = AcknowledgedEvents(guarded, queue.flush) if acknowledged else None
    on_event, event_types = _fan_out(guarded, printed or guarded, progress)
    resume = resume_command(queue)
    on_stop = progress.mark_stopping if display and progress is not None else None
    started_ns = time.time_ns()
    with (
        _cluster_client(options) as client,
        stop_on_interrupt(stop, resume, on_stop=on_stop, timeout=options.stop_timeout),
        _progress_output(progress, display),
        printed or contextlib.nullcontext(),
    ):
        summary = queue.run(
            on_event=on_event,
            stop=stop,
            dry_run=options.dry_run,
            compare=options.compare,
            parallelism=options.parallelism,
            event_types=event_types,
            client=client,
        )
    if guarded.error is not None:
        if not options.dry_run:
            save_last_run(queue.directory, summary)
        click.echo(
            f"stdout was closed, so the run stopped. To resume: {resume}", err=True
        )
        raise guarded.error
    _report(queue, summary, resume, as_json=as_json, started_ns=started_ns)
    if not options.dry_run:
        save_last_run(queue.directory, summary)
    return run_exit_code(summary, dry_run=options.dry_run)


def _filesystem_urls(queue: StorageQueue) -> tuple[str, str]:
    """Return the URLs of the source and destination filesystems of ``queue``."""
    created = queue.state.created
    if created is None:
        return ("file://", "file://")
    return (created.source.url, created.destination.url)


class _ClosedPipeStop:
    """Pass events to a printer; when stdout is closed, stop the run instead.

    Once a reader such as ``head`` goes away, every later write fails.
    Raising from an event would end the action it came from without its
    record, so the run stops the way a Ctrl-C stops it, and the command
    exits with 141 once the actions in flight ended.
    """

    def __init__(self, printer: EventPrinter, stop: threading.Event) -> None:
        self._printer = printer
        self._stop = stop
        self.event_types = printer.event_types
        #: The error that closed stdout, raised again when the run ended.
        self.error: BrokenPipeError | None = None

    def __call__(self, event: Event) -> None:
        if self.error is not None:
            return
        try:
            self._printer(event)
        except BrokenPipeError as error:
            self.error = error
            self._stop.set()


def _report_handoff(queue: StorageQueue, added: str) -> ExitCode:
    """Print that ``added`` went to the process that runs ``queue``."""
    where = shlex.quote(str(queue.directory))
    click.echo(
        f"queue {queue.directory} is being run by {describe_holder(queue)}; "
        f"{added} was handed "
        "to that run, which runs it before it ends. Follow it with "
        f"`journalq status --queue {where}`",
        err=True,
    )
    return ExitCode.LOCKED


def check_executor(options: Settings) -> None:
    """Reject ``--executor`` and ``--scheduler`` that do not go together.

    Called before a command adds anything, so a rejected command leaves no
    listed tree waiting in its queue.
    """
    if options.executor != "dask" and options.scheduler:
        fail("--scheduler needs --executor dask", ExitCode.USAGE)
    if options.executor == "dask" and not options.scheduler:
        fail(
            "--executor dask needs --scheduler tcp://HOST:PORT, the address "
            "of a running Dask scheduler",
            ExitCode.USAGE,
        )


@contextlib.contextmanager
def _cluster_client(options: Settings) -> Iterator[Any]:
    """Connect to the Dask scheduler of ``--executor dask``; else yield None."""
    check_executor(options)
    if options.executor != "dask":
        yield None
        return
    from journalq import cluster

    with cluster.connect(options.scheduler) as client:
        yield client


def _report(
    queue: StorageQueue,
    summary: RunSummary,
    resume: str,
    *,
    as_json: bool,
    started_ns: int,
) -> None:
    options = settings()
    left = bool(summary.remaining or summary.interrupted) and not options.dry_run
    if as_json:
        data = summary.to_dict()
        data["rate"] = round(rate_of(summary), 1)
        data["queue"] = str(queue.directory)
        data["resume"] = resume if left else None
        data["failures"] = [failure.to_dict() for failure in summary.failures]
        print_json(data)
    if not options.quiet:
        click.echo(format_summary(summary, dry_run=options.dry_run), err=True)
    if summary.failed:
        _report_failures(queue, summary, started_ns)
    if left:
        click.echo(f"to resume: {resume}", err=True)
    # A dry run prints no command for the note to refer to.
    note = None if options.dry_run else secret_note(queue)
    if note and (left or summary.failed):
        click.echo(note, err=True)


def _report_failures(queue: StorageQueue, summary: RunSummary, started_ns: int) -> None:
    """Print the run's most common errors and how to list and retry them.

    A dry run journals nothing, so its failures are listed here alone, and
    the queue of a ``copy`` or ``sync`` dry run is deleted before it ends.
    """
    dry_run = settings().dry_run
    trees = _failed_trees(queue, summary, started_ns, dry_run=dry_run)
    # Failures of earlier runs are listed too, so this may overcount the
    # items of this run that are in a tree, never undercount them.
    inside = sum(
        1
        for info in summary.failures
        if info.parent is not None and info.kind not in PARENTS
    )
    heading = failure_heading(summary.failed, trees, dry_run=dry_run, inside=inside)
    lines = [heading]
    lines += [f"  {line}" for line in common_errors(summary.failures)]
    if not dry_run:
        where = shlex.quote(str(queue.directory))
        earlier = len(summary.failures) - summary.failed - trees
        them = f"them and {earlier} more" if earlier > 0 else "them"
        lines.append(f"list {them}: journalq actions --status failed --queue {where}")
        if failures.retry_plan(queue.state):
            lines.append(
                f"retry {them}: journalq retry --queue {where} && "
                f"journalq run --queue {where}"
            )
        items = [info for info in summary.failures if info.kind not in PARENTS]
        # One failed item is named, so the line can be pasted as it is.
        failed_id = items[0].id if len(items) == 1 else "ID"
        lines.append(f"drop one: journalq cancel {failed_id} --queue {where}")
    for line in lines:
        click.echo(line, err=True)


def _failed_trees(
    queue: StorageQueue, summary: RunSummary, started_ns: int, *, dry_run: bool
) -> int:
    """Count the trees that fail because items of theirs failed in the run.

    A real run lists them among ``summary.failures``, beside the trees
    that earlier runs failed, whose ``failed`` record is older than
    ``started_ns``. A dry run ends no tree, but a real run would fail the
    tree of each item that failed.
    """
    failures = summary.failures
    if dry_run:
        return len({failure.parent for failure in failures if failure.parent})
    count = 0
    for failure in failures:
        if not (failure.error or "").startswith(CHILDREN_FAILED):
            continue
        record = queue.state.actions[failure.id].error
        if record is not None and record.finished_ns >= started_ns:
            count += 1
    return count


def _finish(code: ExitCode) -> None:
    raise click.exceptions.Exit(code)


def _check_queue_outside(name: str, *trees: Location) -> None:
    """Reject a queue directory inside SRC or DST before anything is created.

    The library rejects it too, but only once the queue exists, which would
    leave its files in the user's tree.
    """
    directory = os.path.realpath(queue_directory(name)) + "/"
    for tree in trees:
        if tree.filesystem != "file://":
            continue
        root = os.path.realpath(tree.path).rstrip("/") + "/"
        if directory.startswith(root):
            raise ActionError(
                tree.path,
                f"the tree contains the queue directory {directory.rstrip('/')}; "
                "keep the queue outside both trees (--queue elsewhere)",
            )


@contextlib.contextmanager
def _queue_for(
    name: str, source: Location, destination: Location
) -> Iterator[StorageQueue]:
    """Open the queue that ``copy`` or ``sync`` adds to.

    A dry run adds to a throwaway queue instead, so that nothing it planned
    (deletes included) is left waiting in the real queue for the next run.
    """
    if not settings().dry_run:
        _check_queue_outside(name, source, destination)
        with (
            removed_when_rejected(name),
            open_queue(name, source.filesystem, destination.filesystem) as queue,
        ):
            yield queue
        return
    with (
        tempfile.TemporaryDirectory(prefix="journalq-dry-run-") as scratch,
        demote_logs_mentioning(scratch),
    ):
        directory = os.path.join(scratch, "queue")
        with open_queue(directory, source.filesystem, destination.filesystem) as queue:
            yield queue


def copy(source: str, destination: str, as_json: bool) -> None:
    """Run ``journalq copy``, as :mod:`journalq.cli.commands` defines it."""
    check_executor(settings())
    src, dst = parse_location(source), parse_location(destination)
    name = settings().queue or default_queue_name("copy", src, dst)
    with _queue_for(name, src, dst) as queue:
        with _listing(src, as_json=as_json):
            add_copy(queue, src, dst)
        code = run_and_report(queue, as_json=as_json, added="the copy")
    _finish(code)


def sync(
    source: str,
    destination: str,
    delete: bool,
    max_delete: int | None,
    force: bool,
    as_json: bool,
) -> None:
    """Run ``journalq sync``, as :mod:`journalq.cli.commands` defines it."""
    check_executor(settings())
    src, dst = parse_location(source), parse_location(destination)
    plain_src = Location(src.filesystem, src.path.rstrip("/") or "/")
    plain_dst = Location(dst.filesystem, dst.path.rstrip("/") or "/")
    name = settings().queue or default_queue_name("sync", plain_src, plain_dst)
    with _queue_for(name, src, dst) as queue:
        with _listing(src, as_json=as_json):
            queue.sync(
                plain_src.path,
                plain_dst.path,
                delete=delete,
                max_delete=max_delete,
                force=force,
            )
        code = run_and_report(queue, as_json=as_json, added="the sync")
    _finish(code)


def run(as_json: bool) -> None:
    """Run ``journalq run``, as :mod:`journalq.cli.commands` defines it."""
    with open_existing_queue() as queue:
        code = run_and_report(queue, as_json=as_json)
    _finish(code)
