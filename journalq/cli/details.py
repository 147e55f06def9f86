"""``journalq show ID``: one action, what the state keeps and its history.

The first part comes from the folded state. It has the paths, the tree,
the size, the attempts, the outcome with the method that decided a skip or
verified a copy, and the last error. It adds the cached digests of a
copy's files, a tree's actions by status and a listing's first entries.
The second part is the action's own journal records (see
:mod:`journalq.cli.history`).
"""

from __future__ import annotations

import collections
from typing import Any, Final

import click

from journalq.cli.history import action_history, format_time
from journalq.cli.output import arrow, format_bytes, print_json, print_table
from journalq.cli.queues import open_existing_queue, resolve_id
from journalq.queue import StorageQueue
from journalq.records import Kind, Service
from journalq.replay import CompactAction

__all__ = [
    "show",
]

#: Entries of a listing that ``show`` prints; ``result`` prints them all.
SHOWN_ENTRIES: Final = 10
_TREES: Final = frozenset({Kind.COPY_TREE, Kind.SYNC})


def show(action_id: str, as_json: bool) -> None:
    """Run ``journalq show``, as :mod:`journalq.cli.commands` defines it."""
    with open_existing_queue(read_only=True) as queue:
        action_id = resolve_id(queue, action_id)
        details = _details(queue, action_id)
        directory = queue.directory
    steps, partial = action_history(directory, action_id)
    if as_json:
        details["history"] = [
            {"time_ns": step.time_ns, "text": step.text} for step in steps
        ]
        details["history_complete"] = not partial
        print_json(details)
        return
    _print_details(details)
    click.echo()
    click.echo("history:")
    for step in steps:
        click.echo(f"  {format_time(step.time_ns):<29}  {step.text}")
    if partial:
        click.echo(
            "  (the journal before the last compaction is gone, so earlier "
            "steps are not shown)"
        )


def _details(queue: StorageQueue, action_id: str) -> dict[str, Any]:
    info = queue.get_action(action_id)
    action = queue.state.actions[action_id]
    details: dict[str, Any] = info.to_dict()
    added = action.added
    details["size"] = added.size
    details["added_ns"] = added.added_ns or None
    completed = action.completed
    details["finished_ns"] = (completed.finished_ns or None) if completed else None
    details["digests"] = _digests(queue, info)
    if info.parent is not None:
        parent = queue.get_action(info.parent)
        details["tree"] = {
            "id": parent.id,
            "kind": parent.kind,
            "source": parent.source,
            "destination": parent.destination,
        }
    if added.kind in _TREES and not isinstance(action, CompactAction):
        details["children"] = action.children
        details["identical_when_listed"] = action.skipped
        details["children_by_status"] = _children_by_status(queue, action_id)
    if added.kind is Kind.LIST and completed is not None and completed.result:
        entries = queue.list_result(action_id)
        details["entries"] = len(entries)
        details["first_entries"] = entries[:SHOWN_ENTRIES]
    return details


def _digests(queue: StorageQueue, info: Any) -> dict[str, str]:
    """Return the cached content digest of the action's files, by side."""
    found = {}
    for service, path in (
        (Service.SOURCE, info.source),
        (Service.DESTINATION, info.destination),
    ):
        if info.kind != Kind.COPY_FILE or path is None:
            continue
        entry = queue.state.digests.get((service, path))
        if entry is not None:
            found[str(service)] = entry.digest
    return found


def _children_by_status(queue: StorageQueue, tree_id: str) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for action in queue.state.actions.values():
        if action.added.parent == tree_id:
            counts[str(action.status)] += 1
    return dict(sorted(counts.items()))


def _print_details(details: dict[str, Any]) -> None:
    rows = _identity_rows(details) + _outcome_rows(details)
    if "children" in details:
        rows.extend(_tree_rows(details))
    if "entries" in details:
        rows.append(
            ["entries", f"{details['entries']} (all of them: journalq result ID)"]
        )
        rows.extend(
            ["", f"{entry['type']:<9} {entry['size']:>12}  {entry['name']}"]
            for entry in details["first_entries"]
        )
    print_table(rows)


def _identity_rows(details: dict[str, Any]) -> list[list[str]]:
    """Return what the action is: id, kind, status, paths, tree and size."""
    rows = [
        ["id", details["id"]],
        ["kind", details["kind"]],
        ["status", details["status"]],
    ]
    path = arrow(details["source"], details["destination"])
    if details["service"]:
        path += f" ({details['service']})"
    rows.append(["path", path])
    if "tree" in details:
        tree = details["tree"]
        paths = arrow(tree["source"], tree["destination"])
        rows.append(["tree", f"{tree['id']} ({tree['kind']} {paths})"])
    if details["size"] is not None:
        rows.append(["size", format_bytes(details["size"])])
    return rows


def _outcome_rows(details: dict[str, Any]) -> list[list[str]]:
    """Return how the action went: attempts, outcome, error and digests."""
    rows = [["attempts", str(details["attempts"])]]
    if details["added_ns"]:
        rows.append(["added", format_time(details["added_ns"])])
    if details["outcome"]:
        outcome = details["outcome"]
        if details["method"]:
            outcome += f", decided by {details['method']}"
        rows.append(["outcome", outcome])
        rows.append(["finished", format_time(details["finished_ns"])])
        rows.append(["copied", format_bytes(details["bytes"])])
    if details["error"]:
        rows.append(["last error", details["error"]])
    elif details["last_error"]:
        rows.append(["earlier attempt failed", details["last_error"]])
    for side, digest in details["digests"].items():
        rows.append([f"{side} digest", digest])
    return rows


def _tree_rows(details: dict[str, Any]) -> list[list[str]]:
    children = details["children"]
    rows = [["actions", "not listed yet" if children is None else str(children)]]
    if details["identical_when_listed"]:
        rows.append(
            [
                "identical",
                f"{details['identical_when_listed']} files, found when listed",
            ]
        )
    by_status = ", ".join(
        f"{count} {status}" for status, count in details["children_by_status"].items()
    )
    if by_status:
        rows.append(["by status", by_status])
    return rows
