"""The commands that read a queue: ``status``, ``actions``, ``show``, ``result``
and ``queues``.

They read the queue's files without taking its lock, so they work while
another process runs the queue and never keep a run from starting.
"""

from __future__ import annotations

import datetime
import fnmatch
import os
import shlex
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import click

from journalq import failures
from journalq.cli.action_table import print_actions
from journalq.cli.completion import queue_names, queues_root
from journalq.cli.fitting import fit_pair, table_width, unique_prefix_length
from journalq.cli.lastrun import LastRun, load_last_run
from journalq.cli.output import (
    format_bytes,
    format_elapsed,
    location_url,
    print_json,
    print_table,
    table_lines,
)
from journalq.cli.queues import open_existing_queue, resolve_id
from journalq.events import ActionInfo
from journalq.expansion import PARENTS
from journalq.lock import read_holder
from journalq.records import ActionAdded, Kind
from journalq.replay import ActionState, QueueState, Status
from journalq.store import read_state

__all__ = [
    "actions",
    "queues",
    "result",
    "status",
]

#: Labels of the status counts, in the order ``status`` prints them. The
#: counts above ``total`` add up to it.
_COUNT_LABELS = {
    "waiting": "waiting",
    "inprogress": "in progress",
    "completed": "completed",
    "failed": "failed",
    "canceled": "canceled",
    "length": "total",
}

#: Width that the rows of the ``queues`` table fit, whatever the terminal's.
QUEUES_WIDTH: Final = 80
#: Start of the line below each queue's row in the ``queues`` table.
LATEST_LABEL: Final = "  latest: "
#: The kinds of action whose paths ``queues`` shows for a queue.
_COPY_KINDS: Final = frozenset({Kind.COPY_FILE, Kind.COPY_TREE, Kind.SYNC})


def status(as_json: bool) -> None:
    """Run ``journalq status``, as :mod:`journalq.cli.commands` defines it."""
    with open_existing_queue(read_only=True) as queue:
        counts = queue.status()
        holder = running_holder(queue.directory)
        directory = queue.directory
        created = queue.state.created
        # The plan reads every action, which a queue without failures skips.
        retryable = bool(counts["failed"]) and bool(failures.retry_plan(queue.state))
        failed_id = _only_failed_item(queue.state) if counts["failed"] else None
    last = load_last_run(directory)
    died = died_mid_run(counts, running=holder is not None)
    steps = next_steps(
        directory, counts, holder, retryable=retryable, failed_id=failed_id
    )
    if as_json:
        print_json(
            {
                "queue": str(directory),
                "running": holder,
                **counts,
                "died_mid_run": died,
                "last_run": last.to_dict() if last else None,
                "next": steps,
            }
        )
        return
    rows = [["queue", str(directory)]]
    if created is not None:
        rows.append(
            ["filesystems", f"{created.source.url} -> {created.destination.url}"]
        )
    rows.append(["running", _describe_holder(holder)])
    print_table(rows)
    click.echo()
    print_table(_count_rows(counts), ["STATUS", "ACTIONS"], right=frozenset({1}))
    if requested := counts["cancels_requested"]:
        noun = "action" if requested == 1 else "actions"
        reader = (
            "the process that runs the queue; it cancels those that have not "
            "started then"
            if holder is not None
            else "a run; the next run of the queue applies it first"
        )
        click.echo(f"cancel requested: {requested} {noun}, not read yet by {reader}")
    click.echo(describe_skipped(counts))
    click.echo(describe_copied(counts))
    for line in describe_runs(last, died, in_progress=counts["inprogress"]):
        click.echo(line)
    for label, text in steps.items():
        click.echo(f"{label}: {text}")


def _count_rows(counts: Mapping[str, int]) -> list[list[str]]:
    return [[label, str(counts[name])] for name, label in _COUNT_LABELS.items()]


