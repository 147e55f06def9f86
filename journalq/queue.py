"""StorageQueue: the public face of a queue.

A queue has one source and one destination filesystem, each given as an
fsspec URL plus storage options, and a directory of its own that contains the
journal. Adding an action journals it durably before the call returns;
:meth:`StorageQueue.run` executes what waits. Opening a queue that a
crashed run left behind resumes it: replay rebuilds the state, interrupted
actions wait again, and trees whose expansion was cut short are expanded
again (their files keep their ids, so nothing is added twice).

When another process holds the queue, :class:`StorageQueue` opens it in
hand-off mode: adds and cancels are written to the queue's inbox, durable
when the call returns, and the running process journals and runs them.
:meth:`StorageQueue.run` then raises :class:`QueueLockedError`.

This module keeps the public methods. Opening, creating and recovering a
queue are in :mod:`journalq.opening`, and listing trees and planning
their skips in :mod:`journalq.expansion`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import posixpath
import queue as queue_module
import stat as stat_module
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import msgspec

from journalq import (
    compare,
    digest,
    expansion,
    failures,
    inbox,
    opening,
    parts,
    retry,
)
from journalq.backends import Filesystem, open_filesystem
from journalq.errors import ActionError, BatchError, QueueError, queue_command
from journalq.events import ActionInfo, Event, EventType, RunSummary
from journalq.executor import Executor, RunOptions
from journalq.expansion import PARENTS
from journalq.expansion import skips_hold as _skips_hold
from journalq.journal import SyncMode
from journalq.plan import (
    Entry,
    action_id,
    check_overlap,
    glob_matches,
    request_key,
)
from journalq.records import (
    ActionAdded,
    Canceled,
    Failed,
    Kind,
    Record,
    Retried,
    Service,
    encode_batch,
)
from journalq.replay import ActionState, QueueState, Status
from journalq.store import QueueStore, queue_directory, read_state

if TYPE_CHECKING:
    from distributed import Client
    from fsspec.callbacks import Callback

__all__ = ["StorageQueue"]

logger = logging.getLogger(__name__)

#: Records of a tree expansion journaled per append, so a million-file tree
#: never puts all its records in one frame.
EXPANSION_CHUNK: Final = 50_000

#: The statuses of an action that ``cancel`` with its id cancels.
_CANCELABLE: Final = frozenset({Status.WAITING, Status.FAILED})
#: The statuses of the actions that a cancel handed to the process that
#: runs the queue names. An action in progress on disk may be out at a copy
#: process, which returns it unstarted when the request arrives. The
#: running process then cancels it, and spares it if it started.
_HANDOFF_CANCELABLE: Final = frozenset({Status.WAITING, Status.INPROGRESS})

#: The statuses whose action's last error is its current one: failed, or
#: waiting or running again after a failed attempt.
_RETRIED_OR_FAILED: Final = frozenset(
    {Status.FAILED, Status.WAITING, Status.INPROGRESS}
)

T = TypeVar("T")

#: A function that journals an action that was checked (and its tree
#: listed) and returns its id, or the id of a pending action for the same
#: request.
Commit = Callable[[], str]


class StorageQueue:
    """A durable queue of storage actions between two filesystems.

    Parameters
    ----------
    source, destination:
        fsspec URLs or local paths (``"/data"``, ``"memory://"``,
        ``"s3://bucket"``). Required when the queue is created; for an
        existing queue they may be omitted, and must match when given.
    name:
        A queue name (kept under ``$JOURNALQ_HOME``) or a directory path.
    parallelism:
        Worker threads of :meth:`run`.
    compare:
        How a run decides that a destination file is already identical:
        ``"checksum"`` (size, then content digest), ``"size"``,
        ``"size+mtime"`` or ``"always"`` (never skip). Default: the policy
        the queue was created with, ``"checksum"`` for a new queue.
    sync:
        ``"batch"`` (default): every durable record survives power loss.
        ``"none"``: records survive a process crash but not power loss.
    source_options, destination_options:
        Storage options of the filesystems. Secrets among them (keys,
        tokens, passwords) are used but never journaled.
    max_attempts:
        Attempts at an action before it fails: transient errors retried in
        one run, or runs that crashed during it.
    read_only:
        Read the queue's state without taking its lock or changing a file,
        for reports while another process may be running it.
    part_threshold:
        Files of this many bytes or more are copied in parts of 16 MiB or
        more, each journaled once durable at the destination, so a copy
        that dies resumes after its last part instead of from the start.
        Default: 64 MiB (:data:`journalq.parts.PART_THRESHOLD`).
    backoff:
        How long to wait before another attempt after a transient failure,
        of an action in a run or of a listing when a tree is added.
        Default: :class:`journalq.retry.Backoff` with its defaults.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | None = None,
        destination: str | os.PathLike[str] | None = None,
        name: str | os.PathLike[str] = "local",
        parallelism: int = 4,
        *,
        compare: str | None = None,
        sync: SyncMode = "batch",
        source_options: dict[str, Any] | None = None,
        destination_options: dict[str, Any] | None = None,
        max_attempts: int = 5,
        read_only: bool = False,
        part_threshold: int = parts.PART_THRESHOLD,
        backoff: retry.Backoff | None = None,
    ) -> None:
        if parallelism < 1:
            raise ActionError(parallelism, "parallelism must be at least 1")
        self.directory = queue_directory(name)
        self.parallelism = parallelism
        self.policy = _parse_policy(compare or "checksum")
        self.max_attempts = max_attempts
        self.read_only = read_only
        self.part_threshold = part_threshold
        self.backoff = backoff or retry.Backoff()
        self._store: QueueStore | None = None
        self._handoff_state: QueueState | None = None
        self._unavailable: QueueError | None = None
        # The URL and options of each filesystem, and the ones opened.
        self._endpoints: dict[Service, tuple[str, dict[str, Any]]] = {}
        self._opened: dict[Service, Filesystem] = {}
        # Whether this object created the queue, with the options it was given.
        self._created_here = False
        # What listing a tree found about each of its files, for the run
        # that follows in this process (see CopyEffect._file_infos).
        self._hints: dict[str, tuple[Entry, Entry | None]] = {}
        opening.open_queue(
            self,
            None if source is None else os.fspath(source),
            None if destination is None else os.fspath(destination),
            source_options,
            destination_options,
            sync,
        )
        if self._store is not None:
            opening.recover(self, chunk=EXPANSION_CHUNK)
        if compare is None:
            assert self.state.created is not None
            self.policy = _parse_policy(self.state.created.compare)

    # State --------------------------------------------------------------------

    @property
    def state(self) -> QueueState:
        if self._store is not None:
            return self._store.state
        assert self._handoff_state is not None
        return self._handoff_state

    @property
    def handoff(self) -> bool:
        """True when another process runs the queue and adds go to its inbox."""
        return self._store is None and not self.read_only

    def _require_store(self) -> QueueStore:
        if self._store is None:
            assert self._unavailable is not None
            raise self._unavailable
        return self._store

    def _journal(self, records: list[Record]) -> None:
        if self._store is not None:
            self._store.append(records, durable=True)
            return
        if self.read_only:
            assert self._unavailable is not None
            raise self._unavailable
        inbox.post(self.directory, encode_batch(records))
        assert self._handoff_state is not None
        self._handoff_state.apply_all(records)

    # Adding actions -----------------------------------------------------------

    def _new_action(self, kind: Kind, *parts: object, **fields: Any) -> ActionAdded:
        key = request_key(kind, *parts)
        generation = self.state.generations.get(key, 0)
        return ActionAdded(
            action_id(key, generation), kind, key, added_ns=time.time_ns(), **fields
        )

    def _refresh(self) -> None:
        """Read the state again in hand-off mode, where the holder changes it.

        Without this a long-lived hand-off queue would take a request that
        the holder finished meanwhile for a pending one and post nothing.
        """
        if self.handoff:
            self._handoff_state = read_state(self.directory)

    def _pending(self, kind: Kind, *parts: object) -> str | None:
        """Return the id of a pending action for the same request, if any."""
        self._refresh()
        existing = self.state.by_key.get(request_key(kind, *parts))
        if existing is None:
            return None
        action = self.state.actions.get(existing)
        if action is None or action.terminal:
            return None
        return existing

    def copy_file(self, sourcefile: str, destinationfile: str) -> str:
        """Add a copy of one file; return the action's id.

        The copy is skipped at run time when the destination is identical.
        A ``destinationfile`` ending in ``/`` is a directory to copy into.
        """
        return self._prepare_copy_file(sourcefile, destinationfile)()

    def _prepare_copy_file(self, sourcefile: str, destinationfile: str) -> Commit:
        source = self.source.path(sourcefile)
        destination = self.destination.path(destinationfile)
        if destinationfile.endswith("/"):
            destination = f"{destination.rstrip('/')}/{os.path.basename(source)}"
        return self._prepare_file(source, destination)

    def _prepare_file(self, source: str, destination: str) -> Commit:
        """Check a copy of one file between paths already resolved.

        A local source's size is recorded with the action, for the run's
        byte totals and its choice of workers. A remote source's size would
        cost a request per file added, so it is learned when it is copied.
        """
        check_overlap(self.source.fs, source, self.destination.fs, destination)
        size = _local_size(source) if self.source.local else None

        def commit() -> str:
            pending = self._pending(Kind.COPY_FILE, source, destination)
            if pending is not None:
                return pending
            added = self._new_action(
                Kind.COPY_FILE,
                source,
                destination,
                source=source,
                destination=destination,
                size=size,
            )
            previous = self.state.by_key.get(added.key)
            self._journal([added])
            self._replace_failed(previous, added.action_id)
            return added.action_id

        return commit

    def copy_tree(self, sourcetree: str, destinationtree: str) -> str:
        """Add a copy of every file under ``sourcetree``; return the tree's id.

        The tree at ``sourcetree`` becomes the tree at ``destinationtree``
        (its contents land directly in it). The files are listed now and
        their destination paths are journaled, so running the queue later
        or again never nests the tree.
        """
        return self._prepare_copy_tree(sourcetree, destinationtree)()

    def _prepare_copy_tree(self, sourcetree: str, destinationtree: str) -> Commit:
        return self._prepare_tree(
            Kind.COPY_TREE,
            self.source.path(sourcetree),
            self.destination.path(destinationtree),
        )

    def copy_glob(self, pattern: str, destinationdir: str) -> list[str]:
        """Add a copy of each match of ``pattern`` into ``destinationdir``.

        Returns the ids of the actions, in the order of the matched paths.
        The rules, those of ``cp -r dir/* dst/``:

        * Wildcards (``*``, ``?``, ``[...]``) may appear in the last
          component of ``pattern`` only, and ``**`` not at all, so every
          match has its own name in ``destinationdir``.
        * ``pattern`` is expanded now, with the source filesystem's
          ``glob``. A file created later does not match.
        * A file ``dir/a.txt`` becomes a copy_file to
          ``destinationdir/a.txt``, and a directory ``dir/sub`` a
          copy_tree to ``destinationdir/sub``.
        * ``*`` matches names that start with a dot as well, as fsspec's
          glob does (a shell would leave them out).
        * A symbolic link to a directory is not followed, as in a tree:
          it is left out with a warning.
        * When nothing matches, ``ActionError`` is raised and nothing is
          added. Every match is checked, and every matched directory
          listed, before the first is added, so a match that overlaps the
          destination or cannot be listed rejects the whole pattern.
        * Adding the same pattern again while its copies wait adds nothing
          and returns their ids.
        """
        source = self.source.path(pattern)
        destination = self.destination.path(destinationdir)
        matches = self.with_retries(
            lambda: glob_matches(self.source.fs, source), source
        )
        targets = [
            (path, posixpath.join(destination, posixpath.basename(path)), is_tree)
            for path, is_tree in matches
        ]
        commits = [
            self._prepare_tree(Kind.COPY_TREE, path, target)
            if is_tree
            else self._prepare_file(path, target)
            for path, target, is_tree in targets
        ]
        return [commit() for commit in commits]

    def sync(
        self,
        sourcetree: str,
        destinationtree: str,
        *,
        delete: bool = False,
        max_delete: int | None = None,
        force: bool = False,
    ) -> str:
        """Add a sync of ``destinationtree`` to ``sourcetree``.

        A copy_tree that, with ``delete``, also removes destination files the
        source does not have. Deleting is refused when the source tree is
        empty (unless ``force``) and when it would remove more than
        ``max_delete`` items; nothing is added then.
        """
        return self._prepare_sync(
            sourcetree,
            destinationtree,
            delete=delete,
            max_delete=max_delete,
            force=force,
        )()

    def _prepare_sync(
        self,
        sourcetree: str,
        destinationtree: str,
        *,
        delete: bool,
        max_delete: int | None,
        force: bool,
    ) -> Commit:
        return self._prepare_tree(
            Kind.SYNC,
            self.source.path(sourcetree),
            self.destination.path(destinationtree),
            delete=delete,
            max_delete=max_delete,
            force=force,
        )

    def _prepare_tree(
        self,
        kind: Kind,
        source: str,
        destination: str,
        *,
        delete: bool = False,
        max_delete: int | None = None,
        force: bool = False,
    ) -> Commit:
        """Check and list a tree between paths already resolved."""
        pending = self._pending(kind, source, destination, delete)
        if pending is not None:
            return lambda: pending
        check_overlap(self.source.fs, source, self.destination.fs, destination)
        self._check_outside_queue(self.source, source, "source")
        self._check_outside_queue(self.destination, destination, "destination")

        def new_parent() -> ActionAdded:
            return self._new_action(
                kind,
                source,
                destination,
                delete,
                source=source,
                destination=destination,
                delete_extraneous=delete,
            )

        listings = expansion.list_trees(
            self, new_parent(), max_delete=max_delete, force=force
        )

        def commit() -> str:
            # An action that add_all journaled after this check may be the
            # same request.
            again = self._pending(kind, source, destination, delete)
            if again is not None:
                return again
            parent = new_parent()
            previous = self.state.by_key.get(parent.key)
            expansion.journal_tree(self, parent, listings, chunk=EXPANSION_CHUNK)
            self._replace_failed(previous, parent.action_id)
            return parent.action_id

        return commit

    def _check_outside_queue(
        self, filesystem: Filesystem, path: str, role: str
    ) -> None:
        """Reject a local tree that contains the queue's own directory.

        A sync with delete would remove the journal it is writing, and a
        copy would carry the live journal along.
        """
        if not filesystem.local:
            return
        tree = os.path.realpath(path).rstrip("/") + "/"
        if (os.path.realpath(self.directory) + "/").startswith(tree):
            raise ActionError(
                path,
                f"the {role} tree contains the queue directory {self.directory}; "
                "keep the queue outside both trees (--queue elsewhere)",
            )

    def with_retries(self, call: Callable[[], T], path: str) -> T:
        """Return what ``call`` returns, trying again after transient failures.

        Up to ``max_attempts`` tries with :attr:`backoff` between them, as
        a run retries an action. A transient failure of the last try is
        raised as ``ActionError``, and a permanent one as it is.
        """
        attempts = max(1, self.max_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except Exception as exc:
                if retry.classify(exc) == "permanent":
                    raise
                if attempt == attempts:
                    raise ActionError(
                        path,
                        f"listing failed {attempt} times, the last time with: "
                        f"{exc}; nothing was added or deleted. Add it again "
                        "once the filesystem answers",
                    ) from exc
                delay = self.backoff.delay(attempt)
                logger.info("listing %s again in %.2fs after %s", path, delay, exc)
                time.sleep(delay)
        raise AssertionError("the loop returns or raises")

    @property
    def source(self) -> Filesystem:
        """The source filesystem, opened when the queue is.

        A read-only queue opens it on first use, so reports that never
        touch it need no credentials and no connection (SFTP connects when
        a filesystem is opened).
        """
        return self._filesystem(Service.SOURCE)

    @property
    def destination(self) -> Filesystem:
        """The destination filesystem, opened as :attr:`source` is."""
        return self._filesystem(Service.DESTINATION)

    def _filesystem(self, role: Service) -> Filesystem:
        opened = self._opened.get(role)
        if opened is None:
            opened = self._opened[role] = open_filesystem(*self._endpoints[role])
        return opened

    def mkdir(self, service: str, path: str) -> str:
        """Add the creation of directory ``path`` on ``service``."""
        return self._prepare_mkdir(service, path)()

    def _prepare_mkdir(self, service: str, path: str) -> Commit:
        role = _service(service)
        resolved = self._filesystem(role).path(path)
        fields = _service_fields(role, resolved)
        return lambda: self._add_once(
            self._new_action(Kind.MKDIR, str(role), resolved, **fields)
        )

    def delete(self, service: str, path: str, recursive: bool = False) -> str:
        """Add the deletion of ``path`` on ``service``.

        A missing path counts as deleted. A directory needs ``recursive``.
        """
        return self._prepare_delete(service, path, recursive)()

    def _prepare_delete(self, service: str, path: str, recursive: bool) -> Commit:
        role = _service(service)
        resolved = self._filesystem(role).path(path)
        self._check_outside_queue(self._filesystem(role), resolved, str(role))
        fields = _service_fields(role, resolved)
        return lambda: self._add_once(
            self._new_action(
                Kind.DELETE,
                str(role),
                resolved,
                recursive,
                recursive=recursive,
                **fields,
            )
        )

    def list(
        self,
        path: str,
        dir_only: bool = False,
        recursive: bool = False,
        service: str = "source",
    ) -> str:
        """Add a listing of ``path``; read it with :meth:`list_result`."""
        return self._prepare_list(path, dir_only, recursive, service)()

    def _prepare_list(
        self, path: str, dir_only: bool, recursive: bool, service: str
    ) -> Commit:
        role = _service(service)
        resolved = self._filesystem(role).path(path)
        fields = _service_fields(role, resolved)
        return lambda: self._add_once(
            self._new_action(
                Kind.LIST,
                str(role),
                resolved,
                dir_only,
                recursive,
                dir_only=dir_only,
                recursive=recursive,
                **fields,
            )
        )

    def _add_once(self, added: ActionAdded) -> str:
        self._refresh()
        existing = self.state.by_key.get(added.key)
        if existing is not None and not self.state.actions[existing].terminal:
            return existing
        generation = self.state.generations.get(added.key, 0)
        added = msgspec.structs.replace(
            added, action_id=action_id(added.key, generation)
        )
        self._journal([added])
        self._replace_failed(existing, added.action_id)
        return added.action_id

    def _replace_failed(self, previous: str | None, replacement: str) -> None:
        """Drop ``previous``, the last action of a request added again, if it failed."""
        records: list[Record] = []
        records += failures.replacement_cancels(self.state, previous, replacement)
        if records:
            self._journal(records)

    def add(self, specification: dict[str, Any]) -> str:
        """Add one action given as a dict; return its id.

        Keys: ``kind`` (copy_file, copy_tree, sync, mkdir, delete, list) and
        the arguments of the method of that name (``source``,
        ``destination``, ``service``, ``path``, ``recursive``, ``delete``,
        ``dir_only``...).
        """
        return self._prepare(specification)()

    def add_all(self, specifications: Iterable[dict[str, Any]]) -> list[str]:
        """Add actions given as dicts, all or none; return their ids in order.

        Each dict is what :meth:`add` takes. Every action is checked, and
        every tree listed, before the first is journaled, so an action that
        :meth:`add` would reject raises :class:`BatchError`, which names its
        index, and adds nothing. The listings of all the trees stay in
        memory until the last action is checked.

        NOTE: an error while journaling (a full disk, a journal that failed
        before) leaves the actions journaled before it in the queue.
        """
        commits: list[Commit] = []
        for index, specification in enumerate(specifications):
            try:
                commits.append(self._prepare(specification))
            except (ActionError, OSError) as error:
                raise BatchError(index, error) from error
        return [commit() for commit in commits]

    def _prepare(self, specification: dict[str, Any]) -> Commit:
        """Check the action of a dict that :meth:`add` takes; nothing is journaled."""
        spec = dict(specification)
        kind = spec.pop("kind", None)
        try:
            if kind == "copy_file":
                return self._prepare_copy_file(spec["source"], spec["destination"])
            if kind == "copy_tree":
                return self._prepare_copy_tree(spec["source"], spec["destination"])
            if kind == "sync":
                return self._prepare_sync(
                    spec["source"],
                    spec["destination"],
                    delete=bool(spec.get("delete", False)),
                    max_delete=spec.get("max_delete"),
                    force=bool(spec.get("force", False)),
                )
            if kind == "mkdir":
                return self._prepare_mkdir(
                    spec.get("service", "destination"), spec["path"]
                )
            if kind == "delete":
                return self._prepare_delete(
                    spec.get("service", "destination"),
                    spec["path"],
                    recursive=bool(spec.get("recursive", False)),
                )
            if kind == "list":
                return self._prepare_list(
                    spec["path"],
                    dir_only=bool(spec.get("dir_only", False)),
                    recursive=bool(spec.get("recursive", False)),
                    service=spec.get("service", "source"),
                )
        except KeyError as exc:
            raise ActionError(
                specification, f"the {kind} action needs the field {exc.args[0]!r}"
            ) from None
        raise ActionError(
            kind,
            "unknown action kind; expected one of copy_file, copy_tree, sync, "
            "mkdir, delete, list",
        )

    # Canceling, retrying ------------------------------------------------------

    def cancel(self, id: str | None = None) -> list[str]:
        """Cancel one action, or every waiting action when ``id`` is None.

        ``id`` may name a waiting action or a failed one, which is dropped:
        it no longer counts as failed and ``retry`` leaves it alone.
        Canceling a tree cancels its files that have not started or have
        failed. A tree that failed only because of the failed files
        canceled completes. Returns the ids canceled; an action that
        started, completed or was canceled before is left as it is. In
        hand-off mode, returns the ids asked of the process that runs the
        queue, in-progress ones included, because an action out at a copy
        process may come back unstarted. That process cancels those that
        have not started when it reads the request, and ends their trees
        when its run ends.
        """
        state = self.state
        if id is not None and id not in state.actions:
            raise ActionError(
                id,
                "no action with this id in the queue; list the ids with "
                + queue_command("actions", self.directory),
            )
        targets = self._cancel_targets(id)
        if self._store is not None:
            canceled = self._store.cancel(targets, by="user")
            endings = failures.tree_endings(self.state, canceled, self.directory)
            if endings:
                self._store.append(endings, durable=True)
            return canceled
        records: list[Record] = [Canceled(target, "user") for target in targets]
        if records:
            self._journal(records)
        return targets

    def _cancel_targets(self, id: str | None) -> list[str]:
        state = self.state
        handoff = self._store is None
        if id is None:
            statuses = _HANDOFF_CANCELABLE if handoff else {Status.WAITING}
            return [
                action.action_id
                for action in state.actions.values()
                if action.status in statuses
            ]
        statuses = _CANCELABLE | _HANDOFF_CANCELABLE if handoff else _CANCELABLE
        # The status is read first: reading a compacted item's parent
        # decodes its history, and a compacted item has ended.
        return [
            action.action_id
            for action in state.actions.values()
            if action.status in statuses
            and id in (action.action_id, action.added.parent)
        ]

    def retry(self) -> list[str]:
        """Make the failed actions wait again; return the ids that wait.

        Each keeps its id, its attempt count and its last error, so
        ``retry`` twice adds nothing twice. A tree that failed because of
        its files waits again with them, and a tree that could not be listed
        is listed again. A tree with items that failed when it was listed
        (a directory that could not be listed, a name that cannot be copied
        safely) is added again as a new action of the same request, which
        lists it anew and replaces it (see :mod:`journalq.failures`). A
        failed action whose request was added again since is replaced by
        that newer action and no longer counts as failed.
        """
        self._refresh()
        plan = failures.retry_plan(self.state)
        for action, latest in plan.replaced:
            self._replace_failed(action.action_id, latest)
        waiting = [action.action_id for action in plan.reopen]
        if plan.reopen:
            now = time.time_ns()
            self._journal([Retried(action_id, now) for action_id in waiting])
        if self._store is not None:
            for action in plan.reopen:
                if action.kind in PARENTS and action.children is None:
                    expansion.expand_again(self, action, chunk=EXPANSION_CHUNK)
        for tree in plan.relist:
            new_id = self._add_again(tree)
            if new_id is not None:
                waiting.append(new_id)
        return waiting

    def _add_again(self, tree: ActionState) -> str | None:
        """Add the request of the failed ``tree`` again; return the new id.

        The new action lists the tree anew and replaces ``tree``. A tree
        that cannot be listed now stays failed, with a warning.
        """
        added = tree.added
        assert added.source is not None
        assert added.destination is not None
        try:
            commit = self._prepare_tree(
                added.kind,
                added.source,
                added.destination,
                delete=added.delete_extraneous,
            )
            return commit()
        except (ActionError, OSError) as exc:
            logger.warning(
                "tree %s stays failed: listing it again failed: %s",
                tree.action_id,
                exc,
            )
            return None

    # Reading ------------------------------------------------------------------

    def status(self) -> dict[str, int]:
        """Return counts of the queue's actions by status, plus bytes copied.

        Keys: length (the actions, which the five statuses add up to),
        waiting, inprogress, completed, failed, canceled, skipped, bytes,
        identical_when_listed, part_bytes, part_copies and cancels_requested.
        ``skipped`` counts the files not copied because they were identical:
        ``identical_when_listed``, the files a tree's listing found
        identical, which have no action, plus the completed actions that
        were skipped when they ran. ``bytes`` counts the completed copies,
        and ``part_bytes`` the journaled parts of the ``part_copies`` large
        copies that have not completed and were not canceled.
        ``cancels_requested`` counts the cancels sent to a queue that
        another process runs and that it has not read yet.
        """
        return self.state.status_counts()

    def get_actions(self, status: str | None = None) -> list[ActionInfo]:
        """Return the queue's actions, optionally only those in ``status``."""
        wanted = Status(status) if status is not None else None
        return [
            self._info(action)
            for action in self.state.actions.values()
            if wanted is None or action.status is wanted
        ]

    def get_action(self, id: str) -> ActionInfo:
        action = self.state.actions.get(id)
        if action is None:
            raise ActionError(
                id,
                "no action with this id in the queue; list the ids with "
                + queue_command("actions", self.directory),
            )
        return self._info(action)

    def _info(self, action: ActionState) -> ActionInfo:
        source, destination = self.state.paths(action)
        added = action.added
        if added.service is Service.SOURCE and added.parent is not None:
            destination = None
        if added.service is Service.DESTINATION and added.parent is not None:
            source = None
        completed = action.completed
        error = action.error
        last_error = f"{error.error}: {error.message}" if error else None
        copied = action.bytes
        if action.parts is not None and completed is None:
            # A killed run's progress record may be lost or reset; its
            # journaled parts are at the destination all the same.
            journaled = sum(part.size for part in action.parts.written.values())
            copied = max(copied, journaled)
        return ActionInfo(
            id=action.action_id,
            kind=str(added.kind),
            status=str(action.status),
            source=source,
            destination=destination,
            service=str(added.service) if added.service else None,
            attempts=action.attempts,
            bytes=copied,
            outcome=str(completed.outcome) if completed else None,
            method=completed.method if completed else None,
            error=last_error if action.status in _RETRIED_OR_FAILED else None,
            parent=added.parent,
            last_error=last_error,
        )

    def list_result(self, id: str) -> list[dict[str, Any]]:
        """Return the entries a completed list action stored."""
        action = self.state.actions.get(id)
        if action is None or action.kind is not Kind.LIST:
            raise ActionError(id, "no list action with this id in the queue")
        if action.completed is None or action.completed.result is None:
            raise ActionError(
                id, f"the list action is {action.status}, not completed; run the queue"
            )
        path = self.directory / "results" / f"{action.completed.result}.msgpack"
        return msgspec.msgpack.decode(path.read_bytes())

    # Running ------------------------------------------------------------------

    def run(
        self,
        *,
        on_event: Any = None,
        stop: threading.Event | None = None,
        dry_run: bool = False,
        compare: str | None = None,
        parallelism: int | None = None,
        event_types: Iterable[str] | None = None,
        client: Client | None = None,
        callback: Callback | None = None,
    ) -> RunSummary:
        """Execute every waiting action; return what the run did.

        Returns when every action has ended, or soon after ``stop`` is set:
        then no new action starts and copies in flight stop between chunks.
        Actions handed off by other processes while the run works are run
        too, before it returns. ``on_event`` gets every event, or only those
        of ``event_types`` (``"started"``, ``"progress"``...); a run with
        fewer events to build is faster on many small files.

        With ``client``, a ``distributed.Client``, the new files of each
        stage are copied on that Dask cluster's workers while this process
        keeps the journal (see :mod:`journalq.cluster`).

        ``callback``, an ``fsspec.callbacks.Callback`` such as
        ``TqdmCallback``, gets the run's total bytes with ``set_size`` and
        the bytes copied with ``relative_update``, and a child from
        ``branched(source, destination)`` per file copy (see
        :class:`journalq.progress.CallbackProgress`). The run does not
        close it.
        """
        helpers = None
        if client is not None:
            from journalq.cluster import ClusterHelpers

            helpers = ClusterHelpers(client)
        if callback is not None:
            on_event, event_types = self._feed_callback(callback, on_event, event_types)
        return self._run(
            on_event=on_event,
            stop=stop,
            dry_run=dry_run,
            compare=compare,
            parallelism=parallelism,
            event_types=event_types,
            helpers=helpers,
        )

    def _feed_callback(
        self,
        callback: Callback,
        on_event: Callable[[Event], None] | None,
        event_types: Iterable[str] | None,
    ) -> tuple[Callable[[Event], None], set[str] | None]:
        """Return ``on_event`` and ``event_types`` with ``callback`` fed too."""
        from journalq.progress import CallbackProgress

        feeder = CallbackProgress.for_queue(callback, self)
        if on_event is None:
            return feeder, set(feeder.event_types)
        wanted = None if event_types is None else {str(t) for t in event_types}

        def both(event: Event) -> None:
            feeder(event)
            if wanted is None or event.type in wanted:
                on_event(event)

        if wanted is None:
            return both, None
        return both, wanted | set(feeder.event_types)

    def _run(self, only: frozenset[str] | None = None, **settings: Any) -> RunSummary:
        store = self._require_store()
        options = RunOptions(
            policy=_parse_policy(settings["compare"])
            if settings.get("compare")
            else self.policy,
            parallelism=settings.get("parallelism") or self.parallelism,
            max_attempts=self.max_attempts,
            dry_run=bool(settings.get("dry_run")),
            on_event=settings.get("on_event"),
            stop=settings.get("stop"),
            only=only,
            hints=self._hints,
            event_types=_event_types(settings.get("event_types")),
            helpers=settings.get("helpers"),
            part_threshold=self.part_threshold,
            backoff=self.backoff,
        )
        if not options.dry_run:
            # NOTE: a dry run does not add the files back. It counts them as
            # skipped, though a real run under a stricter policy compares
            # them again.
            self._redecide_skips(options.policy, only)
        open_trees = self._open_trees()
        total = RunSummary()
        planned: list[tuple[ActionState, Failed]] = []
        store.drain_inbox()
        while True:
            executor = Executor(store, self.source, self.destination, options)
            summary = executor.run()
            _accumulate(total, summary)
            planned += executor.dry_run_failures
            if summary.interrupted or options.dry_run or only is not None:
                break
            # Actions handed off during the pass wait for the next one. A
            # pass that ended nothing, with nothing new handed off, means
            # what waits cannot run now. A hand-off with nothing to run
            # still gets a pass, which ends the trees that its cancels left
            # with every item ended.
            drained = store.drain_inbox()
            progress = summary.copied + summary.skipped + summary.failed + summary.done
            if not (progress or drained):
                break
            if not drained and not self._has_runnable():
                break
        # Hints left unused only save a stat, and the emptied dict still
        # keeps a table sized for every file the trees listed.
        self._hints = {}
        if options.dry_run:
            self._predict_failures(total, planned, open_trees)
            self._predict_listed_skips(total, open_trees)
            return total
        ended = {
            tree
            for tree in open_trees
            if self.state.actions[tree].status is Status.FAILED
        }
        total.failed += len(self._rejected_items(ended))
        total.failures = self.get_actions("failed")
        return total

    def _predict_failures(
        self,
        summary: RunSummary,
        planned: list[tuple[ActionState, Failed]],
        trees: set[str],
    ) -> None:
        """Give a dry run's ``summary`` the failures a real run would have.

        Those are the failures of the dry run's actions, which it did not
        journal, and the listing failures of the open ``trees``. A real run
        fails each such tree once its other items end, and counts them then.
        """
        rejected = self._rejected_items(trees)
        summary.failed += len(rejected)
        summary.failures = [self._planned_failure(*failure) for failure in planned]
        summary.failures += [self._info(action) for action in rejected]

    def _predict_listed_skips(self, summary: RunSummary, trees: set[str]) -> None:
        """Count in a dry run's ``summary`` the files that ``trees`` skipped.

        Those files were found identical when their tree was listed, so they
        have no action. A real run counts them when it ends the tree, which
        a dry run never does.
        """
        for tree in trees:
            skipped = self.state.actions[tree].skipped
            summary.skipped += skipped
            summary.identical_when_listed += skipped

    def _planned_failure(self, action: ActionState, record: Failed) -> ActionInfo:
        """Return ``action`` as it would be once ``record`` was journaled."""
        error = f"{record.error}: {record.message}"
        return dataclasses.replace(
            self._info(action),
            status=str(Status.FAILED),
            attempts=record.attempt,
            error=error,
            last_error=error,
        )

    def _redecide_skips(
        self, policy: compare.Policy, only: frozenset[str] | None
    ) -> None:
        """Add back the files that open trees skipped and ``policy`` would not.

        A tree's listing skips files found identical under the policy of
        that moment, and a run with a stricter policy compares them again:
        the tree is listed once more and each such file gets an action.
        """
        for action in list(self.state.actions.values()):
            if action.kind not in PARENTS or action.terminal or not action.skipped:
                continue
            if only is not None and action.action_id not in only:
                continue
            assert isinstance(action, ActionState)
            own = action.added.compare
            tree_policy = _parse_policy(own) if own else policy
            if not _skips_hold(action.skip_method, tree_policy):
                expansion.add_skips_back(
                    self, action, tree_policy, chunk=EXPANSION_CHUNK
                )

    def _open_trees(self) -> set[str]:
        return {
            action.action_id
            for action in self.state.actions.values()
            if action.kind in PARENTS and not action.terminal
        }

    def _rejected_items(self, trees: set[str]) -> list[ActionState]:
        """Return the items of ``trees`` that failed when they were listed.

        Such an item (a rejected name, a directory that could not be
        listed) failed before any run. The run that ends its tree counts it,
        so that no run reports success while it is failed.
        """
        if not trees:
            return []
        return [
            action
            for action in self.state.actions.values()
            if action.status is Status.FAILED
            and failures.failed_at_listing(action)
            and action.added.parent in trees
        ]

    def _has_runnable(self) -> bool:
        return any(
            action.status is Status.WAITING and action.kind not in PARENTS
            for action in self.state.actions.values()
        )

    def run_iter(self, **settings: Any) -> Iterator[Event]:
        """Run the queue in a thread and yield its events as they happen.

        Closing the generator early sets the run's stop event and waits for
        the run to stop.
        """
        events: queue_module.Queue[Event | None] = queue_module.Queue()
        stop = settings.pop("stop", None) or threading.Event()
        failure: list[BaseException] = []

        def target() -> None:
            try:
                self.run(on_event=events.put, stop=stop, **settings)
            except BaseException as exc:
                failure.append(exc)
            finally:
                events.put(None)

        thread = threading.Thread(target=target, name="journalq-run", daemon=True)
        thread.start()
        try:
            while (event := events.get()) is not None:
                yield event
        finally:
            stop.set()
            thread.join()
        if failure:
            raise failure[0]

    def action(self, specification: dict[str, Any]) -> ActionInfo:
        """Add one action from a dict and execute it now; return its state."""
        new_id = self.add(specification)
        self._run(only=frozenset({new_id}))
        return self.get_action(new_id)

    def compact(self) -> None:
        """Snapshot the state now so the journal behind it can be deleted."""
        self._require_store().take_snapshot()

    # Lifetime -----------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every record journaled so far is on disk.

        A run journals completions without waiting for the disk, so a crash
        can lose the last few. An ``on_event`` callback that reports
        completions as done calls this first. A hand-off queue has no
        journal open and returns at once.
        """
        if self._store is not None:
            self._store.flush()

    def close(self) -> None:
        """Flush the journal and release the queue's lock."""
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = " (hand-off)" if self.handoff else ""
        return f"StorageQueue({str(self.directory)!r}){mode}"


def _event_types(names: Iterable[str] | None) -> frozenset[EventType] | None:
    if names is None:
        return None
    try:
        return frozenset(EventType(name) for name in names)
    except ValueError:
        raise ActionError(
            names,
            "unknown event type; expected some of "
            + ", ".join(str(kind) for kind in EventType),
        ) from None


def _local_size(path: str) -> int | None:
    """Return the size of the local file at ``path``; None if there is none."""
    try:
        info = os.stat(digest.local_path(path))
    except OSError:
        return None
    return info.st_size if stat_module.S_ISREG(info.st_mode) else None


def _accumulate(total: RunSummary, part: RunSummary) -> None:
    total.copied += part.copied
    total.skipped += part.skipped
    total.identical_when_listed += part.identical_when_listed
    total.failed += part.failed
    total.done += part.done
    total.deleted += part.deleted
    total.retried += part.retried
    total.bytes += part.bytes
    total.resumed_bytes += part.resumed_bytes
    total.elapsed += part.elapsed
    total.interrupted = part.interrupted
    total.remaining = part.remaining


#: algorithm (which means ``checksum``).
_SKIP_POLICIES: Final = {
    "size": compare.Policy.SIZE,
    "size+mtime": compare.Policy.SIZE_MTIME,
}


def _parse_policy(text: str) -> compare.Policy:
    return compare.Policy.parse(text)


def _service(value: str) -> Service:
    try:
        return Service(value)
    except ValueError:
        raise ActionError(
            value, "unknown service; expected 'source' or 'destination'"
        ) from None


def _service_fields(role: Service, path: str) -> dict[str, Any]:
    if role is Service.SOURCE:
        return {"service": role, "source": path}
    return {"service": role, "destination": path}
