"""Opening a queue: creating it, checking its endpoints, and recovery.

:func:`open_queue` creates the queue's directory and journal or opens the
existing ones, and falls back to hand-off mode when another process holds
the lock, or to a read-only view. It checks that the caller's URLs match
the journaled ones and merges the journaled storage options with the
secrets the caller passes again. Then it opens both filesystems, so a
wrong URL or option fails when the queue is opened, not at its first
action.

:func:`recover` then finishes what a crashed run left open: attempts
that were in progress count as failed or wait again, their temporary
files are removed, and trees whose expansion was cut short are listed
again. A cancel from the inbox of a file that the crashed run had handed
to a copy process ends it unless the file is in place at the destination
(:func:`_settle_dead_handouts`).

These functions are internals of :class:`journalq.queue.StorageQueue`,
kept apart from its public methods. They take the queue and set its
store, state and filesystems.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from journalq import compare, expansion, transfer
from journalq.backends import (
    Filesystem,
    check_option_names,
    configured_options,
    endpoint,
    hide_password,
    open_filesystem,
    split_url,
)
from journalq.backends.option_names import closest_names
from journalq.backends.options import public_options, secret_names
from journalq.backends.remotes import split_remote
from journalq.errors import (
    ActionError,
    EndpointMismatchError,
    QueueError,
    QueueLockedError,
    StorageOptionError,
    StorageOptionValueError,
)
from journalq.journal import SyncMode
from journalq.records import Endpoint, Failed, Kind, QueueCreated, Returned, Service
from journalq.replay import reset_interrupted
from journalq.store import QueueStore, read_format, read_state

if TYPE_CHECKING:
    from journalq.queue import StorageQueue

logger = logging.getLogger(__name__)


def open_queue(
    queue: StorageQueue,
    source: str | None,
    destination: str | None,
    source_options: dict[str, Any] | None,
    destination_options: dict[str, Any] | None,
    sync: SyncMode,
) -> None:
    """Open or create the queue's store, check it, and open its filesystems.

    Sets the queue's store, or its hand-off state and the error that
    explains why it has no store, then its endpoints and filesystems. The
    store is closed again when a check fails. Call :func:`recover` next.
    """
    # A password in a URL is a secret storage option from here on, so
    # it is compared, journaled and reported like one.
    if source is not None:
        source, source_options = split_url(_url(source), source_options)
    if destination is not None:
        destination, destination_options = split_url(
            _url(destination), destination_options
        )
    create = None
    if source is not None and destination is not None:
        create = _creator(
            queue, source, destination, source_options or {}, destination_options or {}
        )
        if not queue.read_only and read_format(queue.directory) is None:
            # A wrong option or URL fails before the queue exists, so
            # nothing is created and no option is journaled.
            queue._opened = _open_filesystems(
                queue,
                {
                    Service.SOURCE: (source, source_options or {}),
                    Service.DESTINATION: (destination, destination_options or {}),
                },
            )
    if queue.read_only:
        queue._unavailable = QueueError(
            queue.directory,
            "the queue was opened read-only; open it again to change it",
        )
        queue._handoff_state = read_state(queue.directory)
    else:
        _open_store(queue, create, sync)
    created = queue.state.created
    if created is None:
        raise QueueError(
            queue.directory,
            "the queue has no creation record (its creation was cut "
            "short); open it again with a source and a destination",
        )
    given_options = {
        Service.SOURCE: source_options or {},
        Service.DESTINATION: destination_options or {},
    }
    try:
        _check_endpoints(queue, created, source, destination)
        queue._endpoints = {
            Service.SOURCE: (
                created.source.url,
                _options(queue, "source", created.source, source_options),
            ),
            Service.DESTINATION: (
                created.destination.url,
                _options(
                    queue, "destination", created.destination, destination_options
                ),
            ),
        }
        if queue._opened and not queue._created_here:
            # Another process created the queue since it was checked,
            # maybe with other options: open the ones it keeps.
            queue._opened = {}
        if not queue.read_only:
            # A wrong URL or option fails here, not at the first action.
            queue._opened = _open_filesystems(
                queue, queue._endpoints, created=created, given=given_options
            )
    except BaseException:
        if queue._store is not None:
            queue._store.close()
        raise


def _options(
    queue: StorageQueue, role: str, journaled: Endpoint, given: dict[str, Any] | None
) -> dict[str, Any]:
    """Merge the journaled options of a filesystem with the caller's.

    The journal keeps only the names of secret options. A queue that is
    to run needs them again, so a missing one is an error that names it;
    read-only reports do without them. A password that was given in the
    URL is journaled as such an option too (see :func:`split_url`).
    """
    given = given or {}
    missing = [name for name in secret_names(journaled.options) if name not in given]
    if missing and not queue.read_only:
        given = {**_configured_secrets(role, journaled.url, missing), **given}
        missing = [name for name in missing if name not in given]
    if missing and not queue.read_only:
        _reject_unknown_names(queue, role, journaled, given, missing)
        flags = " ".join(f"--{role}-option {name}=..." for name in missing)
        if "@" in journaled.url.partition("://")[2].partition("/")[0]:
            flags += f", or the {role} URL again with user:PASSWORD@ in it"
        raise ActionError(
            hide_password(journaled.url),
            f"the queue was created with secrets in the {role} option(s) "
            f"{', '.join(missing)}, which are never journaled"
            f"{_misspelled(given, journaled, missing)}; give them "
            f"again, in {role}_options from Python or on the command line: "
            f"{flags}",
        )
    for name in sorted(given.keys() & journaled.options.keys()):
        if public_options({name: given[name]})[name] != journaled.options[name]:
            logger.info(
                "using the %s option %s given now instead of the value "
                "queue %s was created with",
                role,
                name,
                queue.directory,
            )
    return {**journaled.options, **given}


def _configured_secrets(role: str, url: str, names: list[str]) -> dict[str, Any]:
    """Return the options among ``names`` that fsspec's configuration sets.

    fsspec applies its configuration (``FSSPEC_S3_KEY``, its config files)
    to every filesystem it opens, so an option set there under the name a
    queue was created with counts as given again. It is passed on
    explicitly, so it also replaces a journaled option whose nested secrets
    were removed, as a given option does.
    """
    configured = configured_options(url)
    found = {name: configured[name] for name in names if name in configured}
    if found:
        logger.info(
            "using the secret %s option(s) %s from fsspec's configuration",
            role,
            ", ".join(found),
        )
    return found


def _reject_unknown_names(
    queue: StorageQueue,
    role: str,
    journaled: Endpoint,
    given: dict[str, Any],
    missing: list[str],
) -> None:
    """Raise ``StorageOptionError`` for an option the filesystem does not take.

    It runs when secret options are missing, because a misspelled name
    (``secert``) is then the likely cause, and the error names both.
    """
    try:
        check_option_names(journaled.url, given)
    except StorageOptionError as exc:
        raise StorageOptionError(
            hide_password(journaled.url),
            exc.filesystem,
            exc.names,
            exc.suggestions,
            role=role,
            queue=str(queue.directory),
            missing_secrets=missing,
            option=exc.option,
            keys_source=exc.keys_source,
        ) from exc


def _misspelled(given: dict[str, Any], journaled: Endpoint, missing: list[str]) -> str:
    """Return a clause for each given option that looks like a missing one.

    For a filesystem whose option names cannot be checked (sshfs passes
    them on to asyncssh), a name close to a missing one is the hint left.
    Returns "" when no given name is close.
    """
    new_names = [name for name in given if name not in journaled.options]
    close = closest_names(new_names, missing)
    return "".join(
        f"; the option {name!r} given now is not one the queue was created "
        f"with (did you mean {secret!r}?)"
        for name, secret in close.items()
    )


def _open_filesystems(
    queue: StorageQueue,
    endpoints: dict[Service, tuple[str, dict[str, Any]]],
    *,
    created: QueueCreated | None = None,
    given: dict[Service, dict[str, Any]] | None = None,
) -> dict[Service, Filesystem]:
    """Open the filesystems not opened yet; name the role of a bad option.

    With ``created``, the options are those of that existing queue, and
    a rejected option it keeps that is not in ``given`` is reported as
    journaled, because giving the right one does not remove it.
    """
    opened = dict(queue._opened)
    for role, (url, options) in endpoints.items():
        if role in opened:
            continue
        try:
            opened[role] = open_filesystem(url, options)
        except StorageOptionValueError as exc:
            raise StorageOptionValueError(
                hide_password(url),
                exc.filesystem,
                exc.option,
                exc.given,
                role=str(role),
            ) from exc
        except StorageOptionError as exc:
            kept = {} if created is None else _endpoint_of(created, role).options
            again = (given or {}).get(role, {})
            # A rejected key is journaled when the option that has it is.
            named = exc.names if exc.option is None else [exc.option]
            raise StorageOptionError(
                hide_password(url),
                exc.filesystem,
                exc.names,
                exc.suggestions,
                role=str(role),
                queue=str(queue.directory),
                journaled=[n for n in named if n in kept and n not in again],
                option=exc.option,
                keys_source=exc.keys_source,
            ) from exc
    return opened


def _open_store(queue: StorageQueue, create: Any, sync: SyncMode) -> None:
    try:
        queue._store = QueueStore.open(queue.directory, create=create, sync=sync)
    except QueueLockedError as exc:
        if exc.same_process:
            raise
        queue._unavailable = exc
        queue._handoff_state = read_state(queue.directory)


def _creator(
    queue: StorageQueue,
    source: str,
    destination: str,
    source_options: dict[str, Any],
    destination_options: dict[str, Any],
):
    name = os.fspath(queue.directory.name)

    def create(queue_id: str) -> QueueCreated:
        queue._created_here = True
        return QueueCreated(
            queue_id,
            name,
            endpoint(_url(source), source_options),
            endpoint(_url(destination), destination_options),
            queue.parallelism,
            time.time_ns(),
            compare=str(queue.policy),
            max_attempts=queue.max_attempts,
        )

    return create


def _check_endpoints(
    queue: StorageQueue,
    created: QueueCreated,
    source: str | None,
    destination: str | None,
) -> None:
    for given, journaled, role in (
        (source, created.source.url, "source"),
        (destination, created.destination.url, "destination"),
    ):
        # A queue journaled before URL passwords were split off has its
        # password in the URL.
        stored, _ = split_url(journaled)
        if given is not None and _url(given) != stored:
            raise EndpointMismatchError(given, stored, role, str(queue.directory))


def recover(queue: StorageQueue, *, chunk: int) -> None:
    """Finish what a crashed run left: open attempts and expansions."""
    store = queue._require_store()
    records = reset_interrupted(store.state, queue.max_attempts)
    if records:
        left = [
            action_id
            for record in records
            for action_id in (
                record.action_ids
                if isinstance(record, Returned)
                else (record.action_id,)
            )
        ]
        logger.info("resuming %d actions a stopped run left open", len(left))
        # Swept before the records that end those attempts are journaled:
        # a crash in between leaves them in progress, so the next open
        # sweeps again. After the records, a canceled or failed action
        # would never be looked at again.
        _sweep_temporaries(queue, left)
        records = _settle_dead_handouts(queue, records)
        store.append(records, durable=True)
    for action in list(store.state.actions.values()):
        unexpanded = action.kind in expansion.PARENTS and action.children is None
        if unexpanded and not action.terminal:
            expansion.expand_again(queue, action, chunk=chunk)


def _settle_dead_handouts(
    queue: StorageQueue, records: list[Failed | Returned]
) -> list[Failed | Returned]:
    """Decide the cancels held for copies a crashed run had handed out.

    The store held them at open (:meth:`QueueStore.dead_handouts`). A copy
    whose destination does not match its source (:func:`_in_place`) gets
    its ``returned`` record first, so that it waits, and then its cancel.
    The other copies are released while still in progress, which drops
    their cancels, so the run compares them and skips them as identical.
    Under ``--compare always`` it copies them again. Each inbox request
    is removed once all its cancels are decided and durable. Returns the
    records of ``records`` that are still to be journaled. A crash before
    they are leaves those copies in progress with no cancel left, so the
    next open makes them wait as it would without one.
    """
    store = queue._require_store()
    dead_handouts = store.dead_handouts()
    if not dead_handouts:
        return records
    canceled = {
        action_id for action_id in dead_handouts if not _in_place(queue, action_id)
    }
    logger.info(
        "canceling %d files that a stopped run had handed to a copy process, "
        "and keeping %d whose destination has the source's size and mtime",
        len(canceled),
        len(dead_handouts) - len(canceled),
    )
    returned, rest = _split_returned(records, canceled)
    if returned:
        store.append(returned, durable=False)
    # These wait now, so their cancels apply. The others are still in
    # progress, so their cancels are dropped.
    store.release(canceled)
    store.release(dead_handouts - canceled)
    return rest


def _split_returned(
    records: list[Failed | Returned], action_ids: set[str]
) -> tuple[list[Returned], list[Failed | Returned]]:
    """Split the ``returned`` records of ``action_ids`` off ``records``.

    Returns those records, then the rest, whose ``returned`` records no
    longer name ``action_ids``.
    """
    split: list[Returned] = []
    rest: list[Failed | Returned] = []
    for record in records:
        if not isinstance(record, Returned):
            rest.append(record)
            continue
        named = tuple(i for i in record.action_ids if i in action_ids)
        others = tuple(i for i in record.action_ids if i not in action_ids)
        if named:
            split.append(Returned(named, record.attempt))
        if others:
            rest.append(Returned(others, record.attempt))
    return split, rest


def _in_place(queue: StorageQueue, action_id: str) -> bool:
    """Return whether a handed-out copy's destination matches its source.

    It matches when it exists with the source's size and an mtime within
    :data:`journalq.compare.MODIFY_WINDOW_NS` of the source's: the dead
    copy process may have renamed its copy into place, or the file was
    identical already. A failed check counts as a match, so that a copy
    that may have completed is never canceled.
    """
    state = queue._require_store().state
    action = state.actions[action_id]
    source_path, destination_path = state.paths(action)
    if action.kind is not Kind.COPY_FILE or source_path is None:
        # Only file copies are handed out; anything else keeps its action.
        return True
    assert destination_path is not None
    try:
        source = compare.stat(queue.source.fs, source_path)
        destination = compare.stat(queue.destination.fs, destination_path)
    # Each backend raises its own errors (see _sweep_temporaries).
    except Exception as exc:
        logger.warning(
            "not canceling action %s: could not compare %s with its source: %s: %s",
            action_id,
            destination_path,
            type(exc).__name__,
            exc,
        )
        return True
    return (
        source is not None
        and destination is not None
        and source.size == destination.size
        and compare.mtimes_match(source.mtime_ns, destination.mtime_ns)
    )


def _sweep_temporaries(queue: StorageQueue, action_ids: list[str]) -> None:
    """Remove the temporary files of the copies a stopped run left open.

    A copy killed before its rename leaves a temporary file beside its
    destination (:func:`journalq.transfer.temp_path`). The parts file of
    a copy in parts stays, because the next attempt resumes it. Each
    directory is listed once for all the copies in it. A directory that
    cannot be listed now keeps its temporary files. A failed action's next
    attempt sweeps them again. NOTE: a returned action's next attempt is
    its first again, which does not sweep, so its temporary files stay.
    NOTE: an attempt whose ``started`` record was not yet written left
    no trace in the journal. Its temporary file is removed only when the
    file is copied again to the same name, not when the action is
    canceled. A copy process's batch is journaled (``handed out``)
    before the process gets it, so its temporary files are swept here.
    """
    state = queue._require_store().state
    targets: list[tuple[str, str]] = []
    for action_id in action_ids:
        action = state.actions[action_id]
        if action.kind is not Kind.COPY_FILE:
            continue
        _, destination_path = state.paths(action)
        assert destination_path is not None
        targets.append((destination_path, action_id))
    fs = queue.destination.fs
    for directory, names in transfer.temporaries_by_directory(fs, targets).items():
        try:
            removed = transfer.sweep_directory(fs, directory, names)
        # Each backend raises its own errors (asyncssh.Error, botocore's
        # ClientError...), and none of them may keep the queue closed.
        except Exception as exc:
            logger.warning(
                "could not remove the temporary files of %d actions in %s: %s: %s",
                len(names),
                directory,
                type(exc).__name__,
                exc,
            )
            continue
        for path, action_id in removed:
            logger.info("removed temporary file %s of action %s", path, action_id)


def _url(value: str) -> str:
    """Return the URL of a filesystem given as a URL, a remote or a local path."""
    if "://" in value or split_remote(value) is not None:
        return value
    return "file://" + os.path.abspath(os.path.expanduser(value))


def _endpoint_of(created: QueueCreated, role: Service) -> Endpoint:
    return created.source if role is Service.SOURCE else created.destination