def describe_skipped(counts: Mapping[str, int]) -> str:
    """Return the ``skipped`` line of ``status``, split into what it adds up.

    The files found identical when their tree was listed have no action of
    their own; the others are completed actions that a run skipped.
    """
    skipped = counts["skipped"]
    if not skipped:
        return "skipped: 0"
    listed = counts["identical_when_listed"]
    return (
        f"skipped: {skipped} ({listed} identical when listed, "
        f"{skipped - listed} when run)"
    )


def describe_copied(counts: Mapping[str, int]) -> str:
    """Return the ``copied in all`` line of ``status``.

    The total includes the journaled parts of large copies that have not
    completed, and the line gives those parts' share separately. A copy
    that completes moves its bytes from ``part_bytes`` to ``bytes``, so
    none are counted twice.
    """
    part_bytes = counts["part_bytes"]
    total = format_bytes(counts["bytes"] + part_bytes)
    if not part_bytes:
        return f"copied in all: {total}"
    copies = counts["part_copies"]
    noun = "copy" if copies == 1 else "copies"
    return (
        f"copied in all: {total}, {format_bytes(part_bytes)} of it in the "
        f"journaled parts of {copies} large {noun} not completed yet"
    )


def _describe_holder(holder: dict | None) -> str:
    if holder is None:
        return "no"
    return (
        f"yes, by pid {holder.get('pid')} on {holder.get('host')} since "
        f"{holder.get('since')}"
    )


def died_mid_run(counts: Mapping[str, Any], *, running: bool) -> bool:
    """Return whether the queue's latest run was killed or crashed mid-run.

    Actions in progress in a queue that no process runs are the mark of a
    run that was killed or crashed: a run that stops cleanly ends them.
    Such a run saved no summary, so the last-run summary is then the run
    before it.
    """
    return not running and bool(counts.get("inprogress"))


def describe_runs(last: LastRun | None, died: bool, *, in_progress: int) -> list[str]:
    """Return the lines of ``status`` about the latest run and its summary.

    When the latest run died mid-run, the saved summary belongs to the run
    before it and is labelled so.
    """
    lines = []
    label = "last run"
    if died:
        noun = "action" if in_progress == 1 else "actions"
        lines.append(
            f"last run: died mid-run (killed or crashed) with {in_progress} "
            f"{noun} in progress"
        )
        label = "run before it"
    if last is not None:
        ended, counts_line = describe_last_run(last)
        lines += [f"{label}: {ended}", f"  {counts_line}"]
    return lines


def describe_last_run(last: LastRun) -> tuple[str, str]:
    """Return two lines about a queue's last run: when it ended, what it did."""
    ended = datetime.datetime.fromtimestamp(last.ended).astimezone()
    how = "interrupted" if last.interrupted else "ended"
    when = (
        f"{how} {ended.isoformat(sep=' ', timespec='seconds')} after "
        f"{format_elapsed(last.elapsed)}"
    )
    text = (
        f"copied {last.copied}, skipped {last.skipped}, failed {last.failed}, "
        f"retried {last.retried}"
    )
    if last.deleted:
        text += f", deleted {last.deleted}"
    text += f"; {format_bytes(last.bytes)} at {format_bytes(last.rate)}/s"
    if last.remaining:
        text += f"; {last.remaining} left"
    return when, text


def next_steps(
    directory: Path,
    counts: Mapping[str, int],
    holder: dict | None,
    *,
    retryable: bool,
    failed_id: str | None = None,
) -> dict[str, str]:
    """Return the commands that go on with the queue, by what they do.

    ``retryable`` is whether ``retry`` would change a failed action, which
    it does not for one it cannot help (see :mod:`journalq.failures`).
    ``failed_id`` names the only failed action that is not a tree, so the
    cancel command can be pasted as it is.
    """
    where = shlex.quote(str(directory))
    steps: dict[str, str] = {}
    pending = counts["waiting"] + counts["inprogress"]
    if holder is not None:
        steps["wait"] = (
            f"pid {holder.get('pid')} is running the queue; `journalq add` "
            "hands new actions to it"
        )
    elif pending:
        steps["to resume"] = f"journalq run --queue {where}"
    if counts["failed"]:
        steps["to see the failures"] = (
            f"journalq actions --status failed --queue {where}"
        )
        if retryable:
            steps["to retry them"] = (
                f"journalq retry --queue {where} && journalq run --queue {where}"
            )
        steps["to drop one"] = f"journalq cancel {failed_id or 'ID'} --queue {where}"
    return steps


