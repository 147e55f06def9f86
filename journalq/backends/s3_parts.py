"""Large copies to S3 in journaled parts: one multipart upload per plan.

:class:`S3PartTarget` is the :class:`journalq.parts.PartTarget` of
:class:`~journalq.backends.s3.S3Filesystem`. s3fs's own multipart writes
abort the upload on any error and keep its id in memory, so a copy that
dies starts again from byte 0; this target works on the low-level client
instead, and the journal keeps the upload.

* Start: a new target first aborts every unfinished multipart upload of
  its key. The executor aborts the upload a stale plan names itself, so
  these are uploads whose attempt died after ``CreateMultipartUpload`` and
  before the plan was journaled.
  NOTE: an upload of the same key by another writer is aborted too.
  The upload's object gets the user metadata entry ``journalq-upload``, a
  random token. The journal's name for the parts (``upload``) is
  ``<token>.<upload id>``.
* Parts: ``UploadPart`` with ``Content-MD5``, part number ``number + 1``;
  the part's ETag goes into the journal.
* Resume: ``ListParts`` once. A journaled part counts when the server
  lists it with the journaled ETag and size; any other part is sent again.
  A part the journal lacks but the server lists with the ETag of its MD5
  (an attempt died between the upload and the record) is not sent again.
* Completion: ``CompleteMultipartUpload`` with the journaled list. A
  multipart upload's metadata is fixed when it starts, and the target
  learns the source's mtime and the digest only at the end. So a
  server-side ``CopyObject`` of the object onto itself then replaces its
  metadata with :data:`journalq.backends.objects.MTIME_KEY` and, when the
  caller passes it, the digest (:func:`journalq.backends.s3.replace_metadata`).
  The copy gets a single-part ETag, the MD5 of its content unless the
  bucket encrypts with KMS (moto 5.2 does the same), which
  :func:`journalq.backends.s3.stat` reports as an ``md5`` digest.
  NOTE: objects larger than :data:`COPY_LIMIT` keep no metadata, so a
  ``size+mtime`` comparison copies them again.
* An upload that completed before the attempt died is recognized by its
  object's token and is not sent again. An upload that no longer exists
  otherwise (aborted, or removed by a lifecycle rule) makes the factory
  return ``None``, and the file is copied in one piece.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from typing import Any, Final

import botocore.exceptions

from journalq import faults, parts
from journalq.backends import objects
from journalq.backends.s3 import COPY_LIMIT, S3Filesystem, replace_metadata
from journalq.records import Part

__all__ = ["COPY_LIMIT", "MIN_PART_SIZE", "S3PartTarget"]

logger = logging.getLogger(__name__)

#: S3's minimum size of every part but the last: a multipart upload with a
#: smaller part fails on completion. A plan with smaller parts is copied in
#: one piece instead.
MIN_PART_SIZE: Final = 5 * 1024 * 1024


class S3PartTarget(parts.PartTarget):
    """One multipart upload of a large copy to S3."""

    def __init__(self, fs: S3Filesystem, path: str, token: str, upload_id: str) -> None:
        self.fs = fs
        self.path = fs._strip_protocol(path)
        self.bucket, self.key, _ = fs.split_path(self.path)
        self.token = token
        self.upload_id = upload_id
        self.upload = f"{token}.{upload_id}"
        self.keeps_mtime = False
        #: The parts the server lists: S3 part number -> (ETag, size).
        self._listed: dict[int, tuple[str, int]] = {}
        #: Whether the upload was completed by an earlier attempt.
        self._completed = False

    @classmethod
    def start(cls, fs: S3Filesystem, path: str) -> S3PartTarget:
        """Abort the key's unfinished uploads and create a new one."""
        bucket, key, _ = fs.split_path(fs._strip_protocol(path))
        _abort_unjournaled(fs, bucket, key)
        token = secrets.token_hex(8)
        created = fs.call_s3(
            "create_multipart_upload",
            Bucket=bucket,
            Key=key,
            Metadata={objects.UPLOAD_KEY: token},
        )
        faults.point("s3.upload_created")
        return cls(fs, path, token, created["UploadId"])

    def probe(self) -> bool:
        """Learn which parts the server has; return whether the upload exists.

        An upload that an earlier attempt completed counts as existing.
        """
        try:
            self._listed = self._list_parts()
            return True
        except FileNotFoundError:
            pass
        if self._object_token() == self.token:
            logger.info(
                "the upload %s of s3://%s was completed by an earlier attempt",
                self.upload_id,
                self.path,
            )
            self._completed = True
            return True
        logger.warning(
            "the multipart upload %s of s3://%s no longer exists (aborted, or "
            "removed by a lifecycle rule); copying the file in one piece",
            self.upload_id,
            self.path,
        )
        return False

    def recover(self, part: Part) -> bool:
        if self._completed:
            return True
        if self._listed.get(part.number + 1) == (part.etag, part.size):
            return True
        logger.info(
            "part %d of s3://%s is missing or differs on the server; sending it again",
            part.number,
            self.path,
        )
        return False

    def write(self, number: int, offset: int, data: bytes, checksum: str) -> Part:
        if self._completed:
            # The completed object of this plan contains every part.
            return Part(number, offset, len(data), checksum)
        md5 = hashlib.md5(data, usedforsecurity=False)
        etag = f'"{md5.hexdigest()}"'
        if self._listed.get(number + 1) == (etag, len(data)):
            # Sent by an attempt that died before it journaled the part.
            return Part(number, offset, len(data), checksum, etag)
        sent = self.fs.call_s3(
            "upload_part",
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number + 1,
            Body=data,
            ContentMD5=base64.b64encode(md5.digest()).decode("ascii"),
        )
        return Part(number, offset, len(data), checksum, sent["ETag"])

    def complete(
        self,
        parts: list[Part],
        mtime_ns: int | None,
        digest_string: str | None = None,
    ) -> None:
        if not self._completed:
            faults.point("parts.before_rename")
            self._complete_upload(parts)
            self._completed = True
            faults.point("parts.after_complete")
        size = sum(part.size for part in parts)
        self._replace_metadata(size, objects.metadata(digest_string, mtime_ns))
        self.fs.invalidate_cache(self.path)
        logger.debug("completed s3://%s from %d parts", self.path, len(parts))

    def abort(self) -> None:
        if self._completed:
            return
        try:
            self.fs.call_s3(
                "abort_multipart_upload",
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
            )
        except FileNotFoundError:
            pass
        except (OSError, botocore.exceptions.BotoCoreError) as exc:
            # The unfinished upload is invisible to readers; the next new
            # target of this key aborts it, or a lifecycle rule does.
            logger.warning(
                "could not abort the upload %s of s3://%s: %s",
                self.upload_id,
                self.path,
                exc,
            )

    def _list_parts(self) -> dict[int, tuple[str, int]]:
        listed: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            page = self.fs.call_s3(
                "list_parts",
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumberMarker=marker,
            )
            for entry in page.get("Parts", []):
                listed[entry["PartNumber"]] = (entry["ETag"], int(entry["Size"]))
            if not page.get("IsTruncated"):
                return listed
            marker = page["NextPartNumberMarker"]

    def _object_token(self) -> str | None:
        head = self._head()
        return (head or {}).get("Metadata", {}).get(objects.UPLOAD_KEY)

    def _head(self) -> dict[str, Any] | None:
        try:
            return self.fs.call_s3("head_object", Bucket=self.bucket, Key=self.key)
        except FileNotFoundError:
            return None

    def _complete_upload(self, parts: list[Part]) -> None:
        condition = {"IfNoneMatch": "*"} if self.fs.create_only else {}
        listing = [{"PartNumber": part.number + 1, "ETag": part.etag} for part in parts]
        try:
            self.fs.call_s3(
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": listing},
                **condition,
            )
        except FileExistsError as exc:
            self.abort()
            raise FileExistsError(
                f"s3://{self.path} already exists and the destination has "
                "create_only=true, so it was not replaced; remove the option or "
                "the object"
            ) from exc

    def _replace_metadata(self, size: int, metadata: dict[str, str]) -> None:
        """Give the completed object ``metadata`` with a copy onto itself.

        Sets :attr:`etag` when the object is known to carry ``metadata``'s
        digest: by the copy's response, or by a stat that shows it.
        """
        head = self._head() or {}
        if all(head.get("Metadata", {}).get(k) == v for k, v in metadata.items()):
            # An earlier attempt copied it before it died.
            self.keeps_mtime = objects.MTIME_KEY in metadata
            if objects.DIGEST_KEY in metadata:
                self.etag = head.get("ETag")
            return
        metadata = {objects.UPLOAD_KEY: self.token, **metadata}
        copied = replace_metadata(self.fs, self.path, size, metadata, head.get("ETag"))
        if copied is not None:
            self.keeps_mtime = objects.MTIME_KEY in metadata
            self.etag = copied if objects.DIGEST_KEY in metadata else None


