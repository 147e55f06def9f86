"""SFTP through sshfs: temporary files renamed into place, remote digests.

:class:`SFTPFilesystem` is sshfs's filesystem with what a transfer queue
needs:

* Commit: :class:`SFTPSink` writes a temporary file in the destination's
  directory (named by :func:`journalq.transfer.temp_path`, so a later
  attempt sweeps what a crash left), sets its mtime to the source's, and
  renames it over the destination with the ``posix-rename@openssh.com``
  extension, which replaces the target in one step. A server without it
  gets a plain rename, which SFTP defines to fail on an existing target,
  so the old file is removed first there.
  NOTE: without posix-rename a crash between that remove and the rename
  leaves neither the old file nor the new one under the destination name.
  sshfs's own ``mv`` is never used: it falls back to copy and delete and
  deletes the source even when the copy failed.
* Identity: when the server runs commands, ``sha256sum`` or ``md5sum``
  hashes a file where it is, and the identical check compares that with
  the other side's digest without downloading the file. A server that
  only offers SFTP (``ForceCommand internal-sftp``) has its files read.
* Directories: ``rmdir`` removes an empty directory (sshfs 2026.8's does
  nothing).
* Ranged reads: ``cat_file(path, start, end)`` reads only that range
  (sshfs 2026.8 returns the whole file).
* Large copies: files from the queue's part threshold on go in journaled
  parts to a temporary file that a later attempt resumes
  (:mod:`journalq.backends.sftp_parts`).
* Connections: a lost SSH connection makes :attr:`connection_lost` true,
  and :class:`journalq.backends.Filesystem` then connects again before
  the next action; the failed attempt is transient and retried.

Memory per transfer is bounded by the caller's chunk: sshfs sends each
write at once, in pipelined requests of at most 256 KiB.
"""

from __future__ import annotations

import errno
import logging
import posixpath
import re
import shlex
from typing import Any, Final

import asyncssh
from asyncssh.sftp import SFTPOpUnsupported
from fsspec.asyn import sync_wrapper
from sshfs import SSHFileSystem
from sshfs.utils import wrap_exceptions

from journalq import compare, digest, faults, retry, transfer

__all__ = ["FILESYSTEM", "SFTPFilesystem", "SFTPSink"]

logger = logging.getLogger(__name__)

#: The remote commands that hash a file, by journalq's algorithm name.
COMMANDS: Final = {"sha256": "sha256sum", "md5": "md5sum"}
_HEX_LENGTHS: Final = {"sha256": 64, "md5": 32}
_HEX: Final = re.compile(r"\\?([0-9a-f]+)\s")


class SFTPFilesystem(SSHFileSystem):
    """sshfs with a working rmdir, renames that replace, and remote hashing."""

    def __init__(self, host: str, **kwargs: Any) -> None:
        self.host = host
        self.port = kwargs.get("port", 22)
        self.username = kwargs.get("username")
        self._algorithms: tuple[str, ...] | None = None
        try:
            super().__init__(host, **kwargs)
        except (OSError, asyncssh.Error) as exc:
            raise _connect_error(self, exc) from exc

    def url_of(self, path: str) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"ssh://{user}{self.host}:{self.port}{path}"

    @property
    def connection_lost(self) -> bool:
        """Whether the SSH connection closed, so this instance is unusable."""
        client = getattr(self, "_client", None)
        return client is not None and client.is_closed()

    @wrap_exceptions
    async def _rmdir(self, path: str, recursive: bool = False, **kwargs: Any) -> None:
        await super()._rmdir(path, recursive=recursive, **kwargs)

    rmdir = sync_wrapper(_rmdir)

    @wrap_exceptions
    async def _cat_file(
        self,
        path: str,
        start: int | None = None,
        end: int | None = None,
        **kwargs: Any,
    ) -> bytes:
        # sshfs 2026.8 ignores start and end and returns the whole file, so
        # a ranged read (a part of a large copy) would get every byte.
        async with self._pool.get() as channel, channel.open(path, "rb") as file:
            if start is None and end is None:
                return await file.read()
            size = (await file.stat()).size or 0
            first, stop = _byte_range(start, end, size)
            return await file.read(max(0, stop - first), first)

    cat_file = sync_wrapper(_cat_file)

    @wrap_exceptions
    async def _set_mtime(self, path: str, mtime_ns: int) -> None:
        async with self._pool.get() as channel:
            await channel.utime(path, ns=(mtime_ns, mtime_ns))

    set_mtime = sync_wrapper(_set_mtime)

    @wrap_exceptions
    async def _replace(self, source: str, target: str) -> None:
        async with self._pool.get() as channel:
            try:
                await channel.posix_rename(source, target)
                return
            except SFTPOpUnsupported:
                pass
            try:
                await channel.rename(source, target)
            except asyncssh.SFTPFailure:
                await channel.remove(target)
                await channel.rename(source, target)

    replace = sync_wrapper(_replace)

    def remote_algorithms(self) -> tuple[str, ...]:
        """Return the algorithms the server hashes with; asked once."""
        if self._algorithms is None:
            self._algorithms = self._probe_commands()
        return self._algorithms

    def _probe_commands(self) -> tuple[str, ...]:
        check = " && ".join(f"{command} --version" for command in COMMANDS.values())
        try:
            result = self.execute(check, check=False)
        except (OSError, asyncssh.Error) as exc:
            logger.info(
                "%s runs no commands (%s), so its files are read to hash them",
                self.url_of(""),
                exc,
            )
            return ()
        if result.exit_status != 0:
            return ()
        return tuple(COMMANDS)

    def hash_remote(self, path: str, algorithm: str) -> str | None:
        """Return the digest string the server computes, or ``None``."""
        if algorithm not in self.remote_algorithms():
            return None
        command = f"{COMMANDS[algorithm]} -- {shlex.quote(path)}"
        result = self.execute(command, check=False)
        if result.exit_status != 0:
            message = str(result.stderr).strip()
            if "No such file" in message:
                raise FileNotFoundError(errno.ENOENT, message, self.url_of(path))
            raise OSError(
                errno.EIO,
                f"{COMMANDS[algorithm]} failed on {self.url_of(path)} with "
                f"status {result.exit_status}: {message}",
            )
        match = _HEX.match(str(result.stdout))
        if match is None or len(match[1]) != _HEX_LENGTHS[algorithm]:
            raise OSError(
                errno.EIO,
                f"unexpected output of {COMMANDS[algorithm]} for "
                f"{self.url_of(path)}: {str(result.stdout)[:200]!r}",
            )
        return f"{algorithm}:{match[1]}"


