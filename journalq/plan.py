"""Planning: ids, destination paths, and the expansion of trees into files.

Destination paths are resolved once, when an action is added, and the
result is journaled. Running or replaying the same request again therefore
never nests a tree inside itself, whatever the destination contains by then.

Where a copy lands (the rules of rsync, which rclone users know from
``rclone copy`` with a trailing slash):

* ``SRC/`` (trailing slash) copies the contents of SRC into DST:
  ``copy data/ backup`` gives ``backup/a.txt`` for ``data/a.txt``.
* ``SRC`` (no trailing slash) copies the directory itself into DST:
  ``copy data backup`` gives ``backup/data/a.txt``.
* A file SRC copied to a DST that ends with ``/`` or is an existing
  directory lands inside it (``backup/a.txt``); otherwise DST is the new
  file's name (copy as).

:meth:`StorageQueue.copy_tree` and :meth:`StorageQueue.sync` take the
already-resolved pair: the tree at ``sourcetree`` becomes the tree at
``destinationtree``. :meth:`StorageQueue.copy_glob` expands ``dir/*`` with
:func:`glob_matches` into one copy per match.

Names: a listing may name an item that cannot be copied safely: ``..``,
an absolute path, a NUL byte, a name outside the listed directory, or a
local name that is not UTF-8. Such an item becomes a child that has failed
already, with the reason in its error and :data:`REJECTED` as the
failure's reason, so nothing is ever written under that name, the rest of
the tree is copied, and the tree fails. A local directory that cannot be
listed (permission denied) becomes a failed list of that source directory
in the same way, with :data:`UNLISTED` as the reason. Nothing under it is
made or copied at the destination, and a sync deletes nothing under it.

Ordering: a run goes round by round, and within a round stage by stage,
and it finishes each before it starts the next. Top-level actions whose
paths overlap run in the order they were added, each in a later round
than the one before it (:func:`rounds`); the items of a tree run in their
tree's round. Within a round, the deletes of a sync that clear the way
for a directory or a file run first, then directories are made
shallowest first, then files are copied (and top-level actions run) in
parallel, then the other files are deleted, then the other directories,
deepest first (:func:`stage`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import stat as stat_module
import time
from collections.abc import Callable, Container, Iterable, Iterator
from typing import Final

import fsspec
import msgspec

from journalq import compare
from journalq.backends import is_local
from journalq.backends.objects import MissingBucketError
from journalq.errors import ActionError
from journalq.records import (
    ActionAdded,
    Expanded,
    Failed,
    Identity,
    Kind,
    Service,
)

__all__ = [
    "REJECTED",
    "UNLISTED",
    "Listing",
    "accesses",
    "action_id",
    "child_id",
    "directory_mtimes_to_set",
    "expand",
    "glob_matches",
    "list_tree",
    "parent_directories",
    "request_key",
    "resolve_target",
    "rounds",
    "same_filesystem",
    "same_mtime",
    "skipped_children",
    "stage",
    "unsafe_reason",
]

logger = logging.getLogger(__name__)

#: The ``reason`` of the failure of a child whose name cannot be copied
#: safely. Retrying such a child cannot help, so :meth:`StorageQueue.retry`
#: lists its tree again instead, as a new action (:mod:`journalq.failures`).
REJECTED: Final = "rejected name"

#: The ``reason`` of the failure of a tree's directory that could not be
#: listed: a list on the source side, or a mkdir in queues written before
#: journalq named the source. Retrying it cannot list the tree, so
#: :meth:`StorageQueue.retry` lists its tree again instead, as adding the
#: tree again does.
UNLISTED: Final = "directory not listed"

#: Hex digits of an action id: 64 bits, so a queue of 10 million actions has
#: a chance of about 3 in a million of any collision.
ID_HEX_DIGITS: Final = 16

_key_encoder = msgspec.msgpack.Encoder()


def _digest(*parts: object) -> str:
    data = _key_encoder.encode(parts)
    return hashlib.blake2b(data, digest_size=ID_HEX_DIGITS // 2).hexdigest()


def request_key(kind: Kind, *parts: object) -> str:
    """Return the key that identifies a request, for duplicate detection."""
    return _digest("key", str(kind), *parts)


def action_id(key: str, generation: int) -> str:
    """Return the id of the ``generation``-th action added for ``key``."""
    return _digest("action", key, generation)


def child_id(parent_id: str, kind: Kind, relpath: str) -> str:
    """Return the id of one item found by expanding ``parent_id``."""
    return _digest("child", parent_id, str(kind), relpath)


def resolve_target(
    source: str, destination: str, *, source_is_dir: bool, destination_is_dir: bool
) -> str:
    """Return where ``source`` lands for ``copy SOURCE DESTINATION``.

    Applies the trailing-slash rules in this module's docstring.
    """
    name = posixpath.basename(source.rstrip("/"))
    if source_is_dir:
        if source.endswith("/") or not name:
            return destination.rstrip("/") or "/"
        return posixpath.join(destination, name)
    if destination.endswith("/") or destination_is_dir:
        return posixpath.join(destination, name)
    return destination


#: Size in bytes and mtime in nanoseconds (None when the backend has none),
#: then, for a local file, its ctime in nanoseconds and its inode number.
Entry = tuple[int, int | None] | tuple[int, int | None, int, int]

#: Decides at planning time that a file needs no copy: called with the
#: relative path and the source and destination entries, it returns the
#: method that decided, or None to copy.
Identical = Callable[[str, Entry, Entry], str | None]


class Listing(msgspec.Struct):
    """Files and directories under a root, by path relative to the root."""

    files: dict[str, Entry] = msgspec.field(default_factory=dict)
    directories: list[str] = msgspec.field(default_factory=list)
    #: Items that are not copied, and spared by a sync's deletes (a link to
    #: a directory, a loop, a device): relative path -> reason.
    problems: dict[str, str] = msgspec.field(default_factory=dict)
    #: Directories that were found but could not be listed, also spared by
    #: a sync's deletes: relative path -> the error. Each becomes a failed
    #: child (see the module docstring).
    unlisted: dict[str, str] = msgspec.field(default_factory=dict)
    #: Names the listing returned that are not under the root, as returned
    #: -> reason. They become failed children (see the module docstring).
    rejected: dict[str, str] = msgspec.field(default_factory=dict)
    #: The ETag of each file whose backend reports one, by relative path.
    etags: dict[str, str] = msgspec.field(default_factory=dict)
    #: The mtime in nanoseconds of each directory whose backend reports one,
    #: by relative path; the root is ``""``.
    directory_mtimes: dict[str, int] = msgspec.field(default_factory=dict)


def list_tree(fs: fsspec.AbstractFileSystem, root: str) -> Listing:
    """List every file and directory below ``root``.

    Raises ``FileNotFoundError`` when ``root`` does not exist and
    ``NotADirectoryError`` when it is a file. A symbolic link to a file is
    listed as that file. A link that points nowhere is listed as a file too,
    so that copying it fails with its own reason. A link to a directory is
    not followed and is reported in :attr:`Listing.problems`, and so is a
    directory reached twice (a bind mount loop).
    """
    if is_local(fs):
        return _list_local(root)
    return _list_generic(fs, root)


def _list_local(root: str) -> Listing:
    try:
        info = os.stat(root)
    except FileNotFoundError:
        raise FileNotFoundError(f"source directory not found: {root}") from None
    if not stat_module.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"not a directory: {root}")
    listing = Listing(directory_mtimes={"": info.st_mtime_ns})
    _walk_local(root, "", listing, {(info.st_dev, info.st_ino)})
    return listing


def _walk_local(
    directory: str, prefix: str, listing: Listing, ancestors: set[tuple[int, int]]
) -> None:
    # Names are stat'ed relative to the open directory, so the kernel looks
    # up one name instead of the whole path: 10,000 files listed in 29 ms
    # against 35 ms with os.scandir and DirEntry.stat().
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in os.listdir(fd):
            relpath = prefix + name
            try:
                info = os.stat(name, dir_fd=fd)
            except FileNotFoundError:
                listing.files[relpath] = (0, None)  # a dangling link; its copy fails
                continue
            if stat_module.S_ISREG(info.st_mode):
                listing.files[relpath] = (
                    info.st_size,
                    info.st_mtime_ns,
                    info.st_ctime_ns,
                    info.st_ino,
                )
                continue
            _walk_other(directory, fd, name, relpath, info, listing, ancestors)
    finally:
        os.close(fd)


def _walk_other(
    directory: str,
    fd: int,
    name: str,
    relpath: str,
    info: os.stat_result,
    listing: Listing,
    ancestors: set[tuple[int, int]],
) -> None:
    """List the directory ``name`` inside ``fd``, or record why it is skipped."""
    path = os.path.join(directory, name)
    if not stat_module.S_ISDIR(info.st_mode):
        # A FIFO would block the copy forever, and a device or a
        # socket has no content to copy.
        listing.problems[relpath] = "not a regular file, not copied"
        logger.warning("skipped %s: not a regular file", path)
        return
    if stat_module.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
        # Following a link to a directory can leave the tree, because
        # a link to '..' copies everything above it. So journalq, like
        # rclone, does not follow it. A link to a file is copied.
        listing.problems[relpath] = "symbolic link to a directory, not followed"
        logger.warning("skipped %s: a symbolic link to a directory", path)
        return
    if _is_queue(path):
        # Another journalq queue: copying it would carry a live
        # journal along, and a sync with delete would destroy it.
        listing.problems[relpath] = "a journalq queue, not copied or deleted"
        logger.warning("skipped %s: a journalq queue directory", path)
        return
    identity = (info.st_dev, info.st_ino)
    if identity in ancestors:
        listing.problems[relpath] = "symbolic link loop"
        return
    listing.directories.append(relpath)
    listing.directory_mtimes[relpath] = info.st_mtime_ns
    ancestors.add(identity)
    try:
        _walk_local(path, relpath + "/", listing, ancestors)
    except PermissionError as exc:
        # The rest of the tree is still copied; nothing under this
        # directory is deleted at the destination (see _extraneous).
        listing.unlisted[relpath] = exc.strerror or str(exc)
        logger.warning("skipped %s: cannot be listed (%s)", path, exc)
    ancestors.discard(identity)


def _is_queue(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, "FORMAT")) and os.path.isdir(
        os.path.join(directory, "journal")
    )


def _list_generic(fs: fsspec.AbstractFileSystem, root: str) -> Listing:
    root = root.rstrip("/")
    # One info() call, not exists() and isdir(): fsspec's exists() returns
    # False for any error and isdir() for any OSError, so a dropped
    # connection would read as a missing source.
    try:
        root_info = fs.info(root)
    except MissingBucketError:
        raise
    except FileNotFoundError:
        # journalq's S3 and GCS filesystems raise from exists() an error
        # that names a missing bucket.
        fs.exists(root)
        raise FileNotFoundError(f"source directory not found: {root}") from None
    if root_info.get("type") != "directory":
        raise NotADirectoryError(f"not a directory: {root}")
    listing = Listing()
    _add_directory_mtime(listing, "", root_info)
    directories: set[str] = set()
    # NOTE: unlike the local walk, this does not fail a subdirectory that
    # cannot be listed alone: what find() does then depends on the backend,
    # and it may fail the whole listing.
    found = fs.find(root, withdirs=True, detail=True)
    top = fs._strip_protocol(root).rstrip("/")
    for path, info in found.items():
        if not path.startswith(top + "/"):
            if path.rstrip("/") != top:
                listing.rejected[path] = f"is not under the listed directory {root}"
            continue
        relpath = path[len(top) + 1 :]
        size = int(info.get("size") or 0)
        # An object store's directory marker, a zero-byte key ending in '/',
        # stands for the directory.
        marker = relpath.endswith("/") and not size
        if marker:
            relpath = relpath.rstrip("/")
        if not relpath:
            continue
        if marker or info.get("type") == "directory":
            directories.add(relpath)
            _add_directory_mtime(listing, relpath, info)
            continue
        listing.files[relpath] = (size, compare.mtime_from_info(info))
        etag = _listed_etag(info)
        if etag is not None:
            listing.etags[relpath] = etag
    listing.directories = sorted(directories)
    return listing


def _add_directory_mtime(listing: Listing, relpath: str, info: dict) -> None:
    # Filesystems with real directories (SFTP) report their "mtime". An
    # object store's LastModified for a directory is when its marker was
    # made, so it is left out.
    mtime_ns = compare.mtime_from_info({"mtime": info.get("mtime")})
    if mtime_ns is not None:
        listing.directory_mtimes[relpath] = mtime_ns


def _listed_etag(info: dict) -> str | None:
    """Return the ETag in a listing entry, as the backend's stat reports it.

    journalq's GCS stat reports the object's generation as its ETag (see
    :mod:`journalq.backends.gcs`), and S3 the ``ETag``.
    """
    generation = info.get("generation")
    if generation:
        return str(generation)
    return info.get("ETag") or info.get("etag")


def unsafe_reason(relpath: str) -> str | None:
    """Return why ``relpath`` cannot be copied safely, or None if it can.

    A listing from a remote server may name '..', an absolute path or a NUL
    byte, and any of those could write outside the destination root.
    """
    if not relpath:
        return "is empty"
    if "\0" in relpath:
        return "contains a NUL byte"
    if relpath.startswith("/"):
        return "is an absolute path"
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        # A local name that is not UTF-8 (decoded with surrogates) cannot be
        # journaled as a string.
        # TODO: store such names as bytes so that they can be copied too.
        return "is not valid UTF-8, which the journal needs"
    parts = relpath.split("/")
    if ".." in parts:
        return "contains '..', which would leave the destination tree"
    if "" in parts or "." in parts:
        return "contains an empty or '.' component"
    return None


def _valid_relpath(relpath: str) -> bool:
    return unsafe_reason(relpath) is None


def _quoted(relpath: str) -> str:
    """Return ``relpath`` quoted for a message, bytes when it is not UTF-8."""
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        return repr(os.fsencode(relpath))
    return repr(relpath)


def glob_matches(fs: fsspec.AbstractFileSystem, pattern: str) -> list[tuple[str, bool]]:
    """Return the paths that ``pattern`` matches, each with whether it is a tree.

    Applies the rules of :meth:`StorageQueue.copy_glob`: wildcards in the
    last component only and no ``**`` (else ``ActionError``), links to
    directories left out, and ``ActionError`` when nothing matches.
    """
    parent, _, name = pattern.rstrip("/").rpartition("/")
    if "**" in name or fsspec.core.has_magic(parent):
        raise ActionError(
            pattern,
            "a glob source takes wildcards (*, ?, [...]) in its last component "
            "only, and no **; copy a whole tree as dir/ instead",
        )
    matches: list[tuple[str, bool]] = []
    for path, info in sorted(fs.glob(pattern, detail=True).items()):
        is_tree = info.get("type") == "directory"
        if is_tree and info.get("islink"):
            logger.warning("skipped %s: a symbolic link to a directory", path)
            continue
        matches.append((path, is_tree))
    if not matches:
        raise ActionError(
            pattern, "no file or directory matches the pattern; nothing was added"
        )
    return matches


def expand(
    parent: ActionAdded,
    source: Listing,
    destination: Listing | None = None,
    identical: Identical | None = None,
    hints: dict[str, tuple[Entry, Entry | None]] | None = None,
    *,
    keep_directory_mtimes: bool = False,
) -> Iterator[ActionAdded | Failed | Expanded]:
    """Yield the children of a copy_tree or sync, then its ``expanded`` record.

    ``destination`` is the listing of the destination tree. Directories it
    has, and files that ``identical`` finds already copied, get no action; with
    ``parent.delete_extraneous`` the destination's extra items are deleted.
    ``hints`` receives, per file to copy, the source and destination entries
    just listed, so a run right after the listing need not stat them again.
    A name that cannot be copied safely yields a child and its ``failed``
    record (see the module docstring). With ``keep_directory_mtimes`` the
    ``expanded`` record carries the source's directory mtimes, for the run
    that ends the tree to set (see :func:`directory_mtimes_to_set`).
    """
    count = 0
    skipped = 0
    method = ""
    existing = destination.files if destination is not None else {}
    # A directory the destination has already needs no mkdir, so a re-sync
    # of an unchanged tree has no action left to run and nothing to sync.
    present = set(destination.directories) if destination is not None else set()
    listing_hash = hashlib.blake2b(digest_size=16)
    for relpath in sorted(source.directories, key=_depth_then_name):
        reason = unsafe_reason(relpath)
        if reason is not None:
            count += 1
            yield from _rejected(parent, Kind.MKDIR, relpath, reason)
            continue
        error = source.unlisted.get(relpath)
        if error is not None:
            count += 1
            yield from _unlisted(parent, relpath, error)
            continue
        if relpath in present:
            continue
        count += 1
        yield _child(parent, Kind.MKDIR, relpath, service=Service.DESTINATION)
    for path, reason in source.rejected.items():
        count += 1
        yield from _rejected(parent, Kind.COPY_FILE, path, reason)
    for relpath, entry in source.files.items():
        listing_hash.update(relpath.encode("utf-8", "surrogateescape") + b"\0")
        reason = unsafe_reason(relpath)
        if reason is not None:
            count += 1
            yield from _rejected(parent, Kind.COPY_FILE, relpath, reason)
            continue
        target = existing.get(relpath)
        if identical is not None and target is not None:
            decided = identical(relpath, entry, target)
            if decided is not None:
                skipped += 1
                method = decided
                continue
        count += 1
        child = _child(parent, Kind.COPY_FILE, relpath, size=entry[0])
        if hints is not None:
            hints[child.action_id] = (entry, target)
        yield child
    if destination is not None and parent.delete_extraneous:
        for child in _extraneous(parent, source, destination):
            count += 1
            yield child
    mtimes: dict[str, int] = {}
    if keep_directory_mtimes:
        mtimes = directory_mtimes_to_set(source, destination, changes=count > 0)
    yield Expanded(
        parent.action_id,
        count,
        listing_hash.hexdigest(),
        skipped,
        method,
        directory_mtimes=mtimes,
    )


def directory_mtimes_to_set(
    source: Listing, destination: Listing | None, *, changes: bool
) -> dict[str, int]:
    """Return the source directory mtimes that the tree's end sets, by relpath.

    Those are the mtimes of every source directory with a known mtime and
    a safe name. They are returned when the tree has ``changes`` to make,
    because each change can set the mtime of the directory it writes in,
    or when a destination directory is missing or has another mtime.
    Otherwise none are, so a no-op re-sync journals and stats nothing
    more. A directory that could not be listed is left out, because its
    copy is incomplete.

    NOTE: files that a later run with a stricter compare policy adds back
    (:func:`skipped_children`) to a tree that had no changes are copied
    without this, so their directories keep the time of that copy.
    """
    mtimes = {
        relpath: mtime_ns
        for relpath, mtime_ns in source.directory_mtimes.items()
        if relpath not in source.unlisted
        and (not relpath or unsafe_reason(relpath) is None)
    }
    if changes:
        return mtimes
    existing = destination.directory_mtimes if destination is not None else {}
    for relpath, mtime_ns in mtimes.items():
        if not same_mtime(mtime_ns, existing.get(relpath)):
            return mtimes
    return {}


def same_mtime(source_ns: int, destination_ns: int | None) -> bool:
    """Tell whether a destination directory already has the source's mtime.

    A destination mtime in whole seconds (SFTP's ``utime`` takes seconds)
    matches a source mtime in the same second.
    """
    if destination_ns is None:
        return False
    if destination_ns == source_ns:
        return True
    whole_seconds = source_ns - source_ns % 1_000_000_000
    return destination_ns == whole_seconds


def skipped_children(
    parent: ActionAdded,
    source: Listing,
    destination: Listing,
    known: Container[str],
    limit: int,
    hints: dict[str, tuple[Entry, Entry | None]] | None = None,
) -> Iterator[ActionAdded]:
    """Yield the files a tree skipped when it was listed, to compare them again.

    Those are the files that both sides have now and that have no action
    of the tree in ``known``, at most ``limit`` of them (the tree's
    ``skipped`` count), by path. Each is marked ``redecided``. ``hints``
    receives their entries, as in :func:`expand`.
    """
    for relpath in sorted(source.files):
        if limit <= 0:
            return
        target = destination.files.get(relpath)
        if target is None or unsafe_reason(relpath) is not None:
            continue
        entry = source.files[relpath]
        child = _child(parent, Kind.COPY_FILE, relpath, size=entry[0], redecided=True)
        if child.action_id in known:
            continue
        limit -= 1
        if hints is not None:
            hints[child.action_id] = (entry, target)
        yield child


def _extraneous(
    parent: ActionAdded, source: Listing, destination: Listing
) -> Iterator[ActionAdded]:
    for relpath, is_directory, in_the_way in _extraneous_paths(source, destination):
        listed = None
        if not is_directory:
            size, mtime_ns = destination.files[relpath][:2]
            etag = destination.etags.get(relpath)
            listed = Identity(size, mtime_ns, etag=etag)
        yield _child(
            parent,
            Kind.DELETE,
            relpath,
            service=Service.DESTINATION,
            recursive=is_directory,
            in_the_way=in_the_way,
            listed=listed,
        )


def _extraneous_paths(
    source: Listing, destination: Listing
) -> Iterator[tuple[str, bool, bool]]:
    """Yield what a sync deletes: relative path, is a directory, is in the way.

    An item is in the way when the source has an item of the other type at
    its path or above it: a file where a directory goes, or the reverse.
    The mkdir or copy of that path needs it gone first.
    """
    # What either side could not list, or skipped, is not known to be
    # missing from the source: nothing at or under those paths is deleted.
    spared = (
        *source.problems,
        *source.unlisted,
        *destination.problems,
        *destination.unlisted,
    )
    # A directory the source needs: listed, or above a listed item.
    needed = set(source.directories)
    for relpath in (*source.files, *source.directories):
        needed.update(parent_directories(relpath))

    def below_source_file(relpath: str) -> bool:
        return any(above in source.files for above in parent_directories(relpath))

    for relpath in destination.files:
        if relpath not in source.files and _deletable(relpath, spared):
            in_the_way = relpath in needed or below_source_file(relpath)
            yield relpath, False, in_the_way
    for relpath in sorted(destination.directories, key=_depth_then_name, reverse=True):
        if relpath not in needed and _deletable(relpath, spared):
            in_the_way = relpath in source.files or below_source_file(relpath)
            yield relpath, True, in_the_way


def _deletable(relpath: str, spared: tuple[str, ...]) -> bool:
    if not _valid_relpath(relpath):
        return False
    return not any(
        relpath == problem or relpath.startswith(problem + "/") for problem in spared
    )


def count_deletes(source: Listing, destination: Listing) -> int:
    """Return how many destination items a sync with delete would remove."""
    return sum(1 for _ in _extraneous_paths(source, destination))


def _child(
    parent: ActionAdded,
    kind: Kind,
    relpath: str,
    *,
    service: Service | None = None,
    size: int | None = None,
    recursive: bool = False,
    in_the_way: bool = False,
    redecided: bool = False,
    listed: Identity | None = None,
) -> ActionAdded:
    return ActionAdded(
        child_id(parent.action_id, kind, relpath),
        kind,
        "",
        service=service,
        parent=parent.action_id,
        relpath=relpath,
        size=size,
        recursive=recursive,
        compare=parent.compare,
        in_the_way=in_the_way,
        redecided=redecided,
        listed=listed,
    )


def _rejected(
    parent: ActionAdded, kind: Kind, name: str, reason: str
) -> Iterator[ActionAdded | Failed]:
    """Yield a child for a name that is not copied, and its failure.

    The child has no relative path, so no code can ever join the name to
    the destination root, and its id comes from the quoted name, which the
    journal can encode whatever the name contains.
    """
    quoted = _quoted(name)
    logger.warning("not copying %s from %s: the name %s", quoted, parent.source, reason)
    child = ActionAdded(
        child_id(parent.action_id, kind, quoted),
        kind,
        "",
        service=Service.DESTINATION if kind is Kind.MKDIR else None,
        parent=parent.action_id,
        compare=parent.compare,
    )
    yield child
    yield Failed(
        child.action_id,
        0,
        "ActionError",
        f"not copied: the source listed the name {quoted}, which {reason}; "
        "rename it at the source",
        retryable=False,
        reason=REJECTED,
        finished_ns=time.time_ns(),
    )


def _unlisted(
    parent: ActionAdded, relpath: str, error: str
) -> Iterator[ActionAdded | Failed]:
    """Yield the list of a source directory that could not be listed, and its failure.

    The failed action is on the source side, where the user has to act.
    The directory is not made at the destination.
    """
    child = _child(parent, Kind.LIST, relpath, service=Service.SOURCE)
    yield child
    path = _join(parent.source, relpath)
    yield Failed(
        child.action_id,
        0,
        "PermissionError",
        f"cannot list the source directory {path}: {error}; nothing in it was "
        "copied, and a sync deletes nothing in it. Make it readable, then "
        "retry (it lists the tree again) or run the same copy or sync again",
        retryable=False,
        reason=UNLISTED,
        finished_ns=time.time_ns(),
    )


def _join(root: str | None, relpath: str) -> str:
    return posixpath.join(root, relpath) if root else relpath


def _depth_then_name(relpath: str) -> tuple[int, str]:
    return relpath.count("/"), relpath


def stage(added: ActionAdded) -> tuple[int, int]:
    """Return the stage of an action: lower stages run to the end first.

    Only the items of a tree are ordered here. The deletes of items in the
    way come first (files, then directories deepest first), so that the
    mkdirs and copies that need their paths find them free. Top-level
    actions all share the stage of the copies; :func:`rounds` orders those
    whose paths overlap.
    """
    if added.parent is None:
        return (1, 0)
    depth = added.relpath.count("/") if added.relpath else 0
    if added.kind is Kind.DELETE:
        first = -2 if added.in_the_way else 2
        if added.recursive:
            return (first + 1, -depth)
        return (first, 0)
    if added.kind is Kind.MKDIR:
        return (0, depth)
    return (1, 0)


#: A path that a top-level action reads or writes: its namespace (a
#: service, or ``"shared"`` when both services are one filesystem), the
#: path, and whether the action writes there.
Access = tuple[str, str, bool]


def accesses(added: ActionAdded, *, shared: bool) -> list[Access]:
    """Return the paths a top-level action reads and writes.

    A tree reads its source root and writes its destination root, so every
    item of the tree is covered. A list reads; every other kind writes.
    ``shared`` puts both services in one namespace, for a queue whose
    source and destination are the same filesystem.
    """

    def namespace(service: Service) -> str:
        return "shared" if shared else str(service)

    if added.kind in (Kind.COPY_FILE, Kind.COPY_TREE, Kind.SYNC):
        assert added.source is not None
        assert added.destination is not None
        return [
            (namespace(Service.SOURCE), added.source.rstrip("/") or "/", False),
            (
                namespace(Service.DESTINATION),
                added.destination.rstrip("/") or "/",
                True,
            ),
        ]
    service = added.service or Service.SOURCE
    path = added.destination if service is Service.DESTINATION else added.source
    assert path is not None
    return [(namespace(service), path.rstrip("/") or "/", added.kind is not Kind.LIST)]


def rounds(actions: Iterable[ActionAdded], *, shared: bool) -> dict[str, int]:
    """Return the round of each top-level action, by id.

    ``actions`` come in the order they were added. Two actions conflict
    when they use the same path, or one a path inside the other's, in one
    namespace, and at least one of them writes there (see
    :func:`accesses`). An action's round is one more than the latest round
    of the earlier actions it conflicts with, and 0 when there are none. A
    run ends one round before it starts the next, so conflicting actions
    run in the order they were added and the others run in parallel.
    """
    order = _PathRounds()
    return {
        added.action_id: order.place(accesses(added, shared=shared))
        for added in actions
    }


class _PathRounds:
    """The rounds already given to the paths, and to the paths below them.

    Each table maps (namespace, path) to the first round that is free of
    the actions placed there: ``_at`` for actions at that exact path,
    ``_within`` for actions at that path or anywhere below it. The
    ``_writes`` tables count only the actions that write.
    """

    def __init__(self) -> None:
        self._at: dict[tuple[str, str], int] = {}
        self._within: dict[tuple[str, str], int] = {}
        self._writes_at: dict[tuple[str, str], int] = {}
        self._writes_within: dict[tuple[str, str], int] = {}

    def place(self, used: list[Access]) -> int:
        """Return the round of an action that uses ``used``, and record it."""
        first = 0
        for namespace, path, writes in used:
            # A write conflicts with any earlier use, a read with writes only.
            at, within = (
                (self._at, self._within)
                if writes
                else (self._writes_at, self._writes_within)
            )
            first = max(first, within.get((namespace, path), 0))
            for ancestor in parent_directories(path):
                first = max(first, at.get((namespace, ancestor), 0))
        for namespace, path, writes in used:
            tables = [(self._at, self._within)]
            if writes:
                tables.append((self._writes_at, self._writes_within))
            for at, within in tables:
                _raise_to(at, (namespace, path), first + 1)
                _raise_to(within, (namespace, path), first + 1)
                for ancestor in parent_directories(path):
                    _raise_to(within, (namespace, ancestor), first + 1)
        return first


def _raise_to(
    table: dict[tuple[str, str], int], key: tuple[str, str], value: int
) -> None:
    if table.get(key, 0) < value:
        table[key] = value


def parent_directories(path: str) -> Iterator[str]:
    """Yield the directories above ``path``, nearest first.

    ``/`` is included for an absolute path; a relative path stops at its
    first component.
    """
    path = path.rstrip("/") or "/"
    while True:
        parent = posixpath.dirname(path)
        if not parent or parent == path:
            return
        yield parent
        path = parent


def same_filesystem(
    first: fsspec.AbstractFileSystem, second: fsspec.AbstractFileSystem
) -> bool:
    """Return whether two filesystems reach the same files by the same paths."""
    return (
        type(first) is type(second) and first.storage_options == second.storage_options
    )


def check_overlap(
    source_fs: fsspec.AbstractFileSystem,
    source: str,
    destination_fs: fsspec.AbstractFileSystem,
    destination: str,
) -> None:
    """Reject a copy whose source and destination trees overlap.

    On a local disk the paths are compared after resolving symbolic links,
    so a destination that is a link into the source (or the reverse) is
    caught too.
    """
    if not same_filesystem(source_fs, destination_fs):
        return
    if is_local(source_fs):
        source = os.path.realpath(source)
        destination = os.path.realpath(destination)
    first = source.rstrip("/") + "/"
    second = destination.rstrip("/") + "/"
    if first.startswith(second) or second.startswith(first):
        raise ActionError(
            destination,
            f"the destination overlaps the source {source!r}; choose a "
            "destination outside the source tree (and the source outside it)",
        )
