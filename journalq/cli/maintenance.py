"""The commands that change a queue without running it.

``cancel`` and ``retry`` change which actions wait. ``compact`` writes a
snapshot so the journal behind it can go. ``fsck`` checks the journal and,
with ``--truncate-at-corruption``, cuts it back to the records before the
first damage, after copying every file it changes to a backup directory.
``drop`` deletes a queue (see :mod:`journalq.drop`).
"""

from __future__ import annotations

import datetime
import shlex
from pathlib import Path

import click

from journalq import snapshot
from journalq.cli.base import fail
from journalq.cli.commands import BACKUP_DIR
from journalq.cli.context import (
    DEFAULT_QUEUE,
    settings,
)
from journalq.cli.exits import ExitCode
from journalq.cli.lastrun import forget_last_run
from journalq.cli.queues import (
    describe_holder,
    open_existing_queue,
    queue_exists,
    resolve_id,
)
from journalq.cli.running import secret_note
from journalq.drop import DroppedQueue, drop_queue, finish_interrupted
from journalq.errors import (
    NotAQueueError,
    PendingActionsError,
    QueueError,
    queue_command,
)
from journalq.journal import RepairReport, ScanResult, repair, scan
from journalq.lock import QueueLock
from journalq.queue import StorageQueue
from journalq.store import JOURNAL_DIR, decode_frame, queue_directory, read_format

__all__ = [
    "cancel",
    "compact",
    "drop",
    "fsck",
    "retry",
]


def cancel(action_ids: tuple[str, ...], everything: bool) -> None:
    """Run ``journalq cancel``, as :mod:`journalq.cli.commands` defines it."""
    if everything == bool(action_ids):
        raise click.UsageError("give action IDs or --all, not both and not neither")
    with open_existing_queue() as queue:
        if everything:
            canceled = queue.cancel()
        else:
            # Every ID is resolved before the first cancel, so a mistyped
            # one cancels nothing.
            resolved = [resolve_id(queue, prefix) for prefix in action_ids]
            canceled = [found for one in resolved for found in queue.cancel(one)]
        if queue.handoff:
            _print_cancel_handed_off(queue, len(canceled))
            return
        # An action that was not canceled says why: it ran, or was canceled
        # or replaced before.
        left = [] if everything else [one for one in resolved if one not in canceled]
        reasons = [_why_not_canceled(queue, one) for one in left]
        failed = queue.status()["failed"] if everything else 0
    noun = "action" if len(canceled) == 1 else "actions"
    click.echo(f"canceled {len(canceled)} {noun}")
    for reason in reasons:
        click.echo(reason)
    if failed:
        click.echo(
            f"--all cancels waiting actions only, so {failed} failed "
            f"{'action stays' if failed == 1 else 'actions stay'}: cancel "
            f"{'it' if failed == 1 else 'them'} by ID (journalq actions "
            "--status failed lists them)"
        )


def _why_not_canceled(queue: StorageQueue, action_id: str) -> str:
    """Return why the cancel of ``action_id`` left it as it is."""
    status = queue.get_action(action_id).status
    show = queue_command(f"show {action_id}", queue.directory)
    if status == "canceled":
        return f"{action_id}: canceled before; {show} says by what"
    return f"{action_id}: left as it is, {status}; {show} gives its history"


def _print_cancel_handed_off(queue: StorageQueue, requested: int) -> None:
    """Print that the process that runs ``queue`` got the cancel, and how to check it.

    That process cancels only the actions that have not started when it reads
    the request, so the count canceled is not known here.
    """
    noun = "action" if requested == 1 else "actions"
    click.echo(
        f"queue {queue.directory} is being run by {describe_holder(queue)}; "
        f"asked it to cancel {requested} {noun}. It cancels those that have "
        "not started when it reads the request and runs the others."
    )
    listing = queue_command("actions --status canceled", queue.directory)
    click.echo(f"to see what it canceled: {listing.strip('`')}")


def retry(failed: bool) -> None:
    """Run ``journalq retry``, as :mod:`journalq.cli.commands` defines it."""
    with open_existing_queue() as queue:
        known = set(queue.state.actions)
        failed_before = queue.status()["failed"]
        new_ids = queue.retry()
        failed_after = queue.status()["failed"]
        where = shlex.quote(str(queue.directory))
        note = secret_note(queue)
    relisted = [action_id for action_id in new_ids if action_id not in known]
    reopened = len(new_ids) - len(relisted)
    noun = "action waits" if reopened == 1 else "actions wait"
    if reopened or not relisted:
        click.echo(f"{reopened} failed {noun} again")
    if relisted:
        # A tree added again replaces the failed actions it had, which
        # are canceled by it.
        replaced = failed_before - failed_after - reopened
        noun = "action" if replaced == 1 else "actions"
        click.echo(
            f"listed again as new actions, replacing {replaced} failed {noun}: "
            + ", ".join(relisted)
        )
    if new_ids:
        click.echo(f"run them with: journalq run --queue {where}")
        if note:
            click.echo(note)