FILESYSTEM: Final = SFTPFilesystem


def _byte_range(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    """Return ``[start, end)`` of a file of ``size`` bytes, as fsspec reads it.

    Negative values count from the end, and ``None`` is the file's edge.
    """
    first = start or 0
    if first < 0:
        first += size
    stop = size if end is None else end
    if stop < 0:
        stop += size
    return max(0, first), min(size, stop)


def _connect_error(fs: SFTPFilesystem, exc: BaseException) -> OSError:
    where = fs.url_of("")
    if isinstance(exc, asyncssh.PermissionDenied | PermissionError):
        return PermissionError(
            errno.EACCES,
            f"the SSH server {where} rejected the login ({exc}); check the "
            "username and the client_keys or password options",
            where,
        )
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return PermissionError(
            errno.EACCES,
            f"the host key of {where} is not trusted ({exc}); add it to "
            "known_hosts or pass the known_hosts option",
            where,
        )
    return ConnectionError(
        errno.ECONNREFUSED,
        f"cannot connect to the SSH server {where} ({exc}); check the host "
        "and port and that sshd is running",
    )


# Identity --------------------------------------------------------------------


def stat(fs: SFTPFilesystem, path: str) -> compare.FileInfo | None:
    """Return the size and mtime of ``path`` and what the server hashes."""
    info = compare.stat_generic(fs, path)
    if info is None:
        return None
    return compare.FileInfo(
        size=info.size, mtime_ns=info.mtime_ns, computable=fs.remote_algorithms()
    )


def _hash(fs: Any, path: str, algorithm: str) -> str | None:
    return fs.hash_remote(path, algorithm)


compare.register_stat(SFTPFilesystem, stat)
digest.register_hasher(SFTPFilesystem, _hash)


# Sink ------------------------------------------------------------------------


class SFTPSink(transfer.Sink):
    """A temporary file beside the destination, renamed over it on commit."""

    def __init__(self, fs: SFTPFilesystem, path: str, temporary: str) -> None:
        super().__init__(path)
        self.fs = fs
        self.temporary = temporary
        try:
            self._file: Any = fs.open(temporary, "wb")
        except FileNotFoundError:
            fs.makedirs(posixpath.dirname(temporary), exist_ok=True)
            self._file = fs.open(temporary, "wb")

    def write(self, data: bytes | memoryview) -> None:
        if self._file is None:
            raise ValueError(
                f"the sink for {self.fs.url_of(self.path)} is already committed "
                "or aborted"
            )
        self._file.write(bytes(data))

    def commit(self, mtime_ns: int | None = None) -> None:
        try:
            self._close()
            if mtime_ns is not None:
                self.fs.set_mtime(self.temporary, mtime_ns)
            faults.point("transfer.before_rename")
            self.fs.replace(self.temporary, self.path)
        except BaseException:
            self.abort()
            raise
        self.committed = True
        self.fs.invalidate_cache(self.path)
        faults.point("transfer.after_rename")
        logger.debug("committed %s", self.fs.url_of(self.path))

    def abort(self) -> None:
        if self.committed:
            return
        try:
            self._close()
            self.fs.rm_file(self.temporary)
        except FileNotFoundError:
            pass
        except (OSError, asyncssh.Error) as exc:
            # The next attempt at this action sweeps the temporary file.
            logger.warning(
                "could not remove %s: %s", self.fs.url_of(self.temporary), exc
            )

    def _close(self) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.close()
        finally:
            # sshfs 2026.8 marks a file closed only once its close request
            # succeeded. After a lost connection the file's finalizer would
            # try again and wait for fsspec's event loop, which hangs the
            # interpreter's exit once that loop has stopped.
            file._closed = True


def _open_sink(
    fs: SFTPFilesystem,
    path: str,
    *,
    action_id: str,
    attempt: int,
    fsync: bool,
    nonce: str | None = None,
) -> transfer.Sink:
    path = fs._strip_protocol(path)
    return SFTPSink(fs, path, transfer.temp_path(path, action_id, attempt, nonce))


transfer.register_sink(SFTPFilesystem, _open_sink)


# Transient errors ------------------------------------------------------------


def _is_transient(exc: BaseException) -> bool:
    # SFTPNoConnection is what a request on a connection that was already
    # closed raises, such as the next write of a copy after sshd died.
    return isinstance(
        exc,
        asyncssh.ConnectionLost
        | asyncssh.SFTPConnectionLost
        | asyncssh.SFTPNoConnection
        | asyncssh.DisconnectError
        | asyncssh.ChannelOpenError
        | BrokenPipeError,
    ) and not isinstance(exc, asyncssh.PermissionDenied)


retry.register_transient(_is_transient)


# The part target of large copies registers itself for SFTPFilesystem.
from journalq.backends import sftp_parts  # noqa: E402, F401
