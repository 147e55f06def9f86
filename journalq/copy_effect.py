"""The effect of a copy-file action: compare, copy, and record the digests.

:class:`CopyEffect` performs one attempt of a copy. It compares the source
with the destination under the action's policy (:mod:`journalq.compare`),
using the digest cache kept in the journal, and skips a destination that
is already identical. Otherwise it copies the file to a temporary name and
renames it (:mod:`journalq.transfer`), or, for a large file, copies it in
parts that it journals one by one and resumes on the next attempt
(:mod:`journalq.parts`). It returns the ``digested`` and ``completed``
records that finish the attempt, and the executor journals them.

The copy is its own module because it is most of what the executor's
effects do. It is also the one effect with state across attempts: it
remembers which parts of a large copy earlier runs sent, so the summary
counts only this run's bytes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import fsspec
from fsspec.implementations.memory import MemoryFileSystem

from journalq import compare, digest, parts, transfer
from journalq.backends import Filesystem
from journalq.errors import queue_command
from journalq.groups import DurableGroup
from journalq.records import (
    Completed,
    Digested,
    Identity,
    Outcome,
    Part,
    PartsPlanned,
    PartWritten,
    Record,
    Service,
)
from journalq.replay import ActionState
from journalq.store import QueueStore

if TYPE_CHECKING:
    from journalq.executor import RunContext

__all__ = ["CopyEffect", "Interrupted"]

# The logger of the executor, which these lines came from: the CLI prints
# the logger's name, and a user may have set its level.
logger = logging.getLogger("journalq.executor")


class Interrupted(Exception):
    """The run was asked to stop during this action."""


def _restore_advice(action: ActionState, missing: str, context: RunContext) -> str:
    """Return the advice that ends the error of a copy whose source is missing.

    ``retry`` fails such a copy again until ``missing`` is back, so the error
    names the cancel that drops it. A dry run's queue is gone once it ends,
    so its advice names no command.
    """
    if context.options.dry_run:
        return f"restore {missing}"
    cancel = queue_command(f"cancel {action.action_id}", context.store.directory)
    return (
        f"restore {missing} and retry, or, if it is gone for good, drop this "
        f"action with {cancel}"
    )


class CopyEffect:
    """Performs the copies of a run's copy-file actions."""

    def __init__(
        self,
        context: RunContext,
        *,
        stopping: Callable[[], bool],
        progress: Callable[[ActionState, int, int], fsspec.callbacks.Callback | None],
    ) -> None:
        """Make the copy effect of one run.

        ``stopping`` returns whether the run was asked to stop. ``progress``
        returns the callback that turns the byte counts of one copy
        (action, attempt, size) into events, or None when the run passes
        on no progress events.
        """
        self.context = context
        self._stopping = stopping
        self._callback = progress
        self._cache = _Cache(context.store)
        source, destination = context.source, context.destination
        self._listing_suffices = _stat_free(source) and _stat_free(destination)
        # Per large copy in parts: the parts journaled before this run first
        # tried it, and the bytes of those that its last attempt found at the
        # destination. This run did not send those bytes, so its summary and
        # events leave them out.
        self._earlier_parts: dict[str, frozenset[int]] = {}
        self._resumed_bytes: dict[str, int] = {}
        # Per large copy stopped part way: the bytes of the parts this run
        # journaled, which its summary counts although the copy goes on in
        # a later run.
        self._stopped_bytes: dict[str, int] = {}

    def sent_bytes(self, action_id: str, copied: int) -> int:
        """Return how many of the ``copied`` bytes of a finished copy this run sent.

        A large copy resumed from parts that an earlier run journaled
        leaves those parts out. Call it once per copy, when it is counted.
        """
        sent = copied
        if action_id in self._earlier_parts:
            del self._earlier_parts[action_id]
            sent -= self._resumed_bytes.pop(action_id, 0)
        return sent

    def stopped_bytes(self, action_id: str) -> int:
        """Return the bytes of parts that a stopped copy journaled in this run.

        Call it once, when the stopped attempt is recorded.
        """
        return self._stopped_bytes.pop(action_id, 0)

    def copy(
        self, action: ActionState, attempt: int, group: DurableGroup
    ) -> list[Record]:
        """Copy the file of ``action``, or skip it when the destination is identical.

        Returns the records that finish the attempt, and raises
        :class:`Interrupted` when the run is asked to stop during the copy.
        """
        context = self.context
        source_path, destination_path = context.store.state.paths(action)
        assert source_path is not None
        assert destination_path is not None
        source_fs = context.source.fs
        destination_fs = context.destination.fs
        policy = self.policy(action)

        source, destination = self._file_infos(action, source_path, destination_path)
        if attempt > 1 and not context.options.dry_run:
            transfer.sweep_temporaries(
                destination_fs, destination_path, action.action_id
            )

        decision = compare.decide(
            policy,
            source,
            destination,
            source_digest=lambda *algorithm: self._digest(
                source_fs, source_path, source, Service.SOURCE, *algorithm
            ),
            destination_digest=lambda *algorithm: self._digest(
                destination_fs,
                destination_path,
                destination,
                Service.DESTINATION,
                *algorithm,
            ),
        )
        if decision.identical:
            self._align_mtime(destination_path, source, destination, decision)
            self._remember_object(destination_path, destination, decision)
            return _skipped(action, attempt, decision)
        if context.options.dry_run:
            # The bytes are those the copy would move, so the summary adds up
            # what a real run would copy.
            return [
                Completed(
                    action.action_id, attempt, Outcome.COPIED, "dry-run", source.size
                )
            ]
        return self._transfer(
            action, attempt, source_path, destination_path, source, destination, group
        )

    def _align_mtime(
        self,
        path: str,
        source: compare.FileInfo,
        destination: compare.FileInfo | None,
        decision: compare.Decision,
    ) -> None:
        """Give the source's mtime to a local destination skipped for its content.

        rsync -a and rclone do the same, and it lets a later size+mtime
        comparison skip the file too. The new mtime enters the digest cache.
        """
        mtime_ns = source.mtime_ns
        if (
            destination is None
            or mtime_ns is None
            or compare.mtimes_match(mtime_ns, destination.mtime_ns)
            or not self.context.destination.local
            or decision.destination is None
            or decision.destination.digest is None
            or self.context.options.dry_run
        ):
            return
        observed_ns = time.time_ns()
        local = digest.local_path(path)
        os.utime(local, ns=(observed_ns, mtime_ns))
        updated = compare.stat(self.context.destination.fs, path)
        if updated is not None:
            self._cache.put(
                str(Service.DESTINATION),
                path,
                updated,
                decision.destination.digest,
                observed_ns,
            )

    def _remember_object(
        self,
        path: str,
        destination: compare.FileInfo | None,
        decision: compare.Decision,
    ) -> None:
        """Cache the digest of an identical object under its ETag.

        The stat that the comparison made returned the ETag with the
        digest, so the next listing of an unchanged object decides it.
        """
        if (
            destination is None
            or destination.etag is None
            or decision.destination is None
            or decision.destination.digest is None
        ):
            return
        self._cache.put(
            str(Service.DESTINATION),
            path,
            destination,
            decision.destination.digest,
            time.time_ns(),
        )

    def _file_infos(
        self, action: ActionState, source_path: str, destination_path: str
    ) -> tuple[compare.FileInfo, compare.FileInfo | None]:
        """Return what is known of both files: listed moments ago, or stat'ed.

        Like rclone, a run that follows the listing of its tree trusts the
        listing instead of asking again per file. A source that changed since
        is caught by its byte count and copied again.
        NOTE: a destination file created between the listing and the copy
        is overwritten as if it were absent, without the fsync before the
        rename that protects a replaced file against power loss.
        """
        context = self.context
        hints = context.options.hints
        hint = hints.pop(action.action_id, None) if hints else None
        if hint is not None:
            entry, target = hint
            size, mtime_ns = entry[0], entry[1]
            # A listing entry has only size and mtime (and a local file's
            # ctime and inode). A remote backend's
            # stat also reports digests (ETag, md5Hash...) that spare a
            # download when two files are compared, so it is worth a request.
            comparable = target is None or (
                target[1] is not None and self._listing_suffices
            )
            # A large file from a remote source goes in parts, whose plan
            # needs the source's ETag or generation, which only a stat has.
            in_parts = (
                not context.source.local and size >= context.options.part_threshold
            )
            if mtime_ns is not None and comparable and not in_parts:
                source = compare.listed_info(entry)
                if target is None:
                    return source, None
                return source, compare.listed_info(target)
        try:
            source_info = compare.stat(context.source.fs, source_path)
        except FileNotFoundError as exc:
            # A symbolic link whose target is missing, named by exc.filename.
            if exc.filename is None:
                raise
            advice = _restore_advice(action, "its target", context)
            raise digest.dangling_link_error(exc.filename, advice) from None
        if source_info is None:
            raise FileNotFoundError(
                f"source file not found: {source_path}; "
                + _restore_advice(action, "it", context)
            )
        return source_info, compare.stat(context.destination.fs, destination_path)

    def _transfer(
        self,
        action: ActionState,
        attempt: int,
        source_path: str,
        destination_path: str,
        source: compare.FileInfo,
        destination: compare.FileInfo | None,
        group: DurableGroup,
    ) -> list[Record]:
        """Copy the file of ``action``, in parts when large, and return its records."""
        copied = None
        if source.size >= self.context.options.part_threshold:
            copied = self._transfer_parts(
                action, attempt, source_path, destination_path, source
            )
        if copied is None:
            copied = self._transfer_whole(
                action,
                attempt,
                source_path,
                destination_path,
                source,
                group,
                replaces=destination is not None,
            )
        result, observed_ns, keeps_mtime, etag = copied
        return self.copy_records(
            action,
            attempt,
            (source_path, destination_path),
            source,
            result,
            observed_ns,
            sets_mtime=keeps_mtime,
            etag=etag,
        )

    def _transfer_whole(
        self,
        action: ActionState,
        attempt: int,
        source_path: str,
        destination_path: str,
        source: compare.FileInfo,
        group: DurableGroup,
        *,
        replaces: bool,
    ) -> _Transferred:
        """Copy a file in one piece through a sink; return what the records need."""
        # A new local file may wait for its group's filesystem sync. A file
        # that replaces an existing one is synced alone before its rename, and
        # so is one that was in progress at a crash (see DurableGroup.wants()).
        batched = group.enabled and not replaces and not action.crashes
        context = self.context
        sink = transfer.open_sink(
            context.destination.fs,
            destination_path,
            action_id=action.action_id,
            attempt=attempt,
            fsync=not batched,
        )
        callback = self._callback(action, attempt, source.size)
        # Read the clock before the source, so a change during the read is
        # inside the same-second guard of the digest cache.
        observed_ns = time.time_ns()

        try:
            result = transfer.copy_file(
                context.source.fs,
                source_path,
                sink,
                algorithm=digest.default_algorithm(source.size),
                callback=callback,
                should_stop=self._stopping if context.options.stop else None,
            )
        except transfer.CopyInterrupted:
            raise Interrupted from None
        if result.bytes != source.size:
            sink.abort()
            raise _SourceChanged(source_path, source.size, result.bytes)
        sink.commit(source.mtime_ns)
        return result, observed_ns, transfer.keeps_mtime(sink), sink.etag

    def _transfer_parts(
        self,
        action: ActionState,
        attempt: int,
        source_path: str,
        destination_path: str,
        source: compare.FileInfo,
    ) -> _Transferred | None:
        """Copy a large file in journaled parts, resuming a plan that fits.

        Returns ``None`` when the destination takes no parts. A plan fits
        when the source still matches it; otherwise the old parts are
        discarded and a new plan is journaled, durably, before any part.
        """
        part_size = digest.part_size_for(source.size)
        target, written, resumable = self._open_parts_target(
            action, attempt, destination_path, part_size, parts.source_identity(source)
        )
        if target is None:
            return None

        context = self.context
        earlier = self._earlier_parts_of(action.action_id, written, resumable)
        resumed = 0
        sent = 0

        def journal_part(part: Part) -> None:
            nonlocal sent
            # Durable at once: one sync per part is cheap next to the part,
            # and a lost record would send that part again.
            context.store.append(
                [PartWritten(action.action_id, attempt, part)], durable=True
            )
            sent += part.size

        def recovered(part: Part) -> None:
            nonlocal resumed
            if part.number in earlier:
                resumed += part.size

        callback = self._callback(action, attempt, source.size)
        observed_ns = time.time_ns()
        try:
            every_part, digest_string = parts.copy_in_parts(
                context.source.fs,
                source_path,
                source,
                target,
                part_size,
                dict(written),
                on_part=journal_part,
                on_bytes=callback.relative_update if callback is not None else None,
                should_stop=self._stopping if context.options.stop else None,
                on_recovered=recovered,
            )
            target.complete(every_part, source.mtime_ns, digest_string)
        except InterruptedError:
            target.release()
            self._stopped_bytes[action.action_id] = sent
            raise Interrupted from None
        except parts.SourceChangedError:
            target.abort()
            raise
        except BaseException:
            target.release()
            raise
        self._resumed_bytes[action.action_id] = resumed
        result = transfer.CopyResult(source.size, digest_string)
        return result, observed_ns, target.keeps_mtime, target.etag

    def _open_parts_target(
        self,
        action: ActionState,
        attempt: int,
        destination_path: str,
        part_size: int,
        identity: Identity,
    ) -> tuple[parts.PartTarget | None, dict[int, Part], bool]:
        """Open the target of a large copy: the journaled plan's, or a new one.

        Returns the target (``None`` when the destination takes no parts),
        the parts journaled for it, and whether the journaled plan resumes.
        """
        fs = self.context.destination.fs
        known = action.parts
        target = None
        resumable = (
            known is not None
            and known.plan.source == identity
            and known.plan.part_size == part_size
        )
        if resumable:
            assert known is not None
            try:
                target = parts.open_target(
                    fs, destination_path, action.action_id, known.plan.upload, part_size
                )
                written = known.written
            except parts.UploadGoneError as exc:
                logger.info("%s", exc)
                # Nothing is left to abort; a new plan follows.
                known, resumable = None, False
        if not resumable:
            if known is not None:
                stale = parts.open_target(
                    fs, destination_path, action.action_id, known.plan.upload, 0
                )
                if stale is not None:
                    stale.abort()
            target = parts.open_target(
                fs, destination_path, action.action_id, None, part_size
            )
            written = {}
            if target is not None:
                plan = PartsPlanned(
                    action.action_id,
                    attempt,
                    part_size,
                    target.upload,
                    identity,
                    time.time_ns(),
                )
                self.context.store.append([plan], durable=True)
        return target, written, resumable

    def _earlier_parts_of(
        self, action_id: str, written: dict[int, Part], resumable: bool
    ) -> frozenset[int]:
        """Return the numbers of the parts that runs before this one journaled.

        They are the parts of a resumable plan at this run's first attempt.
        A later attempt that resumes keeps them, because the parts added
        since were sent by this run. A new plan sends every part again.
        """
        if not resumable:
            self._earlier_parts[action_id] = frozenset()
        return self._earlier_parts.setdefault(action_id, frozenset(written))

    def copy_records(
        self,
        action: ActionState,
        attempt: int,
        paths: tuple[str, str],
        source: compare.FileInfo,
        result: transfer.CopyResult,
        observed_ns: int,
        *,
        sets_mtime: bool,
        written: tuple[int, int] | None = None,
        etag: str | None = None,
    ) -> list[Record]:
        """Return the records of a finished copy: digests, then completed.

        ``sets_mtime`` is true when the destination got the source's mtime,
        which makes a cached destination digest match its next stat.
        ``written`` is the local destination's ctime and inode after the
        rename, when the copy read them; otherwise they are read here.
        ``etag`` is the ETag or generation the store returned for the new
        object, which keys its cached digest instead of the mtime.
        """
        source_path, destination_path = paths
        source_identity = Identity(source.size, source.mtime_ns, result.digest)
        destination_identity = Identity(result.bytes, source.mtime_ns, result.digest)
        records: list[Record] = []
        now = time.time_ns()
        mtime_ns = source.mtime_ns
        if mtime_ns is not None and compare.is_trusted(mtime_ns, observed_ns):
            records.append(
                Digested(
                    Service.SOURCE,
                    source_path,
                    source.size,
                    mtime_ns,
                    result.digest,
                    observed_ns,
                    source.ctime_ns,
                    source.inode,
                )
            )
            stamp: tuple[int | None, int | None] | None = None
            if sets_mtime and etag is None:
                stamp = written or self._written_stamp(destination_path)
            if stamp is not None:
                records.append(
                    Digested(
                        Service.DESTINATION,
                        destination_path,
                        result.bytes,
                        mtime_ns,
                        result.digest,
                        observed_ns,
                        *stamp,
                    )
                )
        if etag is not None:
            # The ETag names the object this copy wrote, so the entry needs
            # no mtime guard (see compare.etag_matches), and it replaces the
            # mtime-keyed entry of an object that kept the source's mtime.
            records.append(
                Digested(
                    Service.DESTINATION,
                    destination_path,
                    result.bytes,
                    mtime_ns or 0,
                    result.digest,
                    observed_ns,
                    etag=etag,
                )
            )
        # The digested records already carry both identities; repeating
        # them in the completed record would only grow the journal.
        carried = {record.service for record in records if isinstance(record, Digested)}
        records.append(
            Completed(
                action.action_id,
                attempt,
                Outcome.COPIED,
                result.digest.partition(":")[0],
                result.bytes,
                None if Service.SOURCE in carried else source_identity,
                None if Service.DESTINATION in carried else destination_identity,
                finished_ns=now,
            )
        )
        return records

    def _written_stamp(self, path: str) -> tuple[int | None, int | None] | None:
        """Return the ctime and inode a destination file has after its copy.

        Both are ``None`` off the local disk, and the result is ``None`` when
        the file is gone already. The rename gave the file a new ctime, so
        it is read here, after the copy.
        NOTE: a rewrite that keeps size and mtime between the rename and
        this stat is taken for the copy.
        """
        if not self.context.destination.local:
            return None, None
        try:
            result = os.stat(digest.local_path(path))
        except FileNotFoundError:
            return None
        return result.st_ctime_ns, result.st_ino

    def _digest(
        self,
        fs: fsspec.AbstractFileSystem,
        path: str,
        info: compare.FileInfo | None,
        service: Service,
        algorithm: str = digest.DEFAULT_ALGORITHM,
    ) -> str:
        assert info is not None
        return compare.cached_digest(
            fs, path, info, cache=self._cache, service=str(service), algorithm=algorithm
        )

    def identical_records(
        self,
        action: ActionState,
        attempt: int,
        files: tuple[compare.FileInfo, compare.FileInfo],
        digest_string: str,
        observed_ns: int,
    ) -> list[Record] | None:
        """Return the records of a copy whose destination a helper found identical.

        The helper hashed both ``files`` (source, destination) with the
        algorithm the comparison of two local files picks, and both gave
        ``digest_string``. The decision is the one :meth:`copy` makes, from
        that digest, and both files enter the digest cache as if this
        process had read them after ``observed_ns``. Returns ``None`` when
        the action's policy copies anyway.
        """
        source_path, destination_path = self.context.store.state.paths(action)
        assert source_path is not None
        assert destination_path is not None
        source, destination = files
        self._cache.put(
            str(Service.SOURCE), source_path, source, digest_string, observed_ns
        )
        self._cache.put(
            str(Service.DESTINATION),
            destination_path,
            destination,
            digest_string,
            observed_ns,
        )
        decision = compare.decide(
            self.policy(action),
            source,
            destination,
            source_digest=lambda *_: digest_string,
            destination_digest=lambda *_: digest_string,
        )
        return _skipped(action, attempt, decision) if decision.identical else None

    def policy(self, action: ActionState) -> compare.Policy:
        """Return how ``action`` compares its files: its own policy or the run's."""
        if action.added.compare:
            return compare.Policy.parse(action.added.compare)
        return self.context.options.policy


