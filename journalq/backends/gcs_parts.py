"""Large copies to GCS in journaled parts: one resumable upload session.

:class:`GCSPartTarget` is the :class:`journalq.parts.PartTarget` of
:class:`~journalq.backends.gcs.GCSFilesystem`. It speaks the JSON API's
resumable upload protocol through gcsfs's HTTP session; the session URI
is the journal's name for the parts (``upload``).

* Order: a session takes bytes only at the offset it has persisted, in
  chunks of a multiple of :data:`CHUNK_ALIGNMENT` but the last. So the
  engine's parts in flight are read in parallel but sent one after the
  other: each :meth:`~GCSPartTarget.write` waits for the part before it.
  The part size must be a multiple of :data:`CHUNK_ALIGNMENT`, else the
  file is copied in one piece.
* Last part: the object appears when the session receives its last byte.
  So the target keeps the unaligned end of the last part (less than
  256 KiB) in memory and sends it in :meth:`~GCSPartTarget.complete`,
  after the engine has checked that the source did not change. When the
  file size is a multiple of the alignment, an empty request finalizes
  the session instead.
* Resume: ``PUT`` with ``Content-Range: bytes */*`` returns ``308`` and
  the persisted range. A journaled part counts when it lies below the
  persisted offset; a part that only partly does is sent from that offset.
  A finalized session (``200``) means an earlier attempt completed the
  object. A session that expired (GCS keeps them a week) or was canceled
  (``404``, ``410``, ``499``) makes the factory return ``None``, and the
  file is copied in one piece.
* Metadata: the source's mtime (and the digest, when the caller passes
  it) is patched onto the object after it completes.

NOTE: buckets with a hierarchical namespace on zonal storage take
appendable uploads over gRPC instead; this target does not handle them.
"""

from __future__ import annotations

import errno
import logging
import sys
import threading
from typing import Any, Final
from urllib.parse import quote

from gcsfs.retry import HttpError

from journalq import faults, parts
from journalq.backends import objects
from journalq.backends.gcs import GCSFilesystem
from journalq.records import Part

__all__ = ["CHUNK_ALIGNMENT", "TURN_TIMEOUT", "GCSPartTarget"]

logger = logging.getLogger(__name__)

#: GCS takes every chunk of a session but the last in multiples of 256 KiB.
CHUNK_ALIGNMENT: Final = 256 * 1024
#: Seconds a part waits for the part before it while nothing is sent. The
#: engine may fail a part before its write begins, and the parts after it
#: would then wait forever. A part of 16 MiB read at 280 KB/s or faster
#: arrives within this.
TURN_TIMEOUT: Final = 60.0
#: Statuses of a session that no longer takes bytes: 404 and 410 for an
#: expired one, 499 for a canceled one.
GONE_STATUSES: Final = frozenset({404, 410, 499})