def _only_failed_item(state: QueueState) -> str | None:
    """Return the id of the only failed action that is not a tree, if one is."""
    found = None
    for action in state.actions.values():
        if action.status is not Status.FAILED or action.kind in PARENTS:
            continue
        if found is not None:
            return None
        found = action.action_id
    return found


def running_holder(directory: Path) -> dict | None:
    """Return the record of the process running the queue, or None.

    The lock file keeps the last holder's record until the next run takes
    the lock, so a record counts only while its process is alive. The lock
    itself is not probed: that could make a run starting at the same moment
    fail with "queue locked".
    """
    holder = read_holder(directory)
    if not holder or holder.get("host") != socket.gethostname():
        return holder or None
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except (ProcessLookupError, ValueError):
        return None
    except PermissionError:
        return holder
    return holder


def actions(
    statuses: tuple[str, ...],
    kinds: tuple[str, ...],
    pattern: str | None,
    tree: str | None,
    limit: int | None,
    no_header: bool,
    whole: bool,
    as_json: bool,
) -> None:
    """Run ``journalq actions``, as :mod:`journalq.cli.commands` defines it."""
    with open_existing_queue(read_only=True) as queue:
        if tree is not None:
            tree = resolve_id(queue, tree)
        status = statuses[0] if len(statuses) == 1 else None
        found = _matching(queue.get_actions(status), statuses, kinds, pattern, tree)
        actions = found[:limit] if limit else found
        width = None if whole or as_json else table_width()
        id_chars = unique_prefix_length(queue.state.actions) if width else None
    if as_json:
        for action in actions:
            print_json(action.to_dict())
        return
    print_actions(actions, header=not no_header, width=width, id_chars=id_chars)
    if len(found) > len(actions):
        # On stderr, so the table on stdout stays whole for a script.
        click.echo(
            f"{len(found) - len(actions)} more actions match; "
            "raise --limit or leave it out to list them",
            err=True,
        )


def _matching(
    actions: Iterable[ActionInfo],
    statuses: tuple[str, ...],
    kinds: tuple[str, ...],
    pattern: str | None,
    tree: str | None,
) -> list[ActionInfo]:
    matched = []
    for action in actions:
        if statuses and action.status not in statuses:
            continue
        if kinds and action.kind not in kinds:
            continue
        if tree is not None and tree not in (action.parent, action.id):
            continue
        if pattern is not None and not _path_matches(action, pattern):
            continue
        matched.append(action)
    return matched


def _path_matches(action: ActionInfo, pattern: str) -> bool:
    paths = (action.source, action.destination)
    return any(path and fnmatch.fnmatchcase(path, pattern) for path in paths)


def result(action_id: str, as_json: bool) -> None:
    """Run ``journalq result``, as :mod:`journalq.cli.commands` defines it."""
    with open_existing_queue(read_only=True) as queue:
        entries = queue.list_result(resolve_id(queue, action_id))
    for entry in entries:
        if as_json:
            print_json(entry)
        else:
            click.echo(f"{entry['type']:<9} {entry['size']:>12}  {entry['name']}")


