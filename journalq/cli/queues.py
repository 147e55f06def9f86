"""From command-line arguments to an open :class:`StorageQueue`.

A SRC or DST argument is an fsspec URL or a local path. Its protocol picks
the queue's filesystem (``file://`` for a path, ``memory://``, ``s3://``...)
and the rest is the path on that filesystem, so one queue can hold actions
for any paths on the same pair of filesystems. For a protocol whose
filesystem is a host (``sftp://user@host:2222/data``) the host belongs to
the filesystem and the path starts after it. ``NAME:path`` names a remote
configured in journalq's remotes file (:mod:`journalq.backends.remotes`):
the filesystem is ``NAME:`` and the path is taken below the remote's root.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import urllib.parse
from collections.abc import Iterator

import click
import fsspec
import msgspec

from journalq.backends import remotes, split_url
from journalq.cli.base import fail
from journalq.cli.completion import queue_names
from journalq.cli.context import DEFAULT_QUEUE, settings
from journalq.cli.exits import ExitCode
from journalq.cli.messages import code_for, install_hint, step
from journalq.drop import drop_queue
from journalq.errors import ActionError, JournalqError, queue_command
from journalq.lock import read_holder
from journalq.queue import StorageQueue
from journalq.store import FORMAT_NAME, queue_directory

__all__ = [
    "Location",
    "default_queue_name",
    "describe_holder",
    "open_existing_queue",
    "open_queue",
    "parse_location",
    "queue_exists",
    "removed_when_rejected",
    "resolve_id",
]

logger = logging.getLogger(__name__)

#: Hex digits of SHA-256 in a derived queue name: 32 bits, so two different
#: SRC/DST pairs share a queue with a chance of about 1 in 4 billion.
NAME_HASH_DIGITS = 8


class Location(msgspec.Struct, frozen=True):
    """A SRC or DST argument split into its filesystem and its path."""

    #: URL of the filesystem's root: ``"file://"``, ``"memory://"``...
    filesystem: str
    #: Path on that filesystem; a trailing ``/`` is kept, because it decides
    #: whether a copy goes into a directory or becomes it.
    path: str

    @property
    def url(self) -> str:
        """The URL of the location, without a password given in it."""
        url, _ = split_url(self.filesystem + self.path)
        return url


def parse_location(text: str) -> Location:
    """Split ``text`` (a URL or a local path) into filesystem and path.

    Local paths become absolute, so the same command gives the same queue
    and the same journaled paths from any working directory.
    """
    reference = remotes.split_remote(text)
    if reference is not None:
        return _remote_location(*reference)
    # Rejects a password that the filesystem would keep in every path.
    split_url(text)
    protocol, path = fsspec.core.split_protocol(text)
    if protocol in (None, "file", "local"):
        absolute = os.path.abspath(os.path.expanduser(path))
        if path.endswith("/") and not absolute.endswith("/"):
            absolute += "/"
        return Location("file://", absolute)
    if protocol not in fsspec.available_protocols():
        raise ActionError(
            text,
            f"unknown filesystem protocol {protocol!r}; use a local path or a "
            "URL that fsspec knows, such as memory://, s3://, gs:// or sftp://",
        )
    if _names_a_host(protocol, text):
        parts = urllib.parse.urlsplit(text)
        return Location(f"{protocol}://{parts.netloc}", parts.path or "/")
    return Location(f"{protocol}://", path)


def _remote_location(name: str, path: str) -> Location:
    """Return the location of ``NAME:path``; raises for an unknown remote."""
    remote = remotes.find_remote(name)
    # A remote with a root takes every path below it, as Remote.url does.
    if remote.root:
        path = path.lstrip("/")
    return Location(f"{name}:", path)


def _names_a_host(protocol: str, text: str) -> bool:
    """Return whether the URL's authority part picks a host (sftp, ssh)."""
    try:
        filesystem_class = fsspec.get_filesystem_class(protocol)
    except ImportError as error:
        raise ActionError(
            text,
            f"the {protocol}:// backend is not installed ({error}); "
            f"{install_hint(protocol)}",
        ) from None
    return "host" in filesystem_class._get_kwargs_from_urls(text)


def default_queue_name(kind: str, source: Location, destination: Location) -> str:
    """Return the queue name ``journalq copy``/``sync`` use without ``--queue``.

    It is derived from the arguments alone, so running the same command
    again opens the same queue and resumes it instead of starting over.
    """
    text = f"{kind}\n{source.url}\n{destination.url}"
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{kind}-{digest[:NAME_HASH_DIGITS]}"