class GCSPartTarget(parts.PartTarget):
    """One resumable upload session of a large copy to GCS."""

    keeps_mtime = True

    def __init__(self, fs: GCSFilesystem, path: str, session: str) -> None:
        self.fs = fs
        self.path = fs._strip_protocol(path)
        self.upload = session
        #: Bytes the server had when this target was opened.
        self._resumed_at = 0
        #: Bytes the server has persisted, by its last response.
        self._persisted = 0
        #: The unaligned end of the last part: (offset, bytes), unsent.
        self._tail: tuple[int, bytes] | None = None
        self._completed = False
        self._failed: BaseException | None = None
        self._turn = threading.Condition()

    @classmethod
    def start(cls, fs: GCSFilesystem, path: str) -> GCSPartTarget:
        """Open a new resumable upload session for ``path``."""
        path = fs._strip_protocol(path)
        bucket, key, _ = fs.split_path(path)
        _, headers, _, _ = _request(
            fs,
            "POST",
            f"{fs._location}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
            json={"name": key},
            headers={"X-Upload-Content-Type": "application/octet-stream"},
            uploadType="resumable",
            name=key,
        )
        return cls(fs, path, headers["Location"])

    def probe(self) -> bool:
        """Ask the session how much it has; return whether it still exists.

        A session that an earlier attempt finalized counts as existing.
        """
        status, headers = self._put(b"", "bytes */*")
        if status in GONE_STATUSES:
            logger.warning(
                "the upload session of %s no longer exists (expired or canceled, "
                "status %d); copying the file in one piece",
                self.fs.url_of(self.path),
                status,
            )
            return False
        if status in (200, 201):
            logger.info(
                "the upload of %s was completed by an earlier attempt",
                self.fs.url_of(self.path),
            )
            self._completed = True
            # The finalized object contains every byte of every part.
            self._resumed_at = self._persisted = sys.maxsize
            return True
        self._resumed_at = self._persisted = _persisted_offset(headers)
        return True

    def recover(self, part: Part) -> bool:
        if part.offset + part.size <= self._resumed_at:
            return True
        logger.info(
            "part %d of %s is not all at the server; sending the rest again",
            part.number,
            self.fs.url_of(self.path),
        )
        return False

    def write(self, number: int, offset: int, data: bytes, checksum: str) -> Part:
        end = offset + len(data)
        with self._turn:
            self._wait_for_turn(number, offset)
            try:
                if self._persisted < end:
                    view = memoryview(data)[self._persisted - offset :]
                    self._send(view, self._persisted)
            except BaseException as exc:
                self._failed = exc
                raise
            finally:
                self._turn.notify_all()
        return Part(number, offset, len(data), checksum)

    def complete(
        self,
        parts: list[Part],
        mtime_ns: int | None,
        digest_string: str | None = None,
    ) -> None:
        if not self._completed:
            total = sum(part.size for part in parts)
            faults.point("parts.before_rename")
            self._finalize(total)
            self._completed = True
            faults.point("parts.after_complete")
        metadata = objects.metadata(digest_string, mtime_ns)
        if metadata:
            self.fs.setxattrs(self.path, **metadata)
        self.fs.invalidate_cache(self.path)
        logger.debug(
            "completed %s from %d parts", self.fs.url_of(self.path), len(parts)
        )

    def abort(self) -> None:
        self.interrupt()
        if self._completed:
            return
        try:
            _request(self.fs, "DELETE", self.upload)
        except FileNotFoundError:
            pass
        except (OSError, HttpError) as exc:
            # An abandoned session creates no object, and GCS drops it after
            # a week.
            logger.warning(
                "could not cancel the upload session of %s: %s",
                self.fs.url_of(self.path),
                exc,
            )

    def release(self) -> None:
        self.interrupt()

    def interrupt(self) -> None:
        """Make parts that wait for their turn fail at once."""
        with self._turn:
            if self._failed is None:
                self._failed = InterruptedError(
                    f"the copy to {self.fs.url_of(self.path)} stopped"
                )
            self._turn.notify_all()

    def _wait_for_turn(self, number: int, offset: int) -> None:
        """Wait, holding the lock, until the bytes before ``offset`` are sent."""
        while self._failed is None and self._persisted < offset:
            before = self._persisted
            if not self._turn.wait(TURN_TIMEOUT) and self._persisted == before:
                self._failed = TimeoutError(
                    errno.ETIMEDOUT,
                    f"part {number} of {self.fs.url_of(self.path)} waited "
                    f"{TURN_TIMEOUT:g} s for the part before it; an earlier part "
                    "failed or its source read stalled",
                )
        if self._failed is not None:
            raise OSError(
                f"part {number} of {self.fs.url_of(self.path)} was not sent: "
                f"{self._failed}"
            ) from self._failed

    def _send(self, view: memoryview, start: int) -> None:
        """Send ``view`` from offset ``start``, keeping an unaligned end back."""
        aligned = len(view) - len(view) % CHUNK_ALIGNMENT
        if aligned < len(view):
            self._tail = (start + aligned, bytes(view[aligned:]))
        end = start + aligned
        while self._persisted < end:
            chunk = view[self._persisted - start : aligned]
            first = self._persisted
            last = first + len(chunk) - 1
            status, headers = self._put(chunk, f"bytes {first}-{last}/*")
            self._check_status(status, first)
            persisted = _persisted_offset(headers)
            if persisted <= first:
                raise OSError(
                    errno.EIO,
                    f"the upload session of {self.fs.url_of(self.path)} took "
                    f"none of the bytes from offset {first}",
                )
            self._persisted = persisted

    def _finalize(self, total: int) -> None:
        """Send the kept end of the last part, or an empty last request."""
        start, data = self._tail if self._tail is not None else (total, b"")
        if self._persisted != start:
            raise OSError(
                errno.EIO,
                f"the upload session of {self.fs.url_of(self.path)} has "
                f"{self._persisted} bytes, expected {start} before the last ones",
            )
        span = f"{start}-{total - 1}" if data else "*"
        status, _ = self._put(data, f"bytes {span}/{total}")
        if status not in (200, 201):
            raise OSError(
                errno.EIO,
                f"the upload of {self.fs.url_of(self.path)} did not complete: "
                f"status {status} after its last {len(data)} bytes of {total}",
            )

    def _check_status(self, status: int, offset: int) -> None:
        if status in GONE_STATUSES:
            raise OSError(
                errno.ENOENT,
                f"the upload session of {self.fs.url_of(self.path)} no longer "
                f"exists (status {status}) at offset {offset}; retry the action",
            )
        if status != 308:
            raise OSError(
                errno.EIO,
                f"unexpected status {status} from the upload session of "
                f"{self.fs.url_of(self.path)} at offset {offset}",
            )

    def _put(self, data: bytes | memoryview, content_range: str) -> tuple[int, Any]:
        try:
            status, headers, _, _ = _request(
                self.fs,
                "PUT",
                self.upload,
                data=data,
                headers={"Content-Range": content_range},
            )
        except FileNotFoundError:
            return 404, {}
        except HttpError as exc:
            if exc.code in GONE_STATUSES:
                return exc.code, {}
            raise
        return status, headers


def _request(fs: GCSFilesystem, method: str, url: str, **kwargs: Any) -> Any:
    """Send one request through gcsfs, with its retries and credentials."""
    from fsspec.asyn import sync

    return sync(fs.loop, fs._request, method, url, **kwargs)


def _persisted_offset(headers: Any) -> int:
    """Return the bytes a ``308`` response's ``Range: bytes=0-N`` covers."""
    value = headers.get("Range") if headers else None
    if not value:
        return 0
    return int(value.rsplit("-", 1)[1]) + 1


def _open_target(
    fs: Any, path: str, action_id: str, upload: str | None, part_size: int
) -> GCSPartTarget | None:
    if upload is None:
        if part_size % CHUNK_ALIGNMENT:
            logger.info(
                "invalid part size %d for a GCS session, which needs a "
                "multiple of %d; copying %s in one piece",
                part_size,
                CHUNK_ALIGNMENT,
                fs.url_of(path),
            )
            return None
        return GCSPartTarget.start(fs, path)
    target = GCSPartTarget(fs, path, upload)
    # The executor opens a stale plan's target with part size 0, only to
    # abort it, so nothing is asked of the server then.
    if part_size == 0 or target.probe():
        return target
    raise parts.UploadGoneError(
        f"the upload of {path} that the journal names is gone; starting it over"
    )


parts.register_part_target(GCSFilesystem, _open_target)
