"""Google Cloud Storage through gcsfs: object commits and reported digests.

:class:`GCSFilesystem` is gcsfs's filesystem with what a transfer queue
needs:

* Commit: :class:`GCSSink` writes the final object directly. A file of at
  most :data:`PART_SIZE` bytes is one upload; a larger one is a resumable
  upload in parts of that size, which GCS makes visible only when it
  completes and which is canceled on abort.
* Identity: GCS reports ``md5Hash`` (absent on composite objects) and
  ``crc32c`` of every object, both base64 of the big-endian bytes, and
  :func:`stat` reports them as ``md5`` and ``crc32c`` digests. journalq
  also stores its xxh128 digest and the source's mtime as object metadata
  (see :mod:`journalq.backends.objects`): with a one-request upload, or by
  patching the metadata right after a resumable one. :func:`stat` reports
  the object's generation as its ETag: GCS gives every new content of a
  name a new generation, while the JSON API's ``etag`` also changes when
  only the metadata does. So a copy in parts from GCS starts over when the
  object is replaced, even by one with the same size and mtime.
* Large copies: files from the queue's part threshold on go in journaled
  parts to one resumable upload session that a later attempt resumes
  (:mod:`journalq.backends.gcs_parts`).
* Directories and errors follow the S3 rules: ``directory_markers=true``
  keeps empty directories as zero-byte ``dir/`` objects, markers are never
  files, a missing bucket or a denied request names the bucket, and 429
  and 5xx responses and dropped connections are transient.

Memory per transfer is bounded: a read fetches at most
:data:`READ_BLOCK_SIZE` bytes ahead, and :class:`GCSSink` holds at most one
part of :data:`PART_SIZE` bytes plus the caller's chunk.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Any, Final

import aiohttp
from fsspec.asyn import sync_wrapper
from gcsfs import GCSFileSystem
from gcsfs.retry import HttpError

from journalq import compare, digest, faults, retry, transfer
from journalq.backends import objects

__all__ = ["FILESYSTEM", "PART_SIZE", "READ_BLOCK_SIZE", "GCSFilesystem", "GCSSink"]

logger = logging.getLogger(__name__)

#: Bytes per part of a resumable upload, and the largest file sent in one
#: request. GCS wants parts in multiples of 256 KiB; 8 MiB is the
#: multiple the S3 backend uses for its parts too.
PART_SIZE: Final = 8 * 1024 * 1024
#: Bytes one read fetches ahead (gcsfs's default is 5 MiB).
READ_BLOCK_SIZE: Final = 8 * 1024 * 1024

#: HTTP statuses after which the same request may succeed.
TRANSIENT_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})


class GCSFilesystem(GCSFileSystem):
    """gcsfs with directory markers and clear errors."""

    default_block_size = READ_BLOCK_SIZE
    #: A listing shows when each object was uploaded; the source's mtime
    #: is in the object's metadata (see :func:`objects.listed_mtimes`).
    mtime_in_metadata = True

    def __init__(self, *args: Any, directory_markers: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.directory_markers = bool(directory_markers)
        self._skipped_directories = False

    def url_of(self, path: str) -> str:
        return f"gcs://{path}"

    async def _call(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._call(method, path, *args, **kwargs)
        except (FileNotFoundError, PermissionError) as exc:
            bucket = _bucket_of(path, args)
            listed = _listed_bucket(path, args)
            if isinstance(exc, FileNotFoundError) and listed is not None:
                # Listing or uploading into a bucket's objects found no
                # bucket, because no object name was asked for.
                raise objects.missing_bucket(self.url_of(listed)) from exc
            explained = objects.explain(self, exc, bucket, "GCS")
            if explained is exc:
                raise
            raise explained from exc
        except aiohttp.ClientConnectionError as exc:
            raise ConnectionError(
                f"cannot reach the GCS endpoint {self._endpoint} ({exc}); check "
                "endpoint_url (or STORAGE_EMULATOR_HOST) and the network"
            ) from exc

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        if await super()._exists(path, **kwargs):
            return True
        bucket, key, _ = self.split_path(path)
        if key and not await super()._exists(bucket):
            raise objects.missing_bucket(self.url_of(bucket))
        return False

    exists = sync_wrapper(_exists)

    async def _find(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return objects.without_markers(await super()._find(path, *args, **kwargs))

    async def _ls(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return objects.without_markers(await super()._ls(path, *args, **kwargs))

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        bucket, key, _ = self.split_path(path)
        if not key:
            await self._mkdir(bucket, create_parents=True)
            return
        if not self.directory_markers:
            objects.note_skipped_directory(self, path)
            return
        await self._pipe_file(f"{bucket}/{key.rstrip('/')}/", b"")

    makedirs = sync_wrapper(_makedirs)

    async def _rmdir(self, path: str) -> None:
        bucket, key, _ = self.split_path(path)
        if not key:
            await super()._rmdir(bucket)
            return
        prefix = key.rstrip("/") + "/"
        self.invalidate_cache(path)
        found = await super()._find(f"{bucket}/{prefix}", maxdepth=None)
        keys = [name.split("/", 1)[1] for name in found]
        marker = f"{bucket}/{prefix}"
        try:
            exists = await self._info(marker)
        except FileNotFoundError:
            exists = None
        if exists is not None and prefix not in keys:
            keys.append(prefix)
        objects.check_empty(self, bucket, prefix, keys)
        if exists is not None:
            await self._rm_file(marker)
        self.invalidate_cache(path)

    rmdir = sync_wrapper(_rmdir)


FILESYSTEM: Final = GCSFilesystem


def _bucket_of(path: str, args: tuple[Any, ...]) -> str | None:
    # gcsfs calls _call("GET", "b/{}/o/{}", bucket, key): the bucket is the
    # first argument after a path template that starts with "b/".
    if path.startswith("b/") and args:
        return str(args[0])
    return None


_OBJECTS_OF: Final = re.compile(r"(?:^|/)b/(?P<bucket>[^/]+)/o$")


def _listed_bucket(path: str, args: tuple[Any, ...]) -> str | None:
    """Return the bucket whose object collection ``path`` addresses, if any."""
    if path in ("b/{}", "b/{}/o") and args:
        return str(args[0])
    match = _OBJECTS_OF.search(path)
    return match["bucket"] if match else None


# Identity --------------------------------------------------------------------


def _base64_hex(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def reported_digests(info: dict[str, Any]) -> tuple[str, ...]:
    """Return the digest strings in a gcsfs ``info()`` of an object."""
    found = []
    for key, algorithm in (("md5Hash", "md5"), ("crc32c", "crc32c")):
        hex_digits = _base64_hex(info.get(key))
        if hex_digits is not None:
            found.append(f"{algorithm}:{hex_digits}")
    found.extend(objects.metadata_digests(info.get("metadata") or {}))
    return tuple(found)


def stat(fs: GCSFilesystem, path: str) -> compare.FileInfo | None:
    """Return the size, mtime and reported digests of the object ``path``."""
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    if info["type"] == "directory":
        raise IsADirectoryError(f"{fs.url_of(path)} is a directory, not a file")
    metadata = info.get("metadata") or {}
    return compare.FileInfo(
        size=int(info["size"]),
        mtime_ns=objects.metadata_mtime(metadata) or compare.mtime_from_info(info),
        etag=_generation(info),
        digests=reported_digests(info),
        computable=(),
    )


def _generation(info: dict[str, Any]) -> str | None:
    generation = info.get("generation")
    return str(generation) if generation else info.get("etag")


compare.register_stat(GCSFilesystem, stat)


# Sink ------------------------------------------------------------------------


class GCSSink(transfer.Sink):
    """Writes one object: a single upload, or a resumable one for large files."""

    def __init__(self, fs: GCSFilesystem, path: str) -> None:
        super().__init__(fs._strip_protocol(path))
        self.fs = fs
        self._buffer: bytearray | None = bytearray()
        self._hasher = digest.Hasher()
        self._file: Any = None

    def write(self, data: bytes | memoryview) -> None:
        buffer = self._require_open()
        self._hasher.update(data)
        if self._file is not None:
            # The file object sends whole parts and keeps the remainder.
            self._file.write(data)
            return
        buffer += data
        if len(buffer) > PART_SIZE:
            self._file = self.fs.open(self.path, "wb", block_size=PART_SIZE)
            self._file.write(bytes(buffer))
            buffer.clear()

    def commit(self, mtime_ns: int | None = None) -> None:
        buffer = self._require_open()
        metadata = objects.metadata(self._hasher.digest_string(), mtime_ns)
        faults.point("transfer.before_rename")
        try:
            if self._file is None:
                uploaded = self.fs.pipe_file(
                    self.path, bytes(buffer), metadata=metadata
                )
                # gcsfs returns the new object's resource for a one-request
                # upload, and its generation is the ETag journalq compares.
                if isinstance(uploaded, dict):
                    self.etag = _generation(uploaded)
            else:
                # NOTE: neither the resumable upload nor setxattrs returns
                # the generation, so the etag stays None and the next sync
                # compares this object once before its listing decides it.
                self._file.write(bytes(buffer))
                self._file.close()
                self._file = None
                self.fs.setxattrs(self.path, **metadata)
        except BaseException:
            self.abort()
            raise
        self._buffer = None
        self.committed = True
        faults.point("transfer.after_rename")
        logger.debug("committed %s", self.fs.url_of(self.path))

    def abort(self) -> None:
        self._buffer = None
        file, self._file = self._file, None
        if file is None or self.committed:
            return
        try:
            file.discard()
        except (OSError, HttpError) as exc:
            logger.warning(
                "could not cancel the upload of %s: %s", self.fs.url_of(self.path), exc
            )

    def _require_open(self) -> bytearray:
        if self._buffer is None:
            raise ValueError(
                f"the sink for {self.fs.url_of(self.path)} is already committed "
                "or aborted"
            )
        return self._buffer


def _open_sink(
    fs: GCSFilesystem,
    path: str,
    *,
    action_id: str,
    attempt: int,
    fsync: bool,
    nonce: str | None = None,
) -> transfer.Sink:
    return GCSSink(fs, path)


transfer.register_sink(GCSFilesystem, _open_sink)


# Transient errors ------------------------------------------------------------


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, HttpError):
        return exc.code in TRANSIENT_STATUSES
    return isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ServerTimeoutError)


retry.register_transient(_is_transient)


# The part target of large copies registers itself for GCSFilesystem.
from journalq.backends import gcs_parts  # noqa: E402, F401
