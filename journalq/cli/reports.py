"""The commands that read a queue: ``status``, ``actions`` and ``result``.

They work while another process runs the queue: the queue then opens in
hand-off mode and its state is read from the journal without the lock.
"""

from __future__ import annotations

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
    with open_existing_queue() as queue:
        counts = queue.status()
        holder = read_holder(queue.directory) if queue.handoff else None
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
    with open_existing_queue() as queue:
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
    with open_existing_queue() as queue:
        entries = queue.list_result(action_id)
    for entry in entries:
        if as_json:
            print_json(entry)
        else:
            click.echo(f"{entry['type']:<9} {entry['size']:>12}  {entry['name']}")
