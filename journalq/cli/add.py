"""``journalq add``: put actions in a queue without running them.

Each subcommand prints the id of the action it added. When another process
is running the queue, the action is handed to that process. That process
runs it before its run ends, and the id is printed all the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

import click

from journalq.cli.base import fail
from journalq.cli.batch import Batch, BatchLineError, parse_batch
from journalq.cli.context import (
    DEFAULT_QUEUE,
    settings,
)
from journalq.cli.exits import ExitCode
from journalq.cli.messages import code_for, describe
from journalq.cli.queues import (
    Location,
    describe_holder,
    open_queue,
    parse_location,
    queue_exists,
    removed_when_rejected,
)
from journalq.cli.running import add_copy, path_kind
from journalq.errors import ActionError, BatchError
from journalq.queue import StorageQueue

__all__ = [
    "add_from_file",
    "copy_action",
    "delete_action",
    "list_action",
    "mkdir_action",
    "sync_action",
    "tree_action",
]


def _queue_name() -> str:
    return settings().queue or DEFAULT_QUEUE


def _open_for_pair(source: Location, destination: Location) -> StorageQueue:
    return open_queue(_queue_name(), source.filesystem, destination.filesystem)


def _open_for_path(service: str, location: Location) -> StorageQueue:
    # A new queue needs both filesystems; the one PATH is not on defaults
    # to the same filesystem. An existing queue is only checked for PATH's.
    name = _queue_name()
    if not queue_exists(name):
        return open_queue(name, location.filesystem, location.filesystem)
    if service == "source":
        return open_queue(name, location.filesystem, None)
    return open_queue(name, None, location.filesystem)


def _print_added(queue: StorageQueue, action_ids: list[str]) -> None:
    for action_id in action_ids:
        click.echo(action_id)
    if queue.handoff:
        click.echo(
            f"queue {queue.directory} is being run by {describe_holder(queue)}; "
            "the actions were handed to that run",
            err=True,
        )


def add_from_file(ctx: click.Context, batch_file: IO[str] | None) -> None:
    """Run ``journalq add --from FILE``, as :mod:`journalq.cli.commands` defines it."""
    if ctx.invoked_subcommand is not None:
        if batch_file is not None:
            raise click.UsageError("--from cannot be combined with a subcommand")
        return
    if batch_file is None:
        raise click.UsageError("name an action to add, or give --from FILE")
    _add_batch(batch_file)


def _add_batch(batch_file: IO[str]) -> None:
    try:
        batch = parse_batch(batch_file)
    except BatchLineError as error:
        fail(f"{batch_file.name}: {error}; nothing was added", ExitCode.USAGE)
    if not batch.actions:
        fail(f"{batch_file.name}: no actions found; nothing was added", ExitCode.USAGE)
    with removed_when_rejected(_queue_name()), _open_for_batch(batch) as queue:
        _print_added(queue, _add_all(queue, batch, batch_file.name))


def _open_for_batch(batch: Batch) -> StorageQueue:
    name = _queue_name()
    source = batch.filesystem("source")
    destination = batch.filesystem("destination")
    if not queue_exists(name):
        source = source or destination
        destination = destination or source
    return open_queue(name, source, destination)


def _add_all(queue: StorageQueue, batch: Batch, file_name: str) -> list[str]:
    """Add every action of ``batch``, or none when the checks reject one.

    Each line is checked, and each tree listed, before the first action is
    journaled (see :meth:`StorageQueue.add_all`). The source of a
    ``copy_file`` line must exist, as for ``journalq add copy``.
    """
    try:
        _check_file_sources(queue, batch)
        return queue.add_all(specification for _, specification in batch.actions)
    except BatchError as error:
        line = batch.actions[error.index][0]
        fail(
            f"{file_name}: line {line}: {describe(error.error)}; nothing from the "
            "file was added",
            code_for(error.error),
        )


def _check_file_sources(queue: StorageQueue, batch: Batch) -> None:
    """Raise ``BatchError`` for the first ``copy_file`` line whose source is missing."""
    for index, (_, specification) in enumerate(batch.actions):
        if specification["kind"] != "copy_file":
            continue
        source = specification["source"]
        if path_kind(queue, queue.source.fs, queue.source.path(source)) is None:
            raise BatchError(
                index, ActionError(source, "source not found; check the path")
            )


def _add_one(
    open_: Callable[[], StorageQueue], action: Callable[[StorageQueue], str]
) -> None:
    """Open the queue with ``open_`` and add one action to it with ``action``."""
    with removed_when_rejected(_queue_name()), open_() as queue:
        _print_added(queue, [action(queue)])


def copy_action(source: str, destination: str) -> None:
    """Run ``journalq add copy``, as :mod:`journalq.cli.commands` defines it."""
    src, dst = parse_location(source), parse_location(destination)
    _add_one(lambda: _open_for_pair(src, dst), lambda queue: add_copy(queue, src, dst))


def tree_action(source: str, destination: str) -> None:
    """Run ``journalq add tree``, as :mod:`journalq.cli.commands` defines it."""
    src, dst = parse_location(source), parse_location(destination)
    _add_one(
        lambda: _open_for_pair(src, dst),
        lambda queue: queue.copy_tree(src.path, dst.path),
    )


def sync_action(
    source: str, destination: str, delete: bool, max_delete: int | None, force: bool
) -> None:
    """Run ``journalq add sync``, as :mod:`journalq.cli.commands` defines it."""
    src, dst = parse_location(source), parse_location(destination)
    _add_one(
        lambda: _open_for_pair(src, dst),
        lambda queue: queue.sync(
            src.path, dst.path, delete=delete, max_delete=max_delete, force=force
        ),
    )


def mkdir_action(path: str, service: str | None) -> None:
    """Run ``journalq add mkdir``, as :mod:`journalq.cli.commands` defines it."""
    service = service or "destination"
    location = parse_location(path)
    _add_one(
        lambda: _open_for_path(service, location),
        lambda queue: queue.mkdir(service, location.path),
    )


def delete_action(path: str, service: str | None, recursive: bool) -> None:
    """Run ``journalq add delete``, as :mod:`journalq.cli.commands` defines it."""
    service = service or "destination"
    location = parse_location(path)
    _add_one(
        lambda: _open_for_path(service, location),
        lambda queue: queue.delete(service, location.path, recursive=recursive),
    )


def list_action(
    path: str, service: str | None, dir_only: bool, recursive: bool
) -> None:
    """Run ``journalq add list``, as :mod:`journalq.cli.commands` defines it."""
    service = service or "source"
    location = parse_location(path)
    _add_one(
        lambda: _open_for_path(service, location),
        lambda queue: queue.list(
            location.path, dir_only=dir_only, recursive=recursive, service=service
        ),
    )