def _skipped(
    action: ActionState, attempt: int, decision: compare.Decision
) -> list[Record]:
    """Return the record of a copy skipped because ``decision`` found it done."""
    return [
        Completed(
            action.action_id,
            attempt,
            Outcome.SKIPPED,
            decision.method,
            0,
            decision.source,
            decision.destination,
            finished_ns=time.time_ns(),
        )
    ]


class _Cache:
    """The digest cache kept in the journal as ``digested`` records."""

    def __init__(self, store: QueueStore) -> None:
        self._store = store

    def get(self, service: str, path: str, info: compare.FileInfo) -> str | None:
        entry = self._store.state.digests.get((Service(service), path))
        if entry is not None and entry.etag is not None:
            if compare.etag_matches(entry, info.size, info.etag):
                return entry.digest
            return None
        if not compare.entry_matches(
            entry, info.size, info.mtime_ns, info.ctime_ns, info.inode
        ):
            return None
        assert entry is not None
        return entry.digest

    def put(
        self,
        service: str,
        path: str,
        info: compare.FileInfo,
        digest: str,
        observed_ns: int,
    ) -> None:
        """Journal ``digest`` for the file ``info`` describes.

        An object with an ETag is cached under it, so no mtime guard
        applies (see :func:`compare.etag_matches`). Other files are cached
        by their mtime, unless :func:`compare.is_trusted` rejects it.
        """
        if info.etag is None and (
            info.mtime_ns is None or not compare.is_trusted(info.mtime_ns, observed_ns)
        ):
            return
        key = (Service(service), path)
        record = Digested(
            Service(service),
            path,
            info.size,
            info.mtime_ns or 0,
            digest,
            observed_ns,
            info.ctime_ns,
            info.inode,
            info.etag,
        )
        known = self._store.state.digests.get(key)
        if known is not None and _same_entry(known, record):
            return
        self._store.append([record], durable=False)


def _same_entry(known: Digested, record: Digested) -> bool:
    """Tell whether two cache entries are for the same file state and digest."""
    return (
        known.size,
        known.mtime_ns,
        known.ctime_ns,
        known.inode,
        known.digest,
        known.etag,
    ) == (
        record.size,
        record.mtime_ns,
        record.ctime_ns,
        record.inode,
        record.digest,
        record.etag,
    )


#: The outcome of a finished transfer, as :meth:`CopyEffect.copy_records`
#: takes it: the result, the clock read before the source, whether the
#: destination kept the source's mtime, and the new object's ETag when the
#: store returned one.
_Transferred = tuple[transfer.CopyResult, int, bool, str | None]


class _SourceChanged(OSError):
    """The source file changed size while it was being copied (transient)."""

    def __init__(self, path: str, expected: int, copied: int) -> None:
        super().__init__(
            f"source file changed during the copy: {path} (expected {expected} "
            f"bytes, read {copied}); it will be copied again"
        )


def _stat_free(filesystem: Filesystem) -> bool:
    """Return whether a listing of ``filesystem`` reports all that its stat does."""
    return filesystem.local or isinstance(filesystem.fs, MemoryFileSystem)
