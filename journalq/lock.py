"""The queue lock: one process at a time owns a queue directory.

Only the process that holds ``<queue>/LOCK`` may recover, replay or append to
the journal, so every open takes this lock first. The rules it follows:

* The lock is an exclusive ``flock`` (filelock's native Unix lock), tried once
  without waiting. A contender gets :class:`~journalq.errors.QueueLockedError`
  at once, naming the holder.
* Right after ``flock`` returns, the holder writes a JSON record
  ``{pid, host, since, version, argv}`` into ``LOCK``. Other processes read it
  with :func:`read_holder`. A clean release empties the file again. After a
  crash the dead holder's record stays until the next holder overwrites it.
* ``LOCK`` is never deleted on its own. A process that deleted it and
  created a new one would lock another inode while an old holder still
  locks the first, and both would run. Only :func:`journalq.drop.drop_queue`
  deletes it, with the whole queue directory, while it holds the lock.
* No stale-lock breaking: the kernel drops a ``flock`` when its holder dies,
  so a crash leaves at most a stale file, never a stale lock.
* One :class:`QueueLock` per queue per process. A registry keyed by the
  resolved path turns a second acquire into an explicit error, where a second
  ``flock`` from the same process would only report "locked by" itself.
* Do not fork while holding the lock. A ``flock`` belongs to the open file
  description, so a forked child shares it and keeps the queue locked until
  its last copy of the descriptor closes.
* Network filesystems (NFS, SMB/CIFS, sshfs) are rejected, because ``flock``
  there does not exclude processes on other clients. With
  ``allow_network_fs=True`` such a queue uses filelock's
  ``StrictSoftFileLock`` instead: claim files in ``LOCK.filelock/``, the
  holder record in ``LOCK.holder``, and fail-closed. After a holder crash the
  queue stays locked until an operator who has checked that the holder is
  gone calls :func:`break_lock`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import BaseFileLock, FileLock, Timeout

from journalq import durable
from journalq.backends.options import is_secret, parse_value, without_secrets
from journalq.errors import QueueError, QueueLockedError

__all__ = [
    "HOLDER_NAME",
    "LOCK_NAME",
    "MOUNTINFO_PATH",
    "QueueLock",
    "break_lock",
    "filesystem_type",
    "read_holder",
]

logger = logging.getLogger(__name__)

#: The lock file inside a queue directory.
LOCK_NAME = "LOCK"
#: The holder record of a queue on a network filesystem, next to ``LOCK``.
HOLDER_NAME = "LOCK.holder"
#: The Linux file that lists the mounts visible to this process.
MOUNTINFO_PATH = "/proc/self/mountinfo"

# Filesystem types (as /proc/self/mountinfo spells them) on which flock does
# not exclude processes on other clients. A prefix covers nfs and nfs4, and
# smb3 and smbfs.
_NETWORK_FS_PREFIXES = ("nfs", "cifs", "smb", "fuse.sshfs")

# A contender can read LOCK after the holder's flock returned and before its
# record is written. The holder writes the record in one call right after
# flock, so five reads 2 ms apart cover that gap. The numbers are an
# estimate, not a measurement.
_HOLDER_READ_ATTEMPTS = 5
_HOLDER_READ_INTERVAL = 0.002

# Option names whose values must not reach a holder record.
_SECRET_OPTION = re.compile(
    r"^--?[\w-]*(password|passwd|secret|token|key|credential)", re.IGNORECASE
)
# The password of a URL ends at the last @ before the path, as
# urllib.parse reads it, so it may contain an unencoded @.
_URL_PASSWORD = re.compile(r"(//[^/@:\s]*:)[^/\s]*@")

_registry_guard = threading.Lock()
_registry: dict[str, QueueLock] = {}


def _forget_locks_after_fork() -> None:
    # The child does not own the parent's QueueLock objects. A lock that the
    # child takes goes through flock, which then names the parent as holder.
    global _registry_guard  # noqa: PLW0603
    _registry_guard = threading.Lock()
    _registry.clear()


os.register_at_fork(after_in_child=_forget_locks_after_fork)


class QueueLock:
    """The exclusive lock of one queue directory, for one process."""

    def __init__(
        self,
        queue_dir: str | os.PathLike[str],
        *,
        allow_network_fs: bool = False,
        mountinfo: str | os.PathLike[str] = MOUNTINFO_PATH,
    ) -> None:
        self.path = os.path.realpath(queue_dir)
        self.lock_path = os.path.join(self.path, LOCK_NAME)
        self.allow_network_fs = allow_network_fs
        self._mountinfo = os.fspath(mountinfo)
        self._guard = threading.Lock()
        self._lock: BaseFileLock | None = None
        self._record: dict[str, Any] = {}

    @property
    def is_held(self) -> bool:
        """Whether this object holds the lock."""
        return self._lock is not None

    def acquire(self) -> None:
        """Take the lock without waiting.

        Raises :class:`QueueLockedError` when another process has the lock,
        or with ``same_process=True`` when another :class:`QueueLock` of this
        process (or this one) has it. Raises :class:`QueueError` for a queue
        on a network filesystem unless ``allow_network_fs`` was given.
        """
        with self._guard:
            if self._lock is not None:
                raise QueueLockedError(self.path, same_process=True)
            network_type = self._check_filesystem()
            _register(self)
            try:
                self._lock = self._take(network_type)
            except BaseException:
                _unregister(self)
                raise
        logger.info("locked queue %s (pid %d)", self.path, os.getpid())

    def release(self) -> None:
        """Release the lock; a no-op unless it is held. Any thread may call it.

        The lock file stays in place. Its holder record is emptied first, so a
        reader never sees this process named after it let go.
        """
        with self._guard:
            lock, self._lock = self._lock, None
            if lock is None:
                return
            try:
                self._clear_record(lock)
                lock.release()
            finally:
                _unregister(self)
        logger.info("unlocked queue %s", self.path)

    def holder(self) -> dict[str, Any] | None:
        """Return the holder record of this queue (see :func:`read_holder`)."""
        return read_holder(self.path)

    def __enter__(self) -> QueueLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.is_held else "not held"
        return f"QueueLock({self.path!r}, {state})"

    def _check_filesystem(self) -> str | None:
        fs_type = filesystem_type(self.path, self._mountinfo)
        if fs_type is None or not fs_type.startswith(_NETWORK_FS_PREFIXES):
            return None
        if not self.allow_network_fs:
            raise QueueError(
                self.path,
                f"the directory is on a {fs_type} filesystem, where flock does "
                "not exclude processes on other clients, so two runs could "
                "write the journal at once. Move the queue to a local disk, or "
                "pass allow_network_fs=True to use a fail-closed lock that must "
                "be broken by hand after a crash",
            )
        logger.warning(
            "queue %s is on a %s filesystem; using a fail-closed claim lock "
            "that stays locked after a crash until break_lock is called",
            self.path,
            fs_type,
        )
        return fs_type

    def _take(self, network_type: str | None) -> BaseFileLock:
        self._record = _holder_record()
        if network_type is None:
            lock = FileLock(
                self.lock_path,
                mode=0o600,
                thread_local=False,
                blocking=False,
                fallback_to_soft=False,
                preserve_lock_file=True,
                on_acquired=self._stamp,
            )
        else:
            lock = _strict_lock(self.path)
        try:
            lock.acquire()
        except Timeout:
            holder = _read_holder_of_contended(self.path) or {}
            raise QueueLockedError(
                self.path,
                pid=holder.get("pid"),
                host=holder.get("host"),
                since=holder.get("since"),
            ) from None
        if network_type is not None:
            self._stamp_beside(lock)
        return lock

    def _stamp(self, fd: int) -> None:
        # Called by filelock with the locked descriptor, before acquire
        # returns. The record needs no fsync, because a crash frees the lock
        # and the next holder writes its own record.
        data = json.dumps(self._record).encode()
        os.ftruncate(fd, 0)
        written = 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], written)

    def _stamp_beside(self, lock: BaseFileLock) -> None:
        data = json.dumps(self._record).encode()
        try:
            durable.atomic_write(os.path.join(self.path, HOLDER_NAME), data)
        except BaseException:
            lock.release()
            raise

    def _clear_record(self, lock: BaseFileLock) -> None:
        # Best effort: a record left behind misleads a reader, but failing to
        # remove it must not keep the queue locked.
        try:
            if not isinstance(lock, FileLock):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.path, HOLDER_NAME))
            else:
                # The file is gone when the queue was dropped under the lock.
                with contextlib.suppress(FileNotFoundError):
                    os.truncate(self.lock_path, 0)
        except OSError as error:
            logger.warning(
                "could not clear the holder record of queue %s: %s", self.path, error
            )


def read_holder(queue_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Read the holder record of a queue, or ``None`` if none is stamped.

    The record is the JSON object ``{pid, host, since, version, argv}`` that
    the current holder wrote. After the holder was killed, it is that dead
    holder's record until the next acquire, so only an acquire attempt shows
    for sure whether the queue is locked.
    """
    root = os.path.realpath(queue_dir)
    record = _read_record(os.path.join(root, HOLDER_NAME))
    if record is None:
        record = _read_record(os.path.join(root, LOCK_NAME))
    return record


