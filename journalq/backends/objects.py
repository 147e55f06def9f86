"""What S3 and GCS share: digest metadata, directory rules and error texts.

journalq stores two user metadata entries on each object it uploads:
``journalq-digest`` (its digest string, ``"xxh128:<hex>"``, or part-wise
for a large file: see :mod:`journalq.digest`) and
``journalq-mtime-ns`` (the source file's mtime in nanoseconds), so a later
run can compare content and mtimes without downloading the object. An
upload in one request sends them with the data; an upload in parts adds
them once it completes. An object uploaded in journaled parts also carries
``journalq-upload``, a random token of that upload, by which a later
attempt recognizes an upload that completed just before a crash.

An object store has no directories. Without directory markers a mkdir
creates nothing, and the executor records it as skipped with the method
:data:`NO_DIRECTORIES`.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping
from typing import Any, Final

from journalq import digest

__all__ = [
    "DIGEST_KEY",
    "MTIME_KEY",
    "NO_DIRECTORIES",
    "UPLOAD_KEY",
    "MissingBucketError",
    "check_empty",
    "explain",
    "listed_mtimes",
    "metadata",
    "metadata_digests",
    "metadata_mtime",
    "missing_bucket",
    "note_skipped_directory",
    "skips_directory",
    "without_markers",
]

logger = logging.getLogger(__name__)

DIGEST_KEY: Final = "journalq-digest"
MTIME_KEY: Final = "journalq-mtime-ns"
UPLOAD_KEY: Final = "journalq-upload"
#: The method of a completed mkdir that created nothing, because the object
#: store has no directories and its filesystem writes no markers.
NO_DIRECTORIES: Final = "no-directories"


def metadata(digest_string: str | None, mtime_ns: int | None) -> dict[str, str]:
    """Return the user metadata journalq stores on an uploaded object."""
    entries = {DIGEST_KEY: digest_string} if digest_string is not None else {}
    if mtime_ns is not None:
        entries[MTIME_KEY] = str(mtime_ns)
    return entries


def metadata_digests(entries: Mapping[str, Any]) -> list[str]:
    """Return the digest journalq stored in ``entries``, if it is valid."""
    value = entries.get(DIGEST_KEY)
    if not isinstance(value, str):
        return []
    try:
        algorithm, _ = digest.split_digest(value)
    except ValueError:
        return []
    return [value] if digest.is_algorithm(algorithm) else []


def metadata_mtime(entries: Mapping[str, Any]) -> int | None:
    """Return the source mtime journalq stored in ``entries``, if any."""
    value = entries.get(MTIME_KEY)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def listed_mtimes(fs: Any) -> bool:
    """Return whether a listing of ``fs`` shows the mtimes journalq gave files.

    False on journalq's S3 and GCS filesystems, whose listings show when
    each object was uploaded, while journalq keeps the source's mtime in
    the object's metadata, which only a request per object returns.
    """
    return not getattr(fs, "mtime_in_metadata", False)


def skips_directory(fs: Any, path: str) -> bool:
    """Return whether a mkdir of ``path`` on ``fs`` creates nothing.

    True on journalq's S3 and GCS filesystems without
    ``directory_markers=true``, for a path below a bucket; a mkdir of a
    bucket creates the bucket. False on every other filesystem.
    """
    if getattr(fs, "directory_markers", True):
        return False
    _, key, _ = fs.split_path(path)
    return bool(key)


def note_skipped_directory(fs: Any, path: str) -> None:
    """Log, once per filesystem, that mkdir creates nothing on object stores."""
    if getattr(fs, "_skipped_directories", True):
        logger.debug("no directory created for %s", fs.url_of(path))
        return
    fs._skipped_directories = True
    logger.warning(
        "skipped creating the directory %s: object stores have no "
        "directories, so empty ones are not copied; set the storage option "
        "directory_markers=true to keep them as zero-byte marker objects",
        fs.url_of(path),
    )


def check_empty(fs: Any, bucket: str, prefix: str, keys: list[str]) -> None:
    """Raise ``OSError(ENOTEMPTY)`` when objects other than a marker remain."""
    others = [key for key in keys if key != prefix]
    if others:
        url = fs.url_of(f"{bucket}/{prefix}")
        raise OSError(
            errno.ENOTEMPTY,
            f"directory not empty: {url} still contains "
            f"{fs.url_of(bucket + '/' + others[0])}; delete it recursively",
            url,
        )


def explain(fs: Any, exc: OSError, bucket: str | None, service: str) -> OSError:
    """Return ``exc`` with a message naming the bucket and what to check.

    The type stays the same, because the filesystem code above relies on
    ``FileNotFoundError`` for a missing object.
    """
    text = str(exc)
    where = fs.url_of(bucket) if bucket else f"the {service} service"
    if isinstance(exc, PermissionError):
        return PermissionError(
            errno.EACCES,
            f"access to {where} was denied ({text}); check the credentials "
            "(the key and secret or token options, or the environment and "
            "config files of the SDK) and the bucket's permissions",
            where,
        )
    if bucket and "bucket" in text.lower() and "not exist" in text.lower():
        return missing_bucket(where)
    return exc


class MissingBucketError(FileNotFoundError):
    """The bucket of a path does not exist (a path in it may never)."""


def missing_bucket(url: str) -> FileNotFoundError:
    """Build the error for a bucket that does not exist."""
    return MissingBucketError(
        errno.ENOENT,
        f"the bucket {url} does not exist; create it or fix the bucket name in the URL",
        url,
    )


def without_markers(found: Any) -> Any:
    """Drop directory markers (keys ending in ``/``) from a find or ls result.

    The listing already has the directory itself as an entry, so a marker
    would only add a file whose name ends in ``/``.
    """
    if isinstance(found, dict):
        return {name: info for name, info in found.items() if not name.endswith("/")}
    return [
        entry
        for entry in found
        if not (entry["name"] if isinstance(entry, dict) else entry).endswith("/")
    ]
