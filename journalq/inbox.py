"""The inbox: how a process adds actions to a queue that another one runs.

Only the lock holder writes the journal. Two writers appending to one file
would need a second lock around every append and would still race with the
holder's recovery, which truncates torn tails. So a process that finds the
queue locked hands its request to the holder through ``<queue>/inbox/``:

1. :func:`post` writes one file per request (``*.tmp`` -> fsync -> rename ->
   fsync of the directory) and returns once that file is durable, so an
   acknowledged request cannot be lost.
2. The holder calls :func:`pending` at open and periodically while it runs,
   appends the records of each request to the journal durably, then calls
   :func:`remove` for those requests.

A crash between the append and the removal delivers the same request again
at the next drain. Delivery is therefore at least once: the records carry
deterministic action ids, so the caller makes the second ingest a no-op.

File names are ``<time_ns:020d>-<pid:010d>-<random hex>.req``, so they sort in
posting order. One process's requests keep their order even if the clock
steps back, because its timestamps never decrease. Requests of different
processes are ordered by the wall clock.

File layout (little-endian)::

    0   4 bytes  magic b"JQIB"
    4   u16      format version (FORMAT_VERSION)
    6   u16      reserved, 0
    8   u64      payload length
    16  ...      payload (opaque here)
    end u32      CRC32C of every byte before it

A request that fails these checks is moved to ``inbox/rejected/`` with a
warning, never silently dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import struct
import threading
import time
from collections.abc import Iterable

import crc32c

from journalq import durable, faults
from journalq.errors import QueueError

__all__ = [
    "FORMAT_VERSION",
    "INBOX_DIR",
    "MAGIC",
    "REJECTED_DIR",
    "pending",
    "post",
    "remove",
]

logger = logging.getLogger(__name__)

#: The inbox directory inside a queue directory.
INBOX_DIR = "inbox"
#: The directory of rejected requests, inside the inbox.
REJECTED_DIR = "rejected"
MAGIC = b"JQIB"
#: The highest request format version this module reads and the one it writes.
FORMAT_VERSION = 1

_HEADER = struct.Struct("<4sHHQ")
_FOOTER = struct.Struct("<I")
_MINIMUM_SIZE = _HEADER.size + _FOOTER.size
_REQUEST_NAME = re.compile(r"^(\d{20})-(\d{10})-([0-9a-f]{8})\.req$")
_TEMPORARY_SUFFIX = ".tmp"

_stamp_guard = threading.Lock()
_last_stamp = 0


class _InvalidRequestError(Exception):
    """An inbox file fails validation; the message is the reason."""


def post(queue_dir: str | os.PathLike[str], payload: bytes) -> str:
    """Hand ``payload`` to the holder of the queue; return the file name.

    When this returns, the request is durable in the inbox.
    """
    directory = _ensure_inbox(os.fspath(queue_dir))
    name = _new_name()
    path = os.path.join(directory, name)
    temporary = path + _TEMPORARY_SUFFIX

    fd = durable.ops.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        durable.ops.write_all(fd, _encode(payload))
        durable.ops.fsync(fd)
    finally:
        durable.ops.close(fd)

    faults.point("inbox.before_rename")
    durable.ops.replace(temporary, path)
    durable.ops.fsync_dir(directory)
    logger.debug("posted request %s (%d bytes)", path, len(payload))
    return name


def pending(queue_dir: str | os.PathLike[str]) -> list[tuple[str, bytes]]:
    """Read the requests waiting in the inbox, in posting order.

    Returns ``(name, payload)`` pairs. Moves requests that fail validation and
    files that are not requests to ``inbox/rejected/``, and deletes
    temporaries left by posters that are no longer running. Only the lock
    holder may call it.
    """
    directory = os.path.join(os.fspath(queue_dir), INBOX_DIR)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []

    requests = []
    for name in names:
        path = os.path.join(directory, name)
        if name.endswith(_TEMPORARY_SUFFIX):
            _remove_if_abandoned(directory, name)
            continue
        if name == REJECTED_DIR:
            continue
        try:
            requests.append((name, _read_request(name, path)))
        except _InvalidRequestError as reason:
            _reject(directory, name, str(reason))
        except FileNotFoundError:
            continue
    return requests


def remove(queue_dir: str | os.PathLike[str], names: Iterable[str]) -> None:
    """Delete the requests ``names`` from the inbox, durably.

    A name that is already gone is skipped, so a repeated drain is harmless.
    """
    directory = os.path.join(os.fspath(queue_dir), INBOX_DIR)
    removed = 0
    for name in names:
        if not _REQUEST_NAME.match(name):
            raise ValueError(f"{name!r} is not the name of an inbox request")
        with contextlib.suppress(FileNotFoundError):
            durable.ops.unlink(os.path.join(directory, name))
            removed += 1
    if removed:
        durable.ops.fsync_dir(directory)


def _encode(payload: bytes) -> bytes:
    body = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(payload)) + payload
    return body + _FOOTER.pack(crc32c.crc32c(body))


def _read_request(name: str, path: str) -> bytes:
    if not _REQUEST_NAME.match(name):
        raise _InvalidRequestError("the name is not that of an inbox request")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except IsADirectoryError:
        raise _InvalidRequestError("a directory, not a request file") from None
    if len(data) < _MINIMUM_SIZE:
        raise _InvalidRequestError(
            f"the file is {len(data)} bytes, shorter than the minimum {_MINIMUM_SIZE}"
        )

    magic, version, _, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise _InvalidRequestError(f"invalid magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise _InvalidRequestError(
            f"format version {version} is not {FORMAT_VERSION}, the version "
            "this journalq reads; post the request again with this version"
        )
    if length != len(data) - _MINIMUM_SIZE:
        raise _InvalidRequestError(
            f"payload length {length} does not match the file size {len(data)}"
        )
    stored = _FOOTER.unpack_from(data, len(data) - _FOOTER.size)[0]
    computed = crc32c.crc32c(data[: -_FOOTER.size])
    if stored != computed:
        raise _InvalidRequestError(
            f"checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )
    return data[_HEADER.size : -_FOOTER.size]


def _new_name() -> str:
    global _last_stamp  # noqa: PLW0603
    with _stamp_guard:
        _last_stamp = max(time.time_ns(), _last_stamp + 1)
        stamp = _last_stamp
    return f"{stamp:020d}-{os.getpid():010d}-{secrets.token_hex(4)}.req"


def _ensure_inbox(queue_dir: str) -> str:
    if not os.path.isdir(queue_dir):
        raise QueueError(
            queue_dir, "the directory does not exist; create the queue first"
        )
    directory = os.path.join(queue_dir, INBOX_DIR)
    _make_directory(directory)
    return directory


def _make_directory(directory: str) -> None:
    # The parent is synced even when the directory exists, because the
    # process that created it may have crashed before syncing its entry.
    with contextlib.suppress(FileExistsError):
        durable.ops.mkdir(directory)
    durable.ops.fsync_dir(os.path.dirname(directory))


def _remove_if_abandoned(directory: str, name: str) -> None:
    # A temporary of a running poster becomes a request when it is renamed.
    # One whose poster has exited never will: the poster got no
    # acknowledgement, so deleting it loses nothing.
    match = _REQUEST_NAME.match(name.removesuffix(_TEMPORARY_SUFFIX))
    if match is None or _process_exists(int(match[2])):
        return
    logger.info("deleting unfinished request %s", os.path.join(directory, name))
    with contextlib.suppress(FileNotFoundError):
        durable.ops.unlink(os.path.join(directory, name))
        durable.ops.fsync_dir(directory)


def _process_exists(pid: int) -> bool:
    # NOTE: a poster in another PID namespace or on another host looks dead
    # here. Its temporary is then deleted and its rename fails, so its post
    # raises FileNotFoundError instead of returning: no request is lost.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reject(directory: str, name: str, reason: str) -> None:
    rejected = os.path.join(directory, REJECTED_DIR)
    _make_directory(rejected)
    source = os.path.join(directory, name)
    logger.warning(
        "rejected inbox file %s (%s); moved it to %s", source, reason, rejected
    )
    durable.ops.replace(source, os.path.join(rejected, name))
    durable.ops.fsync_dir(rejected)
    durable.ops.fsync_dir(directory)
