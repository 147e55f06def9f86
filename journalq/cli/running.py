"""The commands that run a queue: ``copy``, ``sync`` and ``run`` (``resume``)."""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
import threading
from collections.abc import Iterator

import click

from journalq.cli.base import command
from journalq.cli.context import common_options, run_options, settings
from journalq.cli.exits import ExitCode, run_exit_code
from journalq.cli.interrupt import stop_on_interrupt
from journalq.cli.output import EventPrinter, format_summary, print_json
from journalq.cli.queues import (
    Location,
    default_queue_name,
    open_existing_queue,
    open_queue,
    parse_location,
)
from journalq.errors import ActionError
from journalq.events import RunSummary
from journalq.plan import resolve_target
from journalq.queue import StorageQueue
from journalq.store import queue_directory

__all__ = ["add_copy", "copy_command", "json_option", "run_command", "sync_command"]

json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON on stdout, one object per line, instead of plain text.",
)


def add_copy(queue: StorageQueue, source: Location, destination: Location) -> str:
    """Add ``copy SRC DST``: a file or a tree, by the trailing-slash rules.

    ``SRC/`` copies the directory's contents into DST, ``SRC`` copies the
    directory itself into DST, and a file lands inside a DST that ends with
    ``/`` or is a directory (see :func:`journalq.plan.resolve_target`).
    """
    source_path = queue.source.path(source.path)
    if not queue.source.fs.exists(source_path):
        raise ActionError(
            source.path, "source not found; check the path (nothing was added)"
        )
    source_is_dir = queue.source.fs.isdir(source_path)
    destination_is_dir = queue.destination.fs.isdir(
        queue.destination.path(destination.path)
    )
    target = resolve_target(
        source.path,
        destination.path,
        source_is_dir=source_is_dir,
        destination_is_dir=destination_is_dir,
    )
    if source_is_dir:
        return queue.copy_tree(source.path, target)
    return queue.copy_file(source.path, target)


def resume_command(queue: StorageQueue) -> str:
    """Return the command that resumes ``queue`` with this run's settings."""
    words = ["journalq", "run", "--queue", str(queue.directory)]
    compare = settings().compare
    if compare:
        words += ["--compare", compare]
    return shlex.join(words)


def run_and_report(queue: StorageQueue, *, as_json: bool) -> ExitCode:
    """Run ``queue`` until it is done or stopped; print events and a summary."""
    options = settings()
    if queue.handoff:
        click.echo(
            "the queue is being run by another process; what was added is handed to it",
            err=True,
        )
    printer = EventPrinter(
        as_json=as_json, verbosity=options.verbosity, dry_run=options.dry_run
    )
    stop = threading.Event()
    resume = resume_command(queue)
    with stop_on_interrupt(stop, resume):
        summary = queue.run(
            on_event=printer,
            stop=stop,
            dry_run=options.dry_run,
            compare=options.compare,
            parallelism=options.parallelism,
            event_types=printer.event_types,
        )
    _report(queue, summary, resume, as_json=as_json)
    return run_exit_code(summary, dry_run=options.dry_run)


def _report(
    queue: StorageQueue, summary: RunSummary, resume: str, *, as_json: bool
) -> None:
    options = settings()
    if as_json:
        data = summary.to_dict()
        data["queue"] = str(queue.directory)
        data["failures"] = [failure.to_dict() for failure in summary.failures]
        print_json(data)
    if not options.quiet:
        click.echo(format_summary(summary, dry_run=options.dry_run), err=True)
    where = shlex.quote(str(queue.directory))
    if summary.failed:
        click.echo(
            f"{summary.failed} {'action' if summary.failed == 1 else 'actions'} "
            f"failed; list them with `journalq actions "
            f"--status failed --queue {where}`, add them again with `journalq "
            f"retry --queue {where}`",
            err=True,
        )
    if (summary.remaining or summary.interrupted) and not options.dry_run:
        click.echo(f"to resume: {resume}", err=True)


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
        with open_queue(name, source.filesystem, destination.filesystem) as queue:
            yield queue
        return
    with tempfile.TemporaryDirectory(prefix="journalq-dry-run-") as scratch:
        directory = os.path.join(scratch, "queue")
        with open_queue(directory, source.filesystem, destination.filesystem) as queue:
            yield queue


@command("copy")
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@json_option
@run_options
@common_options
def copy_command(source: str, destination: str, as_json: bool) -> None:
    """Copy SRC to DST (a file, or a directory tree), then run until done.

    SRC/ with a trailing slash copies the directory's contents into DST;
    SRC without it copies the directory itself into DST (DST/NAME). A file
    lands inside DST when DST ends with '/' or is a directory, and is
    named DST otherwise. Files already identical at DST are skipped.

    Running the same command again resumes it: the queue's name is derived
    from SRC and DST unless --queue names one.
    """
    src, dst = parse_location(source), parse_location(destination)
    name = settings().queue or default_queue_name("copy", src, dst)
    with _queue_for(name, src, dst) as queue:
        add_copy(queue, src, dst)
        code = run_and_report(queue, as_json=as_json)
    _finish(code)


@command("sync")
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@click.option(
    "--delete",
    is_flag=True,
    help="Also delete files and directories under DST that SRC does not have.",
)
@click.option(
    "--max-delete",
    type=click.IntRange(min=0),
    metavar="N",
    help="With --delete, add nothing if more than N items would be deleted.",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --delete, allow an empty SRC (which deletes everything in DST).",
)
@json_option
@run_options
@common_options
def sync_command(
    source: str,
    destination: str,
    delete: bool,
    max_delete: int | None,
    force: bool,
    as_json: bool,
) -> None:
    """Make the tree DST a copy of the tree SRC, then run until done.

    The contents of SRC land directly in DST (a trailing slash on SRC
    changes nothing); files already identical at DST are skipped. Running
    the same command again resumes it, or checks the trees again once the
    earlier sync has completed.
    """
    src, dst = parse_location(source), parse_location(destination)
    plain_src = Location(src.filesystem, src.path.rstrip("/") or "/")
    plain_dst = Location(dst.filesystem, dst.path.rstrip("/") or "/")
    name = settings().queue or default_queue_name("sync", plain_src, plain_dst)
    with _queue_for(name, src, dst) as queue:
        queue.sync(
            plain_src.path,
            plain_dst.path,
            delete=delete,
            max_delete=max_delete,
            force=force,
        )
        code = run_and_report(queue, as_json=as_json)
    _finish(code)


@command("run")
@json_option
@run_options
@common_options
def run_command(as_json: bool) -> None:
    """Run every waiting action of the queue (resume an interrupted run)."""
    with open_existing_queue() as queue:
        code = run_and_report(queue, as_json=as_json)
    _finish(code)