def queue_exists(name_or_path: str) -> bool:
    """Return whether a queue was created under ``name_or_path``."""
    return (queue_directory(name_or_path) / FORMAT_NAME).exists()


def open_queue(
    name: str,
    source: str | None,
    destination: str | None,
    *,
    read_only: bool = False,
) -> StorageQueue:
    """Open (or create) queue ``name`` with the common options applied.

    ``source`` and ``destination`` are filesystem URLs; they create the
    queue when it is new and must match its filesystems when it exists.
    Without ``--compare`` the queue's own policy applies.
    """
    options = settings()
    with step("opening", f"queue {name}", "check the URLs and the storage options"):
        return StorageQueue(
            source,
            destination,
            name,
            options.parallelism or 4,
            compare=options.compare,
            read_only=read_only,
            source_options=options.source_options or None,
            destination_options=options.destination_options or None,
            **(
                {"part_threshold": options.part_threshold}
                if options.part_threshold
                else {}
            ),
        )


def open_existing_queue(*, read_only: bool = False) -> StorageQueue:
    """Open the queue named by ``--queue`` (default ``local``), which must exist.

    ``read_only`` reads its state without taking the lock, so a report never
    keeps a run from starting.
    """
    name = settings().queue or DEFAULT_QUEUE
    if not queue_exists(name):
        # A name that matches no queue is a usage error, not damage.
        fail(_not_found(name), ExitCode.USAGE)
    return open_queue(name, None, None, read_only=read_only)


def describe_holder(queue: StorageQueue) -> str:
    """Return the process that has ``queue``'s lock, as ``pid 123 on HOST``."""
    holder = read_holder(queue.directory) or {}
    description = f"pid {holder.get('pid', 'unknown')}"
    if holder.get("host"):
        description += f" on {holder['host']}"
    return description


def resolve_id(queue: StorageQueue, prefix: str) -> str:
    """Return the id of the one action whose id starts with ``prefix``."""
    actions = queue.state.actions
    if prefix in actions:
        return prefix
    if not prefix:
        raise ActionError(
            prefix, "an empty id matches every action; give more of the id"
        )
    found = [action_id for action_id in actions if action_id.startswith(prefix)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ActionError(
            prefix,
            "no action with this id in the queue; list the ids with "
            + queue_command("actions", queue.directory),
        )
    raise ActionError(
        prefix,
        f"{len(found)} actions have ids starting with this; give more of the id",
    )


def _not_found(name: str) -> str:
    directory = queue_directory(name)
    message = f"queue {directory}: not found"
    names = queue_names()
    if settings().queue is None and names:
        # `journalq sync A B` names its queue after A and B, so a plain
        # `journalq status` afterwards looks for the wrong one.
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        return (
            f"{message}; without --queue the queue named {DEFAULT_QUEUE!r} is "
            f"used. Existing queues: {shown}; name one with --queue, or list "
            "them with `journalq queues`"
        )
    return (
        f"{message}; create it with `journalq copy`, `journalq sync` or "
        "`journalq add`, or name another with --queue (`journalq queues` "
        "lists them)"
    )


@contextlib.contextmanager
def removed_when_rejected(name: str) -> Iterator[None]:
    """Delete queue ``name`` again if the command creates it and is rejected.

    A rejected request (exit status 2, such as a missing source) adds
    nothing, and its new queue would otherwise stay behind for ``journalq
    queues`` to list. A directory that existed before, even an empty one,
    is kept, and so is a queue that another process locked or added to.
    """
    is_new = not os.path.lexists(queue_directory(name))
    try:
        yield
    except Exception as error:
        if is_new and _is_rejection(error):
            _drop_unused(name)
        raise


def _is_rejection(error: Exception) -> bool:
    # fail() ends a command with click's Exit, which carries the code.
    if isinstance(error, click.exceptions.Exit):
        return error.exit_code == ExitCode.USAGE
    return code_for(error) == ExitCode.USAGE


def _drop_unused(name: str) -> None:
    """Drop queue ``name`` if it contains no action.

    The actions are checked under the queue's lock, so an action that
    another process added keeps the queue (but see the NOTE on requests
    handed over during a drop in :mod:`journalq.drop`).
    """
    if not queue_exists(name):
        return
    directory = queue_directory(name)
    try:
        drop_queue(directory, only_if=lambda state: not state.actions)
    except JournalqError as error:
        logger.info("kept the new queue %s: %s", directory, error)
        return
    logger.info("deleted the new queue %s, because the command was rejected", directory)
