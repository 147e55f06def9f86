"""S3 through s3fs: object commits, digests in metadata, directory markers.

:class:`S3Filesystem` is s3fs's filesystem with what a transfer queue needs:

* Commit: :class:`S3Sink` writes the final key directly. A file of at most
  :data:`PART_SIZE` bytes is one ``PutObject``; a larger one is a multipart
  upload, completed on commit and aborted otherwise, so a reader never sees
  a partial object. With the storage option ``create_only=true`` a copy
  never replaces an existing object (``If-None-Match: *``) and fails with
  ``FileExistsError`` instead.
* Identity: a single-part object's ETag is the MD5 of its content and is
  reported as an ``md5`` digest; a multipart ETag (``"<hex>-<parts>"``) is
  not an MD5 and is ignored. Every upload stores journalq's xxh128 digest
  and the source's mtime as user metadata (``x-amz-meta-journalq-digest``,
  ``x-amz-meta-journalq-mtime-ns``), read back by :func:`stat`, so the
  checksum policy compares an object without downloading it. A PutObject
  sends them with the data. A multipart upload learns the digest only at
  its end, after its metadata was fixed, so the completed object is copied
  onto itself with them (:func:`replace_metadata`), which gives it a
  single-part ETag too.
* Large copies: files from the queue's part threshold on go in journaled
  parts to one multipart upload that a later attempt resumes
  (:mod:`journalq.backends.s3_parts`).
* Directories: S3 has none. A directory marker (a zero-byte key ending in
  ``/``) is listed as a directory by s3fs, never as a file. With
  ``directory_markers=true`` a mkdir creates one, so an empty directory
  survives a copy; without it a mkdir creates nothing and logs once that
  empty directories are skipped.
* Errors: a missing bucket, denied access and an unreachable endpoint name
  the URL and what to check; throttling, 5xx responses and dropped
  connections are transient for :mod:`journalq.retry`.

Memory per transfer is bounded: a read fetches at most
:data:`READ_BLOCK_SIZE` bytes ahead, and :class:`S3Sink` holds at most one
part of :data:`PART_SIZE` bytes plus the caller's chunk.
"""

from __future__ import annotations

import errno
import logging
from typing import Any, Final

import aiohttp
import botocore.exceptions
from fsspec.asyn import sync_wrapper
from s3fs import S3FileSystem

from journalq import compare, digest, faults, retry, transfer
from journalq.backends import objects

__all__ = [
    "COPY_LIMIT",
    "FILESYSTEM",
    "PART_SIZE",
    "READ_BLOCK_SIZE",
    "S3Filesystem",
    "S3Sink",
    "replace_metadata",
]

logger = logging.getLogger(__name__)

#: Bytes per part of a multipart upload, and the largest file sent in one
#: PutObject. S3 requires at least 5 MiB per part but the last; 8 MiB is
#: the part size of the AWS CLI, and allows files of up to 80 GB within
#: S3's 10,000 parts.
PART_SIZE: Final = 8 * 1024 * 1024
#: Bytes one read fetches ahead, instead of s3fs's 50 MiB default, so
#: that parallel transfers stay within a known amount of memory.
READ_BLOCK_SIZE: Final = 8 * 1024 * 1024

#: S3 allows 10,000 parts per upload.
MAX_PARTS: Final = 10_000
#: Largest object S3's ``CopyObject`` copies in one request; larger ones
#: need a multipart copy.
COPY_LIMIT: Final = 5 * 1024 * 1024 * 1024


