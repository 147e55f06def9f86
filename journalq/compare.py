"""Deciding whether a destination file is already identical to its source.

fsspec's ``checksum()`` and ``ukey()`` are not content hashes (the base
version hashes the ``info()`` dict, which includes the mtime on a local
disk), so journalq never uses them. It compares what it reads itself:

1. destination missing: copy;
2. policy ``always``: copy;
3. sizes differ: copy;
4. policy ``size``: skip;
5. policy ``size+mtime``: skip when the mtimes are within
   :data:`MODIFY_WINDOW_NS`;
6. policy ``checksum``: skip when the content digests are equal.

The :class:`Decision` names the rule that decided in ``method``, which the
executor writes into the journal's ``Completed`` record.

Under ``checksum`` the two sides must be hashed with one algorithm, and
each backend offers some for less than a download: S3 reports the md5 of
a single-part object as its ETag, GCS reports ``md5Hash`` and
``crc32c``, objects journalq uploaded carry its xxh128 digest in their
metadata, an SFTP server with a shell runs ``sha256sum`` or ``md5sum``,
and a local or memory file is read at disk speed. :func:`decide` picks the
algorithm both sides offer most cheaply (see :func:`choose_algorithm`).
When they share none, it reads the content of the side that reports
nothing, with the default algorithm, and logs that once per pair of
filesystems: the ``checksum`` policy compares content, so it never falls
back to sizes alone.
"""

from __future__ import annotations

import datetime
import logging
import os
import stat as stat_module
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

import fsspec
import msgspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from journalq import digest
from journalq.policy import Policy
from journalq.records import Digested, Identity

__all__ = [
    "MODIFY_WINDOW_NS",
    "MTIME_GUARD_NS",
    "Decision",
    "DigestCache",
    "FileInfo",
    "MemoryDigestCache",
    "Policy",
    "cached_digest",
    "choose_algorithm",
    "decide",
    "etag_matches",
    "is_trusted",
    "listed_info",
    "mtimes_match",
    "register_stat",
    "stat",
    "stat_generic",
]

#: Minimum age of a file's mtime, relative to when the file was read, for
#: its digest to be cached. FAT stores mtimes in 2 s steps, ext3 and HFS+ in
#: 1 s steps, so a file changed up to 2 s after its recorded mtime can keep
#: the same mtime and size. A digest read within that window could describe
#: content that no longer exists.
MTIME_GUARD_NS: Final = 2_000_000_000

#: Largest mtime difference that ``size+mtime`` still counts as equal, like
#: rsync's ``--modify-window``. 1 s covers destinations that keep whole
#: seconds (SFTP protocol version 3, ext3, HFS+). journalq sets the mtime of
#: every local copy to the source's, so local copies match exactly.
#: NOTE: FAT rounds to 2 s, so a copy onto FAT can differ by up to 2 s and
#: is copied again on every run under this policy.
MODIFY_WINDOW_NS: Final = 1_000_000_000

#: Algorithms in the order :func:`choose_algorithm` prefers them when two
#: cost the same: xxh128 is the fastest to compute, sha256 and md5 are the
#: ones SFTP servers and S3 report, crc32c (32 bits) is the weakest.
PREFERENCE: Final = ("xxh128", "sha256", "md5", "crc32c")

#: Relative costs of a digest: reported with the stat, computed where the
#: file is (local disk, remote shell), or read across the network.
_REPORTED: Final = 0
_COMPUTED: Final = 1
_DOWNLOADED: Final = 100

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """Size, modification time and ETag of one file, as its backend reports.

    ``mtime_ns`` is ``None`` for a backend that reports no modification time.
    ``digests`` are digest strings the backend reported with the stat.
    ``computable`` names the algorithms the backend computes where the file
    is, without sending its content; ``None`` means reading the content is
    cheap (a local disk, memory), so every algorithm is. ``ctime_ns`` and
    ``inode`` are set for local files only (see
    :class:`~journalq.records.Digested`).
    """

    size: int
    mtime_ns: int | None
    etag: str | None = None
    digests: tuple[str, ...] = ()
    computable: tuple[str, ...] | None = None
    ctime_ns: int | None = None
    inode: int | None = None

    def reported(self, algorithm: str) -> str | None:
        """Return the reported digest of ``algorithm``, if there is one."""
        prefix = f"{algorithm}:"
        for value in self.digests:
            if value.startswith(prefix):
                return value
        return None

    def cost(self, algorithm: str) -> int:
        """Return the relative cost of this file's digest in ``algorithm``."""
        if self.reported(algorithm) is not None:
            return _REPORTED
        if self.computable is None or algorithm in self.computable:
            return _COMPUTED
        return _DOWNLOADED


