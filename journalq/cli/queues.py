"""From command-line arguments to an open :class:`StorageQueue`.

A SRC or DST argument is an fsspec URL or a local path. Its protocol picks
the queue's filesystem (``file://`` for a path, ``memory://``, ``s3://``...)
and the rest is the path on that filesystem, so one queue can hold actions
for any paths on the same pair of filesystems.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import fsspec

from journalq.cli.base import fail
from journalq.cli.context import DEFAULT_QUEUE, settings
from journalq.cli.exits import ExitCode
from journalq.queue import StorageQueue
from journalq.store import FORMAT_NAME, queue_directory

__all__ = [
    "Location",
    "default_queue_name",
    "open_existing_queue",
    "open_queue",
    "parse_location",
    "queue_exists",
]

#: Hex digits of SHA-256 in a derived queue name: 32 bits, so two different
#: SRC/DST pairs share a queue with a chance of about 1 in 4 billion.
NAME_HASH_DIGITS = 8


@dataclass(frozen=True)
class Location:
    """A SRC or DST argument split into its filesystem and its path."""

    #: URL of the filesystem's root: ``"file://"``, ``"memory://"``...
    filesystem: str
    #: Path on that filesystem; a trailing ``/`` is kept, because it decides
    #: whether a copy goes into a directory or becomes it.
    path: str

    @property
    def url(self) -> str:
        return self.filesystem + self.path


def parse_location(text: str) -> Location:
    """Split ``text`` (a URL or a local path) into filesystem and path.

    Local paths become absolute, so the same command gives the same queue
    and the same journaled paths from any working directory.
    """
    protocol, path = fsspec.core.split_protocol(text)
    if protocol in (None, "file", "local"):
        absolute = os.path.abspath(os.path.expanduser(path))
        if path.endswith("/") and not absolute.endswith("/"):
            absolute += "/"
        return Location("file://", absolute)
    return Location(f"{protocol}://", path)


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
    return StorageQueue(
        source,
        destination,
        name,
        options.parallelism or 4,
        compare=options.compare,
        read_only=read_only,
    )


def open_existing_queue(*, read_only: bool = False) -> StorageQueue:
    """Open the queue named by ``--queue`` (default ``local``), which must exist.

    ``read_only`` reads its state without taking the lock, so a report never
    keeps a run from starting.
    """
    name = settings().queue or DEFAULT_QUEUE
    if not queue_exists(name):
        directory = queue_directory(name)
        fail(
            f"queue {directory}: not found; create it with `journalq copy`, "
            "`journalq sync` or `journalq add`, or name another with --queue",
            ExitCode.UNUSABLE,
        )
    return open_queue(name, None, None, read_only=read_only)
