"""The commands that read a queue: ``status``, ``actions`` and ``result``.

They read the queue's files without taking its lock, so they work while
another process runs the queue and never keep a run from starting.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import click

from journalq.cli.base import command
from journalq.cli.context import common_options
from journalq.cli.output import action_rows, print_json, status_lines
from journalq.cli.queues import open_existing_queue
from journalq.cli.running import json_option
from journalq.lock import read_holder
from journalq.replay import Status

__all__ = ["actions_command", "result_command", "status_command"]


@command("status")
@json_option
@common_options
def status_command(as_json: bool) -> None:
    """Print how many actions of the queue wait, run, completed or failed."""
    with open_existing_queue(read_only=True) as queue:
        counts = queue.status()
        holder = _running_holder(queue.directory)
        directory = str(queue.directory)
    if as_json:
        print_json({"queue": directory, "running": holder, **counts})
        return
    click.echo(f"queue {directory}")
    if holder is not None:
        click.echo(
            f"being run by pid {holder.get('pid')} on {holder.get('host')} "
            f"since {holder.get('since')}"
        )
    for line in status_lines(counts):
        click.echo(line)


def _running_holder(directory: Path) -> dict | None:
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


@command("actions")
@click.option(
    "--status",
    "wanted",
    type=click.Choice([str(status) for status in Status]),
    help="List only the actions in this status.",
)
@json_option
@common_options
def actions_command(wanted: str | None, as_json: bool) -> None:
    """List the queue's actions: id, status, kind, paths and last error."""
    with open_existing_queue(read_only=True) as queue:
        actions = queue.get_actions(wanted)
    if as_json:
        for action in actions:
            print_json(action.to_dict())
        return
    for line in action_rows(actions):
        click.echo(line)


@command("result")
@click.argument("action_id", metavar="ID")
@json_option
@common_options
def result_command(action_id: str, as_json: bool) -> None:
    """Print the entries that the completed list action ID found."""
    with open_existing_queue(read_only=True) as queue:
        entries = queue.list_result(action_id)
    for entry in entries:
        if as_json:
            print_json(entry)
        else:
            click.echo(f"{entry['type']:<9} {entry['size']:>12}  {entry['name']}")