def listed_info(
    entry: tuple[int, int | None] | tuple[int, int | None, int, int],
) -> FileInfo:
    """Return the :class:`FileInfo` of a listing entry (see ``plan.Entry``)."""
    if len(entry) == 4:
        size, mtime_ns, ctime_ns, inode = entry
        return FileInfo(size, mtime_ns, ctime_ns=ctime_ns, inode=inode)
    return FileInfo(entry[0], entry[1])


# Stat ------------------------------------------------------------------------

StatFunction = Callable[[fsspec.AbstractFileSystem, str], "FileInfo | None"]

_stat_functions: dict[type, StatFunction] = {}


def register_stat(fs_type: type, function: StatFunction) -> None:
    """Use ``function`` to stat files on ``fs_type`` and its subclasses.

    A backend registers one when its ``info()`` keys differ from the ones
    :func:`stat` already reads, or when it has a cheaper call.
    """
    _stat_functions[fs_type] = function


def stat(fs: fsspec.AbstractFileSystem, path: str) -> FileInfo | None:
    """Return what ``fs`` reports about the file at ``path``.

    Returns ``None`` when nothing exists there. Raises ``IsADirectoryError``
    for a directory and ``FileNotFoundError`` naming the link for a symbolic
    link whose target is missing.
    """
    for fs_type in type(fs).__mro__:
        function = _stat_functions.get(fs_type)
        if function is not None:
            return function(fs, path)
    return stat_generic(fs, path)


def _stat_local(fs: fsspec.AbstractFileSystem, path: str) -> FileInfo | None:
    path = digest.local_path(path)
    try:
        result = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise digest.dangling_link_error(path) from None
        return None
    if stat_module.S_ISDIR(result.st_mode):
        raise IsADirectoryError(f"{path} is a directory, not a file")
    return FileInfo(
        size=result.st_size,
        mtime_ns=result.st_mtime_ns,
        ctime_ns=result.st_ctime_ns,
        inode=result.st_ino,
    )


def _stat_memory(fs: fsspec.AbstractFileSystem, path: str) -> FileInfo | None:
    info = _info_or_none(fs, path)
    if info is None:
        return None
    return FileInfo(size=info["size"], mtime_ns=_to_ns(fs.modified(path)))


def stat_generic(fs: fsspec.AbstractFileSystem, path: str) -> FileInfo | None:
    """Stat ``path`` through ``fs.info()``, for backends without a function."""
    info = _info_or_none(fs, path)
    if info is None:
        return None
    # Reading a file of a filesystem journalq has no rules for may mean a
    # download, so no algorithm counts as cheap there.
    return FileInfo(
        size=int(info["size"]),
        mtime_ns=mtime_from_info(info),
        etag=info.get("ETag") or info.get("etag"),
        computable=(),
    )


def _info_or_none(fs: fsspec.AbstractFileSystem, path: str) -> dict | None:
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    if info["type"] == "directory":
        raise IsADirectoryError(f"{path} is a directory, not a file")
    return info


def mtime_from_info(info: dict) -> int | None:
    """Return the mtime in an fsspec ``info()`` dict, in nanoseconds."""
    # Local and SFTP report "mtime" in seconds, s3fs "LastModified" as a
    # datetime, gcsfs "updated" as an ISO 8601 string.
    for key in ("mtime", "LastModified", "updated"):
        value = info.get(key)
        if value is not None:
            return _to_ns(value)
    return None


def _to_ns(value: float | str | datetime.datetime) -> int:
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        since_epoch = value - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        return since_epoch // datetime.timedelta(microseconds=1) * 1000
    return int(value * 1_000_000_000)


register_stat(LocalFileSystem, _stat_local)
register_stat(MemoryFileSystem, _stat_memory)


# Digest cache ----------------------------------------------------------------


