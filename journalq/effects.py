"""The effects of actions: what one attempt of a copy, mkdir, delete or list does.

:class:`Effects` performs one attempt of one action against the source or
destination filesystem and returns the journal records that finish it. It
writes no ``started`` or ``failed`` record and emits no event but a copy's
progress, because the executor (:mod:`journalq.executor`) owns an action's
life: it starts the attempt, calls :meth:`Effects.execute`, classifies what
that raises, retries, and journals the records. The copy is the larger
part and lives in :mod:`journalq.copy_effect`, which this class delegates to.

Every effect is idempotent, so an attempt redone after a crash finds its
work done: a copy goes to a temporary name and is renamed, a mkdir
tolerates an existing directory, and a delete of a missing path succeeds.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Final

import fsspec
import msgspec

from journalq import compare, faults
from journalq.backends import objects
from journalq.copy_effect import CopyEffect
from journalq.errors import DeleteConflictError, PathInTheWayError, queue_command
from journalq.groups import DurableGroup
from journalq.plan import parent_directories
from journalq.records import (
    Completed,
    Failed,
    Identity,
    Kind,
    Outcome,
    Record,
    Service,
)
from journalq.replay import Action, ActionState, Status

if TYPE_CHECKING:
    from journalq.executor import RunContext

__all__ = ["CHILDREN_FAILED", "Effects", "done_record", "tree_end_record"]

#: The error of a tree that failed because some of its items failed.
CHILDREN_FAILED: Final = "ChildrenFailed"


class Effects:
    """Performs the effects of a run's actions, given the copy effect."""

    def __init__(self, context: RunContext, copy: CopyEffect) -> None:
        self.context = context
        self._copy = copy

    def execute(
        self, action: ActionState, attempt: int, group: DurableGroup
    ) -> list[Record] | None:
        """Perform one attempt of ``action`` and return the records that end it."""
        kind = action.kind
        try:
            if kind is Kind.COPY_FILE:
                return self._copy.copy(action, attempt, group)
            if kind is Kind.MKDIR:
                return self._mkdir(action, attempt)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            blocked = self._in_the_way(action)
            if blocked is None:
                raise
            raise blocked from exc
        if kind is Kind.DELETE:
            return self._delete(action, attempt)
        if kind is Kind.LIST:
            return self._list(action, attempt)
        raise ValueError(f"cannot execute an action of kind {kind}")

    def _mkdir(self, action: ActionState, attempt: int) -> list[Record] | None:
        fs, path = self.service_path(action)
        if not self.context.options.dry_run:
            fs.makedirs(path, exist_ok=True)
        if objects.skips_directory(fs, path):
            done = done_record(action, attempt, objects.NO_DIRECTORIES)
            return [msgspec.structs.replace(done, outcome=Outcome.SKIPPED)]
        return [done_record(action, attempt, "mkdir")]

    def _in_the_way(self, action: ActionState) -> PathInTheWayError | None:
        """Return the error for an item of the other type at the target path.

        A copy needs no directory at its destination path and a mkdir no
        file at its path, and both need directories, not files, above it.
        Returns None when neither is the case, and the caller re-raises.
        """
        if action.kind is Kind.COPY_FILE:
            _, destination = self.context.store.state.paths(action)
            assert destination is not None
            fs, path = self.context.destination.fs, destination
            operation = "copy to"
            if fs.isdir(path):
                return PathInTheWayError(
                    path,
                    path,
                    is_directory=True,
                    operation=operation,
                    in_tree=self._in_tree(action, path),
                )
        else:
            fs, path = self.service_path(action)
            operation = "make the directory"
            if fs.isfile(path):
                return PathInTheWayError(
                    path,
                    path,
                    is_directory=False,
                    operation=operation,
                    in_tree=self._in_tree(action, path),
                )
        for above in parent_directories(path):
            if fs.isfile(above):
                return PathInTheWayError(
                    path,
                    above,
                    is_directory=False,
                    operation=operation,
                    in_tree=self._in_tree(action, above),
                )
        return None

    def _in_tree(self, action: ActionState, blocker: str) -> bool:
        """Return whether ``blocker`` lies inside the destination tree of ``action``.

        Only there does a sync with ``--delete`` replace it: a file above the
        tree, or in the way of a copy of one file, stays.
        """
        parent = action.added.parent
        if parent is None:
            return False
        state = self.context.store.state
        tree = state.actions.get(parent)
        if tree is None:
            return False
        _, root = state.paths(tree)
        return root is not None and blocker.startswith(root.rstrip("/") + "/")

    def _delete(self, action: ActionState, attempt: int) -> list[Record] | None:
        fs, path = self.service_path(action)
        if self.context.options.dry_run:
            return [done_record(action, attempt, "delete")]
        faults.point("executor.before_delete")
        listed = action.added.listed
        if listed is not None and not _still_listed(fs, path, listed):
            # Gone already: nothing is left to delete.
            return [done_record(action, attempt, "delete")]
        try:
            if action.added.parent is not None and action.added.recursive:
                # A directory a sync removes: the deletes of everything in it
                # ran in an earlier stage, so it must be empty by now.
                fs.rmdir(path)
            else:
                fs.rm(path, recursive=action.added.recursive)
        except FileNotFoundError:
            pass
        return [done_record(action, attempt, "delete")]

    def _list(self, action: ActionState, attempt: int) -> list[Record] | None:
        fs, path = self.service_path(action)
        added = action.added
        if added.recursive:
            found = fs.find(path, withdirs=True, detail=True)
            entries = list(found.values())
        else:
            entries = fs.ls(path, detail=True)
        if added.dir_only:
            entries = [e for e in entries if e.get("type") == "directory"]
        listing = [
            {
                "name": entry["name"],
                "type": entry.get("type", "file"),
                "size": int(entry.get("size") or 0),
            }
            for entry in entries
        ]
        if self.context.options.dry_run:
            return [done_record(action, attempt, "list")]
        name = self.context.store.write_result(msgspec.msgpack.encode(listing))
        done = done_record(action, attempt, "list")
        return [msgspec.structs.replace(done, result=name)]

    def service_path(
        self, action: ActionState
    ) -> tuple[fsspec.AbstractFileSystem, str]:
        """Return the filesystem and path that a mkdir, delete or list acts on."""
        added = action.added
        context = self.context
        filesystem = (
            context.source if added.service is Service.SOURCE else context.destination
        )
        if added.parent is not None and added.relpath is not None:
            source_path, destination_path = context.store.state.paths(action)
            path = source_path if added.service is Service.SOURCE else destination_path
            assert path is not None
            return filesystem.fs, path
        path = added.destination if added.service is Service.DESTINATION else None
        path = path or added.source
        assert path is not None
        return filesystem.fs, path