def break_lock(queue_dir: str | os.PathLike[str]) -> list[str]:
    """Remove the claims of a queue locked with ``allow_network_fs=True``.

    Only call it after checking that the holder named by :func:`read_holder`
    has stopped: a running holder would then share the queue with the next
    one. Returns the names of the removed claim files. A ``flock`` lock needs
    no breaking, because the kernel releases it when its holder dies.
    """
    root = os.path.realpath(queue_dir)
    lock = _strict_lock(root)
    try:
        claims = lock.claims
    except FileNotFoundError:
        claims = ()
    for claim in claims:
        logger.warning(
            "breaking the lock of queue %s: removing claim %s of pid %d on %s",
            root,
            claim.name,
            claim.pid,
            claim.hostname,
        )
        with contextlib.suppress(FileNotFoundError):
            lock.force_break(claim.name)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(root, HOLDER_NAME))
    return [claim.name for claim in claims]


def filesystem_type(
    path: str | os.PathLike[str], mountinfo: str | os.PathLike[str] = MOUNTINFO_PATH
) -> str | None:
    """Return the type of the filesystem that contains ``path``.

    The type is the one ``mountinfo`` lists for the deepest mount point above
    the resolved ``path``, or ``None`` where that file cannot be read (a
    platform other than Linux).
    """
    target = os.path.realpath(path)
    try:
        lines = Path(mountinfo).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        logger.debug("cannot read %s (%s); assuming a local disk", mountinfo, error)
        return None

    best_point, best_type = "", None
    for line in lines:
        entry = _parse_mount(line)
        if entry is None:
            continue
        mount_point, fs_type = entry
        # A later entry for the same mount point is mounted over the earlier.
        if _is_within(target, mount_point) and len(mount_point) >= len(best_point):
            best_point, best_type = mount_point, fs_type
    return best_type