def _abort_unjournaled(fs: S3Filesystem, bucket: str, key: str) -> None:
    """Abort every unfinished multipart upload of exactly ``key``."""
    markers: dict[str, str] = {}
    aborted = 0
    while True:
        page = fs.call_s3(
            "list_multipart_uploads", Bucket=bucket, Prefix=key, **markers
        )
        for upload in page.get("Uploads", []):
            if upload["Key"] != key:
                continue
            try:
                fs.call_s3(
                    "abort_multipart_upload",
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload["UploadId"],
                )
            except FileNotFoundError:
                continue
            aborted += 1
        if not page.get("IsTruncated"):
            break
        markers = {
            "KeyMarker": page["NextKeyMarker"],
            "UploadIdMarker": page["NextUploadIdMarker"],
        }
    if aborted:
        logger.info(
            "aborted %d unfinished multipart upload(s) of s3://%s/%s that no "
            "journal names",
            aborted,
            bucket,
            key,
        )


def _open_target(
    fs: Any, path: str, action_id: str, upload: str | None, part_size: int
) -> S3PartTarget | None:
    if upload is None:
        if part_size < MIN_PART_SIZE:
            logger.info(
                "parts of %d bytes are below S3's minimum of %d; copying "
                "s3://%s in one piece",
                part_size,
                MIN_PART_SIZE,
                path,
            )
            return None
        return S3PartTarget.start(fs, path)
    token, _, upload_id = upload.partition(".")
    target = S3PartTarget(fs, path, token, upload_id)
    # The executor opens a stale plan's target with part size 0, only to
    # abort it, so nothing is asked of the server then.
    if part_size == 0 or target.probe():
        return target
    raise parts.UploadGoneError(
        f"the upload of {path} that the journal names is gone; starting it over"
    )


parts.register_part_target(S3Filesystem, _open_target)