def tree_end_record(
    tree: ActionState, items: list[Action], queue: str | os.PathLike[str]
) -> Completed | Failed:
    """Return the record that ends ``tree`` once every one of its ``items`` ended.

    The tree fails when one of them failed and completes otherwise, as
    done, since its files were copied by its items. Its failure message
    names the command that lists them in the queue directory ``queue``.
    A tree that a cancel made wait again ends with the attempt count it
    has, because canceling runs nothing.
    """
    attempt = tree.attempts if tree.reopened_by_cancel else tree.attempts + 1
    failed = sum(1 for item in items if item.status is Status.FAILED)
    if not failed:
        return done_record(tree, attempt, "tree")
    return Failed(
        tree.action_id,
        attempt,
        CHILDREN_FAILED,
        f"{failed} of {len(items)} items failed; see "
        + queue_command("actions --status failed", queue),
        False,
        finished_ns=time.time_ns(),
    )


def done_record(action: ActionState, attempt: int, method: str) -> Completed:
    """Return the ``completed`` record of an effect that moves no bytes."""
    return Completed(
        action.action_id,
        attempt,
        Outcome.DONE,
        method,
        finished_ns=time.time_ns(),
    )


def _still_listed(fs: fsspec.AbstractFileSystem, path: str, listed: Identity) -> bool:
    """Check that the file at ``path`` is still the one a listing found.

    Returns False when nothing is there any more, and raises
    :class:`DeleteConflictError` when something else is: another size,
    another ETag, or, where either side has no ETag, another mtime.
    NOTE: the file can still change between this check and the delete.
    """
    # gcsfs's info() returns the entry of the listing it cached, which is
    # the state to check against.
    fs.invalidate_cache(path)
    try:
        found = compare.stat(fs, path)
    except IsADirectoryError:
        raise DeleteConflictError(path, listed, None) from None
    if found is None:
        return False
    if listed.etag is not None and found.etag is not None:
        # A listing and a stat report the same ETag, but an object store's
        # mtime may come from other fields in each (metadata, LastModified).
        same = (found.size, found.etag) == (listed.size, listed.etag)
    else:
        same = found.size == listed.size and (
            listed.mtime_ns is None
            or found.mtime_ns is None
            or found.mtime_ns == listed.mtime_ns
        )
    if not same:
        raise DeleteConflictError(
            path, listed, Identity(found.size, found.mtime_ns, etag=found.etag)
        )
    return True