def queues(as_json: bool) -> None:
    """Run ``journalq queues``, as :mod:`journalq.cli.commands` defines it."""
    rows = []
    for name in queue_names():
        directory = Path(queues_root()) / name
        rows.append(_queue_row(name, directory))
    if as_json:
        for row in rows:
            print_json(row)
        return
    if not rows:
        click.echo(f"no queues in {queues_root()}", err=True)
        return
    click.echo(f"queues in {queues_root()}:")
    header, *lines = table_lines(
        [
            [
                str(row["name"]),
                _waiting(row),
                _or_dash(row, "completed"),
                _or_dash(row, "failed"),
                "yes" if row["running"] else "no",
                _last_run(row),
            ]
            for row in rows
        ],
        ("NAME", "WAITING", "COMPLETED", "FAILED", "RUNNING", "LAST RUN"),
        right=frozenset({1, 2, 3}),
    )
    # The paths go on a line of their own, so a row fits 80 columns.
    click.echo(click.style(header, bold=True))
    for row, line in zip(rows, lines, strict=True):
        click.echo(line)
        click.echo(f"{LATEST_LABEL}{_shown_paths(row)}")


def _waiting(row: Mapping[str, Any]) -> str:
    """Return the actions the next run takes up, or a dash for an unreadable queue."""
    waiting = row.get("waiting")
    if waiting is None:
        return "-"
    # A run that was stopped leaves its actions in progress, and the next
    # run takes them up first.
    stopped = 0 if row["running"] else row.get("inprogress") or 0
    return str(waiting + stopped)


def _last_run(row: Mapping[str, Any]) -> str:
    """Return when the last run ended, to the minute, or that it died."""
    if row["died_mid_run"]:
        return "died mid-run"
    last_run = row["last_run"]
    return last_run[:16] if last_run else "-"


def _queue_row(name: str, directory: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "queue": str(directory)}
    row["source"] = row["destination"] = row["latest_copy"] = None
    try:
        state = read_state(directory)
        counts = state.status_counts()
        latest = _latest_copy(state)
        if latest is not None:
            # ``source`` and ``destination`` are the older names of the
            # latest copy's paths, kept for the scripts that read them.
            row["latest_copy"] = latest
            row["source"] = latest["source"]
            row["destination"] = latest["destination"]
    except Exception as error:  # one unreadable queue must not hide the rest
        row["error"] = str(error)
        counts = {}
    row.update(counts)
    row["running"] = running_holder(directory) is not None
    row["died_mid_run"] = died_mid_run(counts, running=row["running"])
    last = load_last_run(directory)
    row["last_run"] = (
        datetime.datetime.fromtimestamp(last.ended)
        .astimezone()
        .isoformat(sep=" ", timespec="seconds")
        if last
        else None
    )
    return row


def _newest_copy(state: QueueState) -> ActionAdded | None:
    """Return the ``added`` record of the queue's newest top-level copy or sync.

    A canceled one is skipped for an older one that was not canceled,
    because the queue no longer copies it. When every copy was canceled,
    the newest one still describes the queue best.

    NOTE: this decodes every action of a snapshot, which reading the counts
    alone leaves encoded, so it takes longer on a queue of millions of files.
    """
    newest_canceled = None
    for action in reversed(state.actions.values()):
        # A compacted action is always a tree's item, never top-level.
        if type(action) is not ActionState:
            continue
        added = action.added
        if added.parent is None and added.kind in _COPY_KINDS:
            if action.status is not Status.CANCELED:
                return added
            newest_canceled = newest_canceled or added
    return newest_canceled


def _latest_copy(state: QueueState) -> dict[str, str] | None:
    """Return the kind and the source and destination URLs of the newest copy."""
    added = _newest_copy(state)
    created = state.created
    if added is None or created is None:
        return None
    assert added.source is not None
    assert added.destination is not None
    return {
        "kind": str(added.kind),
        "source": location_url(created.source.url, added.source),
        "destination": location_url(created.destination.url, added.destination),
    }


def _shown_paths(row: Mapping[str, Any]) -> str:
    """Return the latest copy's ``SRC -> DST``, both cut alike to fit the line."""
    source, destination = row.get("source"), row.get("destination")
    if source is None or destination is None:
        return "-"
    return fit_pair(source, destination, QUEUES_WIDTH - len(LATEST_LABEL))


def _or_dash(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    return "-" if value is None else str(value)