def entry_matches(
    entry: Digested | None,
    size: int,
    mtime_ns: int | None,
    ctime_ns: int | None = None,
    inode: int | None = None,
) -> bool:
    """Tell whether a cached ``digested`` entry is valid for a file's stat.

    It must be for the same size, mtime, ctime and inode, and trusted by
    :func:`is_trusted`. A local file has a ctime and an inode, so an entry
    without them (journaled by an older journalq) does not match it.
    NOTE: only the mtime must be older than the read by the guard, not the
    ctime. Two same-size rewrites that keep the mtime, one just before the
    read and one just after it, within one ctime tick (one timer tick of
    the Linux kernel, 10 ms at most), go unseen. An entry with an ETag
    matches only through :func:`etag_matches`.
    """
    if entry is None or mtime_ns is None or entry.etag is not None:
        return False
    if entry.size != size or entry.mtime_ns != mtime_ns:
        return False
    if entry.ctime_ns != ctime_ns or entry.inode != inode:
        return False
    return is_trusted(entry.mtime_ns, entry.observed_ns)


def etag_matches(entry: Digested | None, size: int, etag: str | None) -> bool:
    """Return whether a cached entry with an ETag is valid for an object's stat.

    The object must have the same size and ETag (or GCS generation) as when
    the entry was journaled. No mtime guard applies: the store gives every
    rewrite with other content another ETag, however soon it follows.
    """
    return (
        entry is not None
        and etag is not None
        and entry.etag == etag
        and entry.size == size
    )


def is_trusted(mtime_ns: int, observed_ns: int) -> bool:
    """Tell whether a digest read at ``observed_ns`` may be cached.

    A change after the read gets an mtime later than
    ``observed_ns - MTIME_GUARD_NS`` even on a filesystem with 2 s
    timestamps, so it cannot keep an mtime this old.
    """
    return mtime_ns <= observed_ns - MTIME_GUARD_NS


class DigestCache(Protocol):
    """Digests of files keyed by service, path and the file's :class:`FileInfo`.

    The key uses the size, the mtime and, for local files, the ctime and
    the inode.
    """

    def get(self, service: str, path: str, info: FileInfo) -> str | None:
        """Return the cached digest string, or ``None`` when none is stored."""
        ...

    def put(
        self, service: str, path: str, info: FileInfo, digest: str, observed_ns: int
    ) -> None:
        """Store ``digest`` unless :func:`is_trusted` rejects the entry."""
        ...


class MemoryDigestCache:
    """A :class:`DigestCache` in a dict, for one process."""

    def __init__(self) -> None:
        self._entries: dict[tuple[object, ...], str] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, service: str, path: str, info: FileInfo) -> str | None:
        if info.mtime_ns is None:
            return None
        return self._entries.get(_cache_key(service, path, info))

    def put(
        self, service: str, path: str, info: FileInfo, digest: str, observed_ns: int
    ) -> None:
        if info.mtime_ns is None or not is_trusted(info.mtime_ns, observed_ns):
            return
        self._entries[_cache_key(service, path, info)] = digest


def _cache_key(service: str, path: str, info: FileInfo) -> tuple[object, ...]:
    return (service, path, info.size, info.mtime_ns, info.ctime_ns, info.inode)


def cached_digest(
    fs: fsspec.AbstractFileSystem,
    path: str,
    info: FileInfo,
    *,
    cache: DigestCache,
    service: str,
    algorithm: str = digest.DEFAULT_ALGORITHM,
    clock: Callable[[], int] = time.time_ns,
) -> str:
    """Return the digest of ``path``, from ``cache`` or by reading the file.

    A digest the backend reported with the stat comes first, then a cached
    one; only digests of ``algorithm`` are used. ``clock`` must be the wall
    clock the filesystem's mtimes come from.
    NOTE: a remote server's mtimes come from its own clock, so a skew of
    more than ``MTIME_GUARD_NS`` between the two weakens the guard.
    """
    reported = info.reported(algorithm)
    if reported is not None:
        return reported
    cached = cache.get(service, path, info)
    if cached is not None and cached.startswith(f"{algorithm}:"):
        return cached

    # The clock is read before the file, so a change during the read is
    # covered by the guard too.
    observed_ns = clock()
    result = digest.hash_file(fs, path, algorithm)
    cache.put(service, path, info, result, observed_ns)
    return result