def compact() -> None:
    """Run ``journalq compact``, as :mod:`journalq.cli.commands` defines it."""
    with open_existing_queue() as queue:
        queue.compact()
        click.echo(f"compacted queue {queue.directory}")


def drop(name: str | None, force: bool) -> None:
    """Run ``journalq drop``, as :mod:`journalq.cli.commands` defines it."""
    chosen = settings().queue
    if name is not None and chosen is not None and name != chosen:
        raise click.UsageError(
            f"NAME_OR_DIR {name!r} and --queue {chosen!r} differ; give one of them"
        )
    name = name or chosen
    if name is None:
        raise click.UsageError(
            "name the queue to drop: `journalq drop NAME_OR_DIR` "
            "(`journalq queues` lists the named queues)"
        )
    directory = queue_directory(name)
    if not directory.exists():
        if finish_interrupted(directory):
            click.echo(f"finished an interrupted drop of queue {directory}")
            return
        fail(
            f"queue {directory}: not found; nothing was deleted (`journalq "
            "queues` lists the named queues)",
            ExitCode.USAGE,
        )
    try:
        dropped = drop_queue(directory, force=force)
    except NotAQueueError as error:
        fail(str(error), ExitCode.USAGE)
        return
    except PendingActionsError as error:
        fail(str(error), ExitCode.FAILED)
        return
    forget_last_run(dropped.queue_id)
    _print_dropped(dropped)


def _print_dropped(dropped: DroppedQueue) -> None:
    # With -q only what the user must still act on is printed: the uploads
    # left at the destination.
    quiet = settings().quiet
    if not quiet:
        click.echo(f"dropped queue {dropped.directory}")
    if (dropped.waiting or dropped.in_progress) and not quiet:
        line = (
            f"not run: {dropped.waiting} waiting and {dropped.in_progress} "
            "in-progress actions"
        )
        if dropped.in_progress:
            line += (
                "; a copy in progress may have left a temporary file "
                ".NAME.jq-*.tmp beside its destination"
            )
        click.echo(line)
    for upload in dropped.uploads:
        click.echo(
            f"left at the destination: {upload}, the unfinished upload of a "
            "large copy; delete it (on an object store: abort the upload) by hand"
        )


def fsck(truncate: bool, backup_dir: Path | None) -> None:
    """Run ``journalq fsck``, as :mod:`journalq.cli.commands` defines it."""
    name = settings().queue or DEFAULT_QUEUE
    directory = queue_directory(name)
    if not queue_exists(name):
        raise QueueError(directory, "no queue here (no FORMAT file)")
    queue_id = _queue_id(directory)
    after_lsn = _snapshot_lsn(directory, queue_id)

    def check_records(result: ScanResult) -> None:
        for frame in result.frames:
            decode_frame(frame, directory)

    if not truncate:
        journal = directory / JOURNAL_DIR
        result = scan(journal, queue_id, after_lsn=after_lsn, queue_dir=str(directory))
        check_records(result)
        _print_scan(result, after_lsn)
        return
    backups = backup_dir or directory / BACKUP_DIR / _utc_stamp()
    with QueueLock(directory):
        report = repair(
            directory / JOURNAL_DIR,
            queue_id,
            backups,
            after_lsn=after_lsn,
            check=check_records,
        )
    _print_repair(report)


def _queue_id(directory: Path) -> bytes:
    header = read_format(directory)
    assert header is not None
    return bytes.fromhex(header.queue_id)


def _snapshot_lsn(directory: Path, queue_id: bytes) -> int:
    """Return the last LSN of the newest valid snapshot (0 without one).

    A check changes no file, so a damaged snapshot is reported, not renamed.
    """
    loaded = snapshot.load_latest(
        directory / snapshot.SNAPSHOT_DIR, queue_id, tidy=False
    )
    return loaded[0].last_lsn if loaded is not None else 0


def _utc_stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def _print_scan(result: ScanResult, after_lsn: int) -> None:
    records = sum(frame.count for frame in result.frames)
    where = f" after the snapshot at sequence {after_lsn}" if after_lsn else ""
    click.echo(
        f"journal ok: {records} records{where}, segment files: "
        f"{len(result.segments)}, next sequence number: {result.next_lsn}"
    )
    tail = result.torn_tail
    if tail is not None:
        click.echo(
            f"torn tail: {tail.path} ends with {tail.size - tail.valid_end} bytes "
            f"of an unfinished write after byte {tail.valid_end}; the next open "
            "cuts them off (nothing to do)"
        )


def _print_repair(report: RepairReport) -> None:
    if not report.changed:
        click.echo(
            f"no corruption found; nothing changed ({report.records_kept} records)"
        )
        return
    click.echo(
        f"cut {report.path} at byte {report.offset} ({report.detail}); kept "
        f"{report.records_kept} records, dropped at least {report.records_dropped}"
    )
    for path in report.removed:
        click.echo(f"removed segment {path}")
    for path in report.backups:
        click.echo(f"backup: {path}")
