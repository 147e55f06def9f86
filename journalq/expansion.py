"""Tree expansion: listing a copy_tree or sync and journaling its files.

Adding a tree lists both sides, checks the deletes a sync would make, then
journals the tree's action and one action per file that differs, in chunks
of ``chunk`` records. A file found identical when listed (same size, size
and mtime, or equal cached digests under the checksum policy) gets no
action: it is a planned skip, counted on the tree. A run with a stricter
policy than the one that planned the skips lists the tree again and adds
those files back.

These functions are internals of :class:`journalq.queue.StorageQueue`,
kept apart from its public methods. They take the queue, journal through
it, and take the chunk size from the caller, so that a test that sets
``journalq.queue.EXPANSION_CHUNK`` changes it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, NamedTuple

from journalq import compare, dirtimes, faults
from journalq.backends import objects
from journalq.backends.objects import MissingBucketError
from journalq.errors import ActionError
from journalq.plan import (
    Entry,
    Identical,
    Listing,
    count_deletes,
    expand,
    list_tree,
    parent_directories,
    skipped_children,
)
from journalq.records import ActionAdded, Digested, Failed, Kind, Record, Service
from journalq.replay import ActionState, DigestCache, root_prefix

if TYPE_CHECKING:
    import fsspec

    from journalq.queue import StorageQueue

logger = logging.getLogger(__name__)


#: The kinds of action that list a tree and have a child action per file.
PARENTS: Final = frozenset({Kind.COPY_TREE, Kind.SYNC})


class TreeListings(NamedTuple):
    """The listings of both trees of a copy_tree or sync, taken when it is added."""

    source: Listing
    destination: Listing


def expand_tree(
    queue: StorageQueue,
    parent: ActionAdded,
    *,
    max_delete: int | None = None,
    force: bool,
    chunk: int,
) -> None:
    """List the tree, check the deletes, then journal parent and children."""
    listings = list_trees(queue, parent, max_delete=max_delete, force=force)
    journal_tree(queue, parent, listings, chunk=chunk)


def list_trees(
    queue: StorageQueue,
    parent: ActionAdded,
    *,
    max_delete: int | None = None,
    force: bool,
) -> TreeListings:
    """List both trees of ``parent`` and check the deletes it would make.

    Raises ``ActionError`` for a source that cannot be listed and for too
    many deletes. Nothing is journaled.
    """
    assert parent.source is not None
    assert parent.destination is not None
    try:
        source = queue.with_retries(
            lambda: list_tree(queue.source.fs, parent.source), parent.source
        )
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        raise ActionError(
            parent.source,
            f"{exc}; check the path (nothing was added, nothing deleted)",
        ) from exc
    destination = destination_listing(queue, parent.destination)
    if parent.delete_extraneous:
        check_deletes(parent, source, destination, max_delete, force)
    return TreeListings(source, destination)


def journal_tree(
    queue: StorageQueue, parent: ActionAdded, listings: TreeListings, *, chunk: int
) -> None:
    """Journal ``parent``, then an action per item of ``listings`` to act on."""
    # The parent is durable before its children, so a crash in the middle
    # leaves a tree that the next open expands again.
    if parent.action_id not in queue.state.actions:
        queue._journal([parent])
    source, destination = listings
    records: list[Record] = []
    policy = compare.Policy.parse(parent.compare) if parent.compare else queue.policy
    identical = planned_skip(
        parent,
        policy,
        queue.state.digests,
        sets_mtime=queue.destination.local,
        etags=(source.etags, destination.etags),
        listed_mtimes=objects.listed_mtimes(queue.destination.fs),
    )
    hints = queue._hints if queue._store is not None else None
    records_of_tree = expand(
        parent,
        source,
        destination,
        identical,
        hints,
        keep_directory_mtimes=dirtimes.can_set(queue.destination),
    )
    for record in records_of_tree:
        records.append(record)
        if len(records) >= chunk:
            _append_chunk(queue, records)
            records = []
    queue._journal(records)


def expand_again(queue: StorageQueue, action: ActionState, *, chunk: int) -> None:
    """List a tree whose expansion a crash cut short, once more.

    The guards of the first expansion apply again: an empty source is
    never taken as a reason to delete everything. A tree that cannot be
    listed now fails, so the queue still opens and the rest runs.
    """
    logger.info("expanding %s again", action.action_id)
    try:
        expand_tree(queue, action.added, force=False, chunk=chunk)
    except ActionError as exc:
        logger.warning("tree %s failed: %s", action.action_id, exc)
        failure = Failed(
            action.action_id,
            action.attempts + 1,
            "ActionError",
            str(exc),
            retryable=False,
            finished_ns=time.time_ns(),
        )
        queue._require_store().append([failure], durable=True)


def planned_skip(
    parent: ActionAdded,
    policy: compare.Policy,
    digests: DigestCache,
    *,
    sets_mtime: bool = False,
    etags: tuple[Mapping[str, str], Mapping[str, str]] = ({}, {}),
    listed_mtimes: bool = True,
) -> Identical | None:
    """Return the test that skips files already identical at listing time.

    Under the checksum policy a file is skipped only when the digest
    cache has trusted digests of both sides for exactly the sizes and
    mtimes just listed, and they are equal. An entry cached with an ETag
    (an object store's) must instead have the size and the ETag that the
    listing reports: ``etags`` contains those of the source and of the
    destination listing, by relative path. Every other file becomes an
    action and is compared when it runs. With ``sets_mtime`` (a local
    destination), so does an identical file whose mtimes differ: its run
    gives the destination the source's mtime.
    """
    if policy is compare.Policy.ALWAYS:
        return None
    if policy is compare.Policy.SIZE:
        return _same_size
    if policy is compare.Policy.SIZE_MTIME and listed_mtimes:
        return _same_size_and_mtime
    if policy is compare.Policy.SIZE_MTIME:
        return _size_and_cached_mtime(
            root_prefix(parent.destination or ""),
            digests.finder(Service.DESTINATION),
            etags[1],
        )
    source_prefix = root_prefix(parent.source or "")
    destination_prefix = root_prefix(parent.destination or "")
    find_source = digests.finder(Service.SOURCE)
    find_destination = digests.finder(Service.DESTINATION)
    source_etags, destination_etags = etags

    def identical(relpath: str, source: Entry, destination: Entry) -> str | None:
        if source[0] != destination[0]:
            return None
        if sets_mtime and not compare.mtimes_match(source[1], destination[1]):
            return None
        known_source = find_source(source_prefix + relpath)
        if not _cached(known_source, source, source_etags, relpath):
            return None
        known_destination = find_destination(destination_prefix + relpath)
        if not _cached(known_destination, destination, destination_etags, relpath):
            return None
        assert known_source is not None
        assert known_destination is not None
        if known_source.digest != known_destination.digest:
            return None
        return known_source.digest.partition(":")[0]

    return identical


def _append_chunk(queue: StorageQueue, records: list[Record]) -> None:
    if queue._store is not None:
        queue._store.append(records, durable=False)
    else:
        queue._journal(records)
    faults.point("queue.expansion_chunk")


def destination_listing(queue: StorageQueue, path: str) -> Listing:
    """List the destination tree; a missing one is empty, a missing bucket not.

    Nothing could be copied into a bucket that does not exist, so the
    add fails now rather than every file of the tree at run time.
    """
    try:
        return queue.with_retries(lambda: list_tree(queue.destination.fs, path), path)
    except MissingBucketError as exc:
        raise ActionError(path, f"{exc}; nothing was added") from exc
    except FileNotFoundError:
        return Listing()
    except NotADirectoryError as exc:
        raise not_a_directory(queue.destination.fs, path) from exc


def not_a_directory(fs: fsspec.AbstractFileSystem, path: str) -> ActionError:
    """Return the error of a destination that is a file or lies below one.

    It names the file in the way, found by looking at ``path`` and the
    paths above it.
    """
    blocker = None
    candidates = [path.rstrip("/"), *parent_directories(path)]
    # A backend error here only loses the name: the message is complete without it.
    with contextlib.suppress(Exception):
        blocker = next((above for above in candidates if fs.isfile(above)), None)
    subject = "a file" if blocker is None else f"the file {blocker}"
    return ActionError(
        path,
        f"{subject} is in the way: the destination must be a directory, or a path "
        "that does not exist yet below a directory (nothing was added)",
    )


def check_deletes(
    parent: ActionAdded,
    source: Listing,
    destination: Listing,
    max_delete: int | None,
    force: bool,
) -> None:
    """Raise ``ActionError`` when a sync with delete would remove too much."""
    deletes = count_deletes(source, destination)
    # Directories alone do not make a source trustworthy: a fresh filesystem
    # contains lost+found, and an unmounted share may leave its folders behind.
    if not source.files and deletes and not force:
        items = "the only item" if deletes == 1 else f"all {deletes} items"
        raise ActionError(
            parent.source,
            f"the source tree has no files, so a sync with delete would remove "
            f"{items} under {parent.destination}; add --force "
            "(force=True in Python) if that is intended",
        )
    if max_delete is not None and deletes > max_delete:
        raise ActionError(
            parent.destination,
            f"the sync would delete {deletes} items, more than the maximum "
            f"of {max_delete}; nothing was added or deleted. Raise "
            "--max-delete or check the source",
        )


def add_skips_back(
    queue: StorageQueue, tree: ActionState, policy: compare.Policy, *, chunk: int
) -> None:
    """List ``tree`` again and journal an action for each file it skipped.

    A tree that cannot be listed now keeps its skips, with a warning.
    """
    added = tree.added
    assert added.source is not None
    assert added.destination is not None
    try:
        source = queue.with_retries(
            lambda: list_tree(queue.source.fs, added.source), added.source
        )
        destination = destination_listing(queue, added.destination)
    except (ActionError, OSError) as exc:
        logger.warning(
            "the %d files that tree %s skipped stay skipped: listing it "
            "again, to compare them under the policy %s, failed: %s",
            tree.skipped,
            tree.action_id,
            policy,
            exc,
        )
        return
    children = skipped_children(
        added,
        source,
        destination,
        queue.state.actions,
        tree.skipped,
        queue._hints,
    )
    records: list[Record] = list(children)
    logger.info(
        "comparing %d files that tree %s skipped again, under the policy %s",
        len(records),
        tree.action_id,
        policy,
    )
    for start in range(0, len(records), chunk):
        queue._journal(records[start : start + chunk])


def skips_hold(method: str, policy: compare.Policy) -> bool:
    """Tell whether files skipped at listing time by ``method`` pass ``policy``.

    Every such skip needed equal sizes, so ``size`` accepts them all, and
    ``always`` none. Otherwise the policy must be the one that decided:
    ``size+mtime`` and ``checksum`` each accept files the other copies.
    """
    if policy is compare.Policy.SIZE:
        return True
    if policy is compare.Policy.ALWAYS:
        return False
    decided = _SKIP_POLICIES.get(method, compare.Policy.CHECKSUM if method else None)
    return decided is policy


#: The policy behind each ``method`` of a planned skip that is not a digest
#: algorithm (which means ``checksum``).
_SKIP_POLICIES: Final = {
    "size": compare.Policy.SIZE,
    "size+mtime": compare.Policy.SIZE_MTIME,
}


def _same_size(relpath: str, source: Entry, destination: Entry) -> str | None:
    return "size" if source[0] == destination[0] else None


def _size_and_cached_mtime(
    prefix: str,
    find: Callable[[str], Digested | None],
    etags: Mapping[str, str],
) -> Identical:
    """Return the size+mtime test for a destination whose listing shows upload times.

    The mtime that a stat of the object would report comes from the entry
    cached under the object's listed size and ETag. An object with no such
    entry becomes an action, and its run compares it with a stat.
    """

    def identical(relpath: str, source: Entry, destination: Entry) -> str | None:
        if source[0] != destination[0] or source[1] is None:
            return None
        known = find(prefix + relpath)
        if known is None or not compare.etag_matches(
            known, destination[0], etags.get(relpath)
        ):
            return None
        if abs(source[1] - known.mtime_ns) > compare.MODIFY_WINDOW_NS:
            return None
        return "size+mtime"

    return identical


def _same_size_and_mtime(relpath: str, source: Entry, destination: Entry) -> str | None:
    if source[0] != destination[0] or source[1] is None or destination[1] is None:
        return None
    if abs(source[1] - destination[1]) > compare.MODIFY_WINDOW_NS:
        return None
    return "size+mtime"


def _cached(
    known: Digested | None, entry: Entry, etags: Mapping[str, str], relpath: str
) -> bool:
    """Tell whether a cached digest is valid for the file as it was listed.

    An entry with an ETag needs the listed size and ETag; others the
    listed size and mtime (and a local file's ctime and inode). It reads
    the entry's fields in place: a re-sync calls this twice per file, and
    a :class:`compare.FileInfo` per call cost more than the check.
    """
    if known is None:
        return False
    if known.etag is not None:
        return compare.etag_matches(known, entry[0], etags.get(relpath))
    if len(entry) == 4:
        return compare.entry_matches(known, *entry)
    return compare.entry_matches(known, entry[0], entry[1])
