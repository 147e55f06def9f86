"""Large copies over SFTP in journaled parts: a temporary file at offsets.

:class:`SFTPPartTarget` is the :class:`journalq.parts.PartTarget` of
:class:`~journalq.backends.sftp.SFTPFilesystem`, the remote counterpart
of the local target:

* Parts go to ``.<name>.jq-<first 8 of action id>-parts.tmp`` beside the
  destination (``<name>`` shortened to fit 255 bytes), opened for reading
  and writing through asyncssh and written at each part's offset, several
  at a time. The name does not depend on the attempt, so the next attempt
  finds the file.
* Each part is synced with the ``fsync@openssh.com`` extension before it
  is reported durable (OpenSSH has offered it since 6.5).
  NOTE: a server without the extension gets no sync, which is logged once
  per filesystem. Its parts are durable only once its disk writes them
  back.
* Resume: each journaled part is read back and checked against its
  journaled checksum. The bytes read feed the whole file's digest, so the
  source is not read again for them. A part the journal lacks but that
  lies inside the file is read back too before it is written, and is not
  sent again when the bytes are there: an attempt died between writing it
  and its record.
* Completion: the file is cut to its size, given the source's mtime,
  synced and renamed over the destination with ``posix-rename@openssh.com``
  (:meth:`journalq.backends.sftp.SFTPFilesystem.replace`).
  NOTE: SFTP has no directory sync, so the rename is durable only when the
  server's filesystem writes it back.
* An attempt that died after the rename finds no temporary file but the
  destination: its journaled parts are then checked in the destination,
  and when all match, the copy is complete as it stands. A part that does
  not match goes to a new temporary file, and the parts that did match are
  copied into it from the destination before the rename.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

import asyncssh
from asyncssh.sftp import SFTPOpUnsupported
from fsspec.asyn import sync

from journalq import digest, faults, parts, transfer
from journalq.backends.sftp import SFTPFilesystem
from journalq.records import Part

__all__ = ["SFTPPartTarget", "parts_path"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Open flags: read and write, created if missing. A new plan truncates.
_OPEN: Final = asyncssh.FXF_READ | asyncssh.FXF_WRITE | asyncssh.FXF_CREAT
_NEW: Final = _OPEN | asyncssh.FXF_TRUNC


def parts_path(destination_path: str, action_id: str) -> str:
    """Return the temporary path of a copy in parts to ``destination_path``."""
    directory, _, name = destination_path.rpartition("/")
    suffix = f".jq-{action_id[:8]}-parts.tmp"
    while len(os.fsencode(f".{name}{suffix}")) > transfer.NAME_MAX:
        name = name[:-1]
    return f"{directory}/.{name}{suffix}"


class SFTPPartTarget(parts.PartTarget):
    """A temporary file beside an SFTP destination, written at part offsets."""

    #: The file gets the source's mtime, but SFTP version 3 (OpenSSH's)
    #: carries whole seconds, so a digest cached with the exact mtime would
    #: never match the file's next stat.
    keeps_mtime = False

    def __init__(self, fs: SFTPFilesystem, path: str, upload: str) -> None:
        self.fs = fs
        self.path = fs._strip_protocol(path)
        self.upload = upload
        self._file: Any = None
        #: The destination file, while an attempt that died after the
        #: rename is checked (see the module docstring).
        self._finished: Any = None
        #: Parts found intact in the destination instead of the parts file.
        self._in_destination: set[int] = set()
        #: Size of the parts file when an attempt resumed it.
        self._resumed_size = 0
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls, fs: SFTPFilesystem, path: str, action_id: str, upload: str | None
    ) -> SFTPPartTarget:
        """Open the parts file of a new plan, or that ``upload`` names."""
        target = cls(fs, path, upload or parts_path(path, action_id))
        if upload is None:
            fs.makedirs(posixpath.dirname(target.upload), exist_ok=True)
            target._file = target._run(target._open_file, target.upload, _NEW)
            return target
        try:
            target._file = target._run(
                target._open_file, target.upload, asyncssh.FXF_READ | asyncssh.FXF_WRITE
            )
        except FileNotFoundError:
            target._open_missing()
            return target
        # Nothing is read back from a parts file whose sync failed: the
        # server may still serve bytes its disk never got.
        if not parts.sync_failed(target._sync_key):
            target._resumed_size = target._run(target._file.stat).size or 0
        return target

    @property
    def _sync_key(self) -> str:
        """The name of the parts file among those whose sync failed."""
        return self.fs.url_of(self.upload)

    def recover(self, part: Part) -> bool:
        file = self._finished if self._finished is not None else self._require_open()
        data = self._run(file.read, part.size, part.offset)
        if not _matches(data, part):
            logger.info(
                "part %d of %s is missing or damaged; sending it again",
                part.number,
                self.fs.url_of(self.path),
            )
            return False
        if file is self._finished:
            with self._lock:
                self._in_destination.add(part.number)
        return True

    def write(self, number: int, offset: int, data: bytes, checksum: str) -> Part:
        file = self._require_parts_file()
        if not self._written_before(file, offset, data):
            self._run(file.write, data, offset)
        self._sync(file)
        return Part(number, offset, len(data), checksum)

    def complete(
        self,
        parts: list[Part],
        mtime_ns: int | None,
        digest_string: str | None = None,
    ) -> None:
        size = sum(part.size for part in parts)
        if self._file is None and self._finished_matches(size):
            # The earlier attempt renamed the file, then died.
            self._close_finished()
            if mtime_ns is not None:
                self.fs.set_mtime(self.path, mtime_ns)
            return
        file = self._require_parts_file()
        self._copy_from_destination(file, parts)
        self._run(file.truncate, size)
        if mtime_ns is not None:
            self._run(file.utime, ns=(mtime_ns, mtime_ns))
        self._sync(file)
        self._close()
        faults.point("parts.before_rename")
        self.fs.replace(self.upload, self.path)
        faults.point("parts.after_complete")
        self.fs.invalidate_cache(self.path)
        logger.debug(
            "completed %s from %d parts", self.fs.url_of(self.path), len(parts)
        )

    def abort(self) -> None:
        self._close()
        # A new plan of this action truncates the file, reusing its name.
        self._remove("")

    def release(self) -> None:
        self._close()

    # Steps -------------------------------------------------------------------

    def _open_missing(self) -> None:
        """Resume without a parts file: check the destination, if there is one."""
        try:
            self._finished = self._run(self._open_file, self.path, asyncssh.FXF_READ)
        except FileNotFoundError:
            self._file = self._run(self._open_file, self.upload, _NEW)
            return
        logger.info(
            "%s is missing; checking the journaled parts in %s",
            self.fs.url_of(self.upload),
            self.fs.url_of(self.path),
        )

    def _written_before(self, file: Any, offset: int, data: bytes) -> bool:
        """Return whether an earlier attempt wrote ``data`` but died unjournaled.

        Only parts inside the file as the attempt found it are read back: a
        few, the parts that were in flight when it died.
        """
        if offset + len(data) > self._resumed_size:
            return False
        return self._run(file.read, len(data), offset) == data

    def _require_parts_file(self) -> Any:
        """Return the parts file, creating it when only the destination was open."""
        with self._lock:
            if self._file is None and self._finished is not None:
                self._file = self._run(self._open_file, self.upload, _NEW)
            return self._require_open()

    def _finished_matches(self, size: int) -> bool:
        if self._finished is None:
            return False
        attributes = self._run(self._finished.stat)
        return attributes.size == size

    def _copy_from_destination(self, file: Any, parts: list[Part]) -> None:
        """Copy the parts that were found in the destination into ``file``."""
        if self._finished is None:
            return
        for part in parts:
            if part.number in self._in_destination:
                data = self._run(self._finished.read, part.size, part.offset)
                self._run(file.write, data, part.offset)
        self._close_finished()

    def _sync(self, file: Any) -> None:
        """Sync the parts written so far, and delete the file if the sync fails.

        When the server reports that the sync failed, a later attempt, in
        this process or the next one, then writes every part again rather
        than reading back bytes the server's disk may not have (see
        :meth:`journalq.parts.LocalPartTarget._sync`).
        """
        try:
            self._run(file.fsync)
        except SFTPOpUnsupported:
            if not getattr(self.fs, "_warned_no_fsync", False):
                self.fs._warned_no_fsync = True
                logger.warning(
                    "%s does not offer fsync@openssh.com, so parts are not synced "
                    "before they are journaled",
                    self.fs.url_of(""),
                )
        except BaseException as exc:
            parts.note_failed_sync(self._sync_key)
            if not isinstance(exc, asyncssh.SFTPError) or isinstance(
                exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection
            ):
                # A lost connection or an interrupt gives no information about
                # the server's disk, so the next run reads the parts back.
                raise
            self._remove(
                ". Its sync failed, so a later run may keep parts that are not "
                "on the disk: delete it before the next run"
            )
            raise

    def _remove(self, advice: str) -> None:
        """Delete the parts file, and warn with ``advice`` if that fails."""
        try:
            self.fs.rm_file(self.upload)
        except FileNotFoundError:
            pass
        except (OSError, asyncssh.Error) as exc:
            logger.warning(
                "could not remove %s: %s%s", self.fs.url_of(self.upload), exc, advice
            )

    async def _open_file(self, path: str, flags: int) -> Any:
        async with self.fs._pool.get() as channel:
            try:
                return await channel.open(path, flags, encoding=None)
            except asyncssh.SFTPNoSuchFile as exc:
                raise FileNotFoundError(
                    errno.ENOENT, f"{self.fs.url_of(path)} not found: {exc.reason}"
                ) from exc
            except asyncssh.SFTPPermissionDenied as exc:
                raise PermissionError(
                    errno.EACCES,
                    f"cannot open {self.fs.url_of(path)}: {exc.reason}; check the "
                    "permissions of its directory on the server",
                ) from exc

    def _run(
        self,
        function: Callable[..., Coroutine[Any, Any, _T]],
        *args: Any,
        **kwargs: Any,
    ) -> _T:
        return sync(self.fs.loop, function, *args, **kwargs)

    def _require_open(self) -> Any:
        if self._file is None:
            raise ValueError(
                f"the parts of {self.fs.url_of(self.path)} are already completed "
                "or aborted"
            )
        return self._file

    def _close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            self._run(file.close)
        self._close_finished()

    def _close_finished(self) -> None:
        file, self._finished = self._finished, None
        if file is not None:
            self._run(file.close)


def _matches(data: bytes, part: Part) -> bool:
    """Return whether ``data`` is the whole part with its journaled checksum."""
    if len(data) != part.size:
        return False
    checksum = digest.new_hasher(digest.split_digest(part.checksum)[0])
    checksum.update(data)
    return checksum.digest_string() == part.checksum


def _open_target(
    fs: Any, path: str, action_id: str, upload: str | None, part_size: int
) -> SFTPPartTarget:
    if upload is not None and part_size == 0:
        # The executor opens a stale plan's target with part size 0, only
        # to abort it, so no file is opened then.
        return SFTPPartTarget(fs, path, upload)
    return SFTPPartTarget.open(fs, path, action_id, upload)


parts.register_part_target(SFTPFilesystem, _open_target)