class S3Filesystem(S3FileSystem):
    """s3fs with directory markers, clear errors and no-clobber uploads."""

    default_block_size = READ_BLOCK_SIZE
    #: A listing shows when each object was uploaded; the source's mtime
    #: is in the object's metadata (see :func:`objects.listed_mtimes`).
    mtime_in_metadata = True

    def __init__(
        self,
        *args: Any,
        directory_markers: bool = False,
        create_only: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.directory_markers = bool(directory_markers)
        self.create_only = bool(create_only)
        self._skipped_directories = False

    def url_of(self, path: str) -> str:
        return f"s3://{path}"

    async def _call_s3(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._call_s3(method, *args, **kwargs)
        except (FileNotFoundError, PermissionError) as exc:
            explained = objects.explain(self, exc, kwargs.get("Bucket"), "S3")
            if explained is exc:
                raise
            raise explained from exc
        except botocore.exceptions.BotoCoreError as exc:
            if not _is_connection_error(exc):
                raise
            endpoint = self.client_kwargs.get("endpoint_url") or self.endpoint_url
            raise ConnectionError(
                errno.ECONNREFUSED,
                f"cannot reach the S3 endpoint {endpoint or 'of AWS'} for bucket "
                f"{kwargs.get('Bucket')!r} ({exc}); check endpoint_url and that "
                "the server is running",
            ) from exc

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        if await super()._exists(path, **kwargs):
            return True
        bucket, key, _ = self.split_path(path)
        if key and not await super()._exists(bucket):
            raise objects.missing_bucket(self.url_of(bucket))
        return False

    exists = sync_wrapper(_exists)

    async def _info(self, path: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._info(path, *args, **kwargs)
        except objects.MissingBucketError:
            raise
        except FileNotFoundError as exc:
            # s3fs reports a bucket it cannot find as "Not Found".
            bucket, key, _ = self.split_path(path)
            if key:
                raise
            raise objects.missing_bucket(self.url_of(bucket)) from exc

    info = sync_wrapper(_info)

    async def _find(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return objects.without_markers(await super()._find(path, *args, **kwargs))

    async def _ls(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return objects.without_markers(await super()._ls(path, *args, **kwargs))

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        bucket, key, _ = self.split_path(path)
        if not key:
            await super()._makedirs(path, exist_ok=exist_ok)
            return
        if not self.directory_markers:
            objects.note_skipped_directory(self, path)
            return
        await self._call_s3(
            "put_object", Bucket=bucket, Key=key.rstrip("/") + "/", Body=b""
        )
        self.invalidate_cache(path)

    makedirs = sync_wrapper(_makedirs)

    async def _rmdir(self, path: str) -> None:
        bucket, key, _ = self.split_path(path)
        if not key:
            await super()._rmdir(path)
            return
        prefix = key.rstrip("/") + "/"
        listing = await self._call_s3(
            "list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=2
        )
        keys = [item["Key"] for item in listing.get("Contents", [])]
        objects.check_empty(self, bucket, prefix, keys)
        if prefix in keys:
            await self._call_s3("delete_object", Bucket=bucket, Key=prefix)
        self.invalidate_cache(path)

    rmdir = sync_wrapper(_rmdir)


FILESYSTEM: Final = S3Filesystem


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(
        exc,
        botocore.exceptions.ConnectionError
        | botocore.exceptions.HTTPClientError
        | botocore.exceptions.ConnectTimeoutError,
    )


# Identity --------------------------------------------------------------------


def etag_md5(etag: str | None) -> str | None:
    """Return the MD5 digest string an ETag is, or ``None`` if it is none.

    Only a single-part upload's ETag is an MD5: 32 hex digits in quotes. A
    multipart ETag has ``-<parts>`` appended, and an encrypted object's
    (SSE-KMS) is no MD5 either but cannot be told apart.
    NOTE: objects encrypted with SSE-KMS or SSE-C would be compared wrongly
    by their ETag; such buckets need the size or always policy.
    """
    if not etag:
        return None
    value = etag.strip('"').lower()
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        return None
    return f"md5:{value}"


def stat(fs: S3Filesystem, path: str) -> compare.FileInfo | None:
    """Return the size, mtime and reported digests of the object ``path``."""
    bucket, key, _ = fs.split_path(path)
    try:
        head = fs.call_s3("head_object", Bucket=bucket, Key=key) if key else None
    except FileNotFoundError:
        head = None
    if head is None:
        # No object by that name: a directory (a prefix or a marker), or
        # nothing at all.
        return compare.stat_generic(fs, path)
    metadata = head.get("Metadata") or {}
    etag = head.get("ETag")
    digests = [value for value in (etag_md5(etag),) if value]
    digests.extend(objects.metadata_digests(metadata))
    return compare.FileInfo(
        size=int(head["ContentLength"]),
        mtime_ns=objects.metadata_mtime(metadata)
        or compare.mtime_from_info({"LastModified": head["LastModified"]}),
        etag=etag,
        digests=tuple(digests),
        computable=(),
    )


compare.register_stat(S3Filesystem, stat)


def replace_metadata(
    fs: S3Filesystem,
    path: str,
    size: int,
    metadata: dict[str, str],
    etag: str | None = None,
) -> str | None:
    """Give the object ``path`` the user ``metadata`` by a copy onto itself.

    The copy sends no data from here. With ``etag`` it copies only the
    object with that ETag, so the metadata never describes content that
    another writer put there since. Returns the ETag of the copy, or
    ``None``, after logging, for an object larger than :data:`COPY_LIMIT`.
    NOTE: moto 5.2 ignores ``CopySourceIfMatch``, so the tests do not reach
    that condition. In a versioned bucket the copy adds a second version.
    """
    if size > COPY_LIMIT:
        logger.info(
            "s3://%s is larger than %d bytes, too large for CopyObject, so "
            "it keeps no mtime or digest metadata",
            path,
            COPY_LIMIT,
        )
        return None
    bucket, key, _ = fs.split_path(path)
    condition = {"CopySourceIfMatch": etag} if etag else {}
    copied = fs.call_s3(
        "copy_object",
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        MetadataDirective="REPLACE",
        Metadata=metadata,
        **condition,
    )
    return str(copied["CopyObjectResult"]["ETag"])


# Sink ------------------------------------------------------------------------


class S3Sink(transfer.Sink):
    """Writes one object: a PutObject, or a multipart upload for large files."""

    def __init__(self, fs: S3Filesystem, path: str) -> None:
        super().__init__(fs._strip_protocol(path))
        self.fs = fs
        self.bucket, self.key, _ = fs.split_path(self.path)
        self._buffer: bytearray | None = bytearray()
        self._hasher = digest.Hasher()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._size = 0

    def write(self, data: bytes | memoryview) -> None:
        buffer = self._require_open()
        self._hasher.update(data)
        self._size += len(data)
        buffer += data
        while len(buffer) > PART_SIZE:
            # A byte at least stays behind, so the last part, sent on
            # commit, is never empty.
            self._send_part(bytes(buffer[:PART_SIZE]))
            del buffer[:PART_SIZE]

    def commit(self, mtime_ns: int | None = None) -> None:
        buffer = self._require_open()
        faults.point("transfer.before_rename")
        etag = None
        try:
            if self._upload_id is None and len(buffer) <= PART_SIZE:
                self.etag = self._put(bytes(buffer), mtime_ns)
            else:
                self._send_part(bytes(buffer))
                etag = self._complete()
        except BaseException:
            self.abort()
            raise
        self._buffer = None
        self.committed = True
        if etag is not None:
            self.etag = self._store_metadata(mtime_ns, etag)
        self.fs.invalidate_cache(self.path)
        faults.point("transfer.after_rename")
        logger.debug("committed s3://%s", self.path)

    def abort(self) -> None:
        self._buffer = None
        if self._upload_id is None or self.committed:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            self.fs.call_s3(
                "abort_multipart_upload",
                Bucket=self.bucket,
                Key=self.key,
                UploadId=upload_id,
            )
        except (OSError, botocore.exceptions.BotoCoreError) as exc:
            # The incomplete upload is invisible to readers; a bucket
            # lifecycle rule removes its parts eventually.
            logger.warning(
                "could not abort the upload %s of s3://%s: %s",
                upload_id,
                self.path,
                exc,
            )

    def _put(self, data: bytes, mtime_ns: int | None) -> str | None:
        """Upload ``data`` in one PutObject; return the new object's ETag."""
        metadata = objects.metadata(self._hasher.digest_string(), mtime_ns)
        condition = {"IfNoneMatch": "*"} if self.fs.create_only else {}
        try:
            sent = self.fs.call_s3(
                "put_object",
                Bucket=self.bucket,
                Key=self.key,
                Body=data,
                Metadata=metadata,
                **condition,
            )
        except FileExistsError as exc:
            raise _exists_error(self.path) from exc
        return sent.get("ETag")

    def _send_part(self, data: bytes) -> None:
        if self._upload_id is None:
            started = self.fs.call_s3(
                "create_multipart_upload", Bucket=self.bucket, Key=self.key
            )
            self._upload_id = started["UploadId"]
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise OSError(
                errno.EFBIG,
                f"s3://{self.path} needs more than {MAX_PARTS} parts of "
                f"{PART_SIZE} bytes, more than S3 allows",
            )
        sent = self.fs.call_s3(
            "upload_part",
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
        )
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    def _complete(self) -> str:
        """Complete the multipart upload; return the object's ETag."""
        condition = {"IfNoneMatch": "*"} if self.fs.create_only else {}
        try:
            completed = self.fs.call_s3(
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
                **condition,
            )
        except FileExistsError as exc:
            raise _exists_error(self.path) from exc
        self._upload_id = None
        return completed["ETag"]

    def _store_metadata(self, mtime_ns: int | None, etag: str) -> str:
        """Give the completed multipart object the metadata a PutObject sends.

        Returns the object's ETag afterwards: the copy's, or ``etag`` when
        no copy was made. The object is committed by now, so a failed copy
        (credentials that may put objects but not read them, as CopyObject
        needs) is logged: the next checksum comparison then reads the
        object instead.
        """
        metadata = objects.metadata(self._hasher.digest_string(), mtime_ns)
        try:
            copied = replace_metadata(self.fs, self.path, self._size, metadata, etag)
        except (OSError, botocore.exceptions.BotoCoreError) as exc:
            logger.warning(
                "could not store the digest and mtime of s3://%s (%s); a "
                "checksum comparison reads the object instead",
                self.path,
                exc,
            )
            return etag
        return copied or etag

    def _require_open(self) -> bytearray:
        if self._buffer is None:
            raise ValueError(
                f"the sink for s3://{self.path} is already committed or aborted"
            )
        return self._buffer


def _exists_error(path: str) -> FileExistsError:
    return FileExistsError(
        errno.EEXIST,
        f"s3://{path} already exists and the destination has create_only=true, "
        "so it was not replaced; remove the option or the object",
        path,
    )


def _open_sink(
    fs: S3Filesystem,
    path: str,
    *,
    action_id: str,
    attempt: int,
    fsync: bool,
    nonce: str | None = None,
) -> transfer.Sink:
    return S3Sink(fs, path)


transfer.register_sink(S3Filesystem, _open_sink)


# Transient errors ------------------------------------------------------------


def _is_transient(exc: BaseException) -> bool:
    # s3fs turns InternalError and other 5xx responses into EREMOTEIO,
    # which would otherwise count as a permanent errno.
    if isinstance(exc, OSError) and exc.errno == errno.EREMOTEIO:
        return True
    # A connection that drops in the middle of a response body.
    if isinstance(exc, aiohttp.ClientPayloadError):
        return True
    return isinstance(exc, botocore.exceptions.BotoCoreError) and _is_connection_error(
        exc
    )


retry.register_transient(_is_transient)


# The part target of large copies registers itself for S3Filesystem.
from journalq.backends import s3_parts  # noqa: E402, F401