def _parse_mount(line: str) -> tuple[str, str] | None:
    # Fields: id, parent id, major:minor, root, mount point, options, then
    # optional fields up to a lone "-", then type, source, super options.
    fields = line.split(" ")
    try:
        separator = fields.index("-", 6)
        mount_point, fs_type = fields[4], fields[separator + 1]
    except (ValueError, IndexError):
        return None
    return _unescape_octal(mount_point), fs_type


def _unescape_octal(text: str) -> str:
    # The kernel writes space, tab, newline and backslash as \040 and so on.
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), text)


def _is_within(path: str, mount_point: str) -> bool:
    if mount_point == "/":
        return True
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def _strict_lock(queue_path: str) -> BaseFileLock:
    # Imported here: filelock loads its soft locks on first use, which cost
    # about 12 ms of CPU at every start on the 2-core development VM, and
    # only queues on network filesystems need them.
    from filelock import StrictSoftFileLock

    return StrictSoftFileLock(
        os.path.join(queue_path, LOCK_NAME),
        mode=0o600,
        thread_local=False,
        blocking=False,
        preserve_lock_file=True,
    )


def _register(lock: QueueLock) -> None:
    with _registry_guard:
        if lock.path in _registry:
            raise QueueLockedError(lock.path, same_process=True)
        _registry[lock.path] = lock


def _unregister(lock: QueueLock) -> None:
    with _registry_guard:
        if _registry.get(lock.path) is lock:
            del _registry[lock.path]


def _holder_record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        "version": _journalq_version(),
        "argv": _redact_argv(sys.argv),
    }


@functools.cache
def _journalq_version() -> str:
    try:
        return importlib.metadata.version("journalq")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _redact_argv(argv: list[str]) -> list[str]:
    """Copy ``argv`` with the values of secret-looking options replaced."""
    redacted: list[str] = []
    hide_next = False
    for argument in argv:
        if hide_next:
            redacted.append("***")
            hide_next = False
            continue
        cleaned = _URL_PASSWORD.sub(r"\1***@", argument)
        if _SECRET_OPTION.match(cleaned):
            name, equals, _ = cleaned.partition("=")
            hide_next = not equals
            cleaned = f"{name}=***" if equals else name
        elif cleaned.startswith("-"):
            # --destination-option=secret=VALUE
            name, equals, value = cleaned.partition("=")
            if equals:
                cleaned = f"{name}={_redact_storage_option(value)}"
        else:
            # The value of --source-option or --destination-option: secret=VALUE
            cleaned = _redact_storage_option(cleaned)
        redacted.append(cleaned)
    return redacted


def _redact_storage_option(text: str) -> str:
    """Hide the value of ``KEY=VALUE`` when ``KEY`` names a credential.

    A JSON value keeps its other entries and loses only the secrets nested
    in it (see :func:`journalq.backends.options.without_secrets`).
    """
    key, equals, value = text.partition("=")
    if not equals:
        return text
    if is_secret(key):
        return f"{key}=***"
    parsed = parse_value(value)
    hidden = without_secrets(parsed, "***")
    if hidden == parsed:
        return text
    return f"{key}={hidden if isinstance(hidden, str) else json.dumps(hidden)}"


def _read_holder_of_contended(queue_path: str) -> dict[str, Any] | None:
    for _ in range(_HOLDER_READ_ATTEMPTS - 1):
        record = read_holder(queue_path)
        if record is not None:
            return record
        time.sleep(_HOLDER_READ_INTERVAL)
    return read_holder(queue_path)


def _read_record(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return None
    if not data:
        return None
    try:
        record = json.loads(data)
    except ValueError:
        # A record being written, or a strict lock's sentinel in LOCK.
        return None
    return record if isinstance(record, dict) else None