# Decision --------------------------------------------------------------------


class Decision(msgspec.Struct, frozen=True):
    """Whether to skip a copy, which rule decided, and what was compared."""

    identical: bool
    method: str
    source: Identity
    destination: Identity | None


#: Returns a file's digest string. Called with no argument for
#: :data:`digest.DEFAULT_ALGORITHM`, else with the algorithm's name, so a
#: caller that only hashes with the default may take no argument.
DigestFunction = Callable[..., str]


def decide(
    policy: Policy,
    source: FileInfo,
    destination: FileInfo | None,
    *,
    source_digest: DigestFunction,
    destination_digest: DigestFunction,
) -> Decision:
    """Decide whether ``destination`` already contains ``source``'s content.

    The digest callables are called only under ``Policy.CHECKSUM`` with equal
    sizes, with the algorithm :func:`choose_algorithm` picks. Their digests
    must use the same algorithm, else ``ValueError``.
    """
    if destination is None:
        return Decision(False, "missing", _identity(source), None)
    if policy is Policy.ALWAYS:
        return _decision(False, "always", source, destination)
    if source.size != destination.size:
        return _decision(False, "size", source, destination)
    if policy is Policy.SIZE:
        return _decision(True, "size", source, destination)
    if policy is Policy.SIZE_MTIME:
        same = mtimes_match(source.mtime_ns, destination.mtime_ns)
        return _decision(same, "size+mtime", source, destination)
    algorithm = choose_algorithm(source, destination)
    return _compare_digests(
        source,
        destination,
        _call(source_digest, algorithm),
        _call(destination_digest, algorithm),
    )


def _call(function: DigestFunction, algorithm: str) -> str:
    if algorithm == digest.DEFAULT_ALGORITHM:
        return function()
    return function(algorithm)


def choose_algorithm(source: FileInfo, destination: FileInfo) -> str:
    """Return the algorithm that hashes both files most cheaply.

    Costs add up per side: a reported digest is free, one computed where
    the file is costs little, and one that needs the content downloaded
    costs much more. Ties go first to the algorithm journalq hashes files of
    this size with (:func:`journalq.digest.default_algorithm`), then by
    :data:`PREFERENCE`. When every choice downloads a side, a warning is
    logged, once per process.
    """
    names = list(dict.fromkeys((digest.default_algorithm(source.size), *PREFERENCE)))

    def total(name: str) -> tuple[int, int]:
        return source.cost(name) + destination.cost(name), names.index(name)

    best = min(names, key=total)
    if total(best)[0] >= _DOWNLOADED:
        _warn_download(best)
    return best


_warned = False


def _warn_download(algorithm: str) -> None:
    global _warned  # noqa: PLW0603
    if _warned:
        return
    _warned = True
    logger.warning(
        "the source and destination report no digest algorithm in common, "
        "so the checksum policy downloads file contents to compare them "
        "with %s; this warning is logged once",
        algorithm,
    )


def _compare_digests(
    source: FileInfo, destination: FileInfo, source_digest: str, destination_digest: str
) -> Decision:
    algorithm, _ = digest.split_digest(source_digest)
    other, _ = digest.split_digest(destination_digest)
    if algorithm != other:
        raise ValueError(
            f"cannot compare a {algorithm} digest with a {other} digest; the "
            "source and destination digests must use the same algorithm"
        )
    return Decision(
        identical=source_digest == destination_digest,
        method=algorithm,
        source=_identity(source, source_digest),
        destination=_identity(destination, destination_digest),
    )


def mtimes_match(source_ns: int | None, destination_ns: int | None) -> bool:
    """Return whether two mtimes are equal within :data:`MODIFY_WINDOW_NS`."""
    if source_ns is None or destination_ns is None:
        return False
    return abs(source_ns - destination_ns) < MODIFY_WINDOW_NS


def _decision(
    identical: bool, method: str, source: FileInfo, destination: FileInfo
) -> Decision:
    return Decision(identical, method, _identity(source), _identity(destination))


def _identity(info: FileInfo, digest_string: str | None = None) -> Identity:
    return Identity(
        size=info.size, mtime_ns=info.mtime_ns, digest=digest_string, etag=info.etag
    )
