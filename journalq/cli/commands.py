"""The definitions of the ``journalq`` commands: arguments, options and help.

This module imports click and the light modules that the options need,
nothing more, so ``journalq --help``, ``--version``, ``COMMAND --help``
and shell completion start without importing the queue engine or fsspec.
The body of each command imports the module that does its work
(:mod:`journalq.cli.running`, :mod:`journalq.cli.add`,
:mod:`journalq.cli.reports`, :mod:`journalq.cli.details` or
:mod:`journalq.cli.maintenance`) and calls it. A test checks which modules
``journalq --version`` imports.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Final

import click

from journalq.cli.base import command, group
from journalq.cli.completion import (
    SHELLS,
    complete_action_id,
    complete_location,
    complete_queue,
    completion_script,
)
from journalq.cli.context import common_options, run_options, storage_options

__all__ = [
    "ACTION_KINDS",
    "ACTION_STATUSES",
    "BACKUP_DIR",
    "COMMANDS",
    "json_option",
    "location_argument",
]

#: The values of ``journalq.records.Kind`` and ``journalq.replay.Status``,
#: which ``actions --kind`` and ``--status`` take. Importing those modules
#: would import msgspec and the replay engine; a test checks that the
#: lists are equal.
ACTION_KINDS: Final = ("copy_file", "copy_tree", "sync", "mkdir", "delete", "list")
ACTION_STATUSES: Final = ("waiting", "inprogress", "completed", "failed", "canceled")

#: Folder of a queue that ``fsck --truncate-at-corruption`` copies into,
#: one subfolder per repair, named by its UTC time.
BACKUP_DIR: Final = "fsck-backups"

json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON on stdout instead of plain text (docs/json.md has the keys).",
)

run_json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help=(
        "Print JSON on stdout, one object per line, instead of plain text: "
        "one per event, then a summary."
    ),
)

_service_option = click.option(
    "--service",
    type=click.Choice(["source", "destination"]),
    help="Filesystem of the queue that PATH is on.",
)


def location_argument(name: str, metavar: str) -> Callable:
    """Return the click argument for a SRC, DST or PATH: a path or a URL."""
    return click.argument(name, metavar=metavar, shell_complete=complete_location)


# Running: copy, sync, run ------------------------------------------------------


@command("copy")
@location_argument("source", "SRC")
@location_argument("destination", "DST")
@run_json_option
@run_options
@storage_options
@common_options
def copy_command(source: str, destination: str, as_json: bool) -> None:
    """Copy SRC to DST (a file, or a directory tree), then run until done.

    SRC/ with a trailing slash copies the directory's contents into DST;
    SRC without it copies the directory itself into DST (DST/NAME). A file
    lands inside DST when DST ends with '/' or is a directory, and is
    named DST otherwise. Files already identical at DST are skipped.

    Running the same command again resumes it: the queue's name is derived
    from SRC and DST unless --queue names one.
    """
    from journalq.cli.running import copy

    copy(source, destination, as_json)


@command("sync")
@location_argument("source", "SRC")
@location_argument("destination", "DST")
@click.option(
    "--delete",
    is_flag=True,
    help="Also delete files and directories under DST that SRC does not have.",
)
@click.option(
    "--max-delete",
    type=click.IntRange(min=0),
    metavar="N",
    help="With --delete, add nothing if more than N items would be deleted.",
)
@click.option(
    "--force",
    is_flag=True,
    help=(
        "With --delete, allow a SRC without files (which deletes every file in DST)."
    ),
)
@run_json_option
@run_options
@storage_options
@common_options
def sync_command(
    source: str,
    destination: str,
    delete: bool,
    max_delete: int | None,
    force: bool,
    as_json: bool,
) -> None:
    """Make the tree DST a copy of the tree SRC, then run until done.

    The contents of SRC land directly in DST (a trailing slash on SRC
    changes nothing); files already identical at DST are skipped. Running
    the same command again resumes it, or checks the trees again once the
    earlier sync has completed.
    """
    from journalq.cli.running import sync

    sync(source, destination, delete, max_delete, force, as_json)


@command("run")
@run_json_option
@run_options
@storage_options
@common_options
def run_command(as_json: bool) -> None:
    """Run every waiting action of the queue (resume an interrupted run).

    `journalq run` and `journalq resume` are the same command.
    """
    from journalq.cli.running import run

    run(as_json)


# Adding actions: add ------------------------------------------------------


@group("add", invoke_without_command=True)
@click.option(
    "--from",
    "batch_file",
    type=click.File("r", encoding="utf-8"),
    metavar="FILE",
    help=(
        "Add the actions of FILE ('-' for stdin), all or none: one JSON object "
        'per line, such as {"kind": "copy_file", "source": "/a", '
        '"destination": "/b"}.'
    ),
)
@storage_options
@common_options
@click.pass_context
def add_group(ctx: click.Context, batch_file: IO[str] | None) -> None:
    """Add actions to a queue (default: the queue named 'local')."""
    from journalq.cli.add import add_from_file

    add_from_file(ctx, batch_file)


@add_group.command("copy")
@location_argument("source", "SRC")
@location_argument("destination", "DST")
@storage_options
@common_options
def add_copy_command(source: str, destination: str) -> None:
    """Add a copy of SRC (a file or a tree) to DST, as `journalq copy` does."""
    from journalq.cli.add import copy_action

    copy_action(source, destination)


@add_group.command("tree")
@location_argument("source", "SRC")
@location_argument("destination", "DST")
@storage_options
@common_options
def add_tree_command(source: str, destination: str) -> None:
    """Add a copy of the tree SRC as the tree DST (its contents land in DST)."""
    from journalq.cli.add import tree_action

    tree_action(source, destination)


@add_group.command("sync")
@location_argument("source", "SRC")
@location_argument("destination", "DST")
@click.option("--delete", is_flag=True, help="Also delete what SRC does not have.")
@click.option(
    "--max-delete",
    type=click.IntRange(min=0),
    metavar="N",
    help="With --delete, add nothing if more than N items would be deleted.",
)
@click.option("--force", is_flag=True, help="With --delete, allow a SRC without files.")
@storage_options
@common_options
def add_sync_command(
    source: str, destination: str, delete: bool, max_delete: int | None, force: bool
) -> None:
    """Add a sync that makes the tree DST a copy of the tree SRC."""
    from journalq.cli.add import sync_action

    sync_action(source, destination, delete, max_delete, force)


@add_group.command("mkdir")
@location_argument("path", "PATH")
@_service_option
@storage_options
@common_options
def add_mkdir_command(path: str, service: str | None) -> None:
    """Add the creation of directory PATH (default: on the destination)."""
    from journalq.cli.add import mkdir_action

    mkdir_action(path, service)


@add_group.command("delete")
@location_argument("path", "PATH")
@_service_option
@click.option("--recursive", "-r", is_flag=True, help="Delete a directory tree.")
@storage_options
@common_options
def add_delete_command(path: str, service: str | None, recursive: bool) -> None:
    """Add the deletion of PATH (default: on the destination)."""
    from journalq.cli.add import delete_action

    delete_action(path, service, recursive)


@add_group.command("list")
@location_argument("path", "PATH")
@_service_option
@click.option("--dir-only", is_flag=True, help="List directories only.")
@click.option("--recursive", "-r", is_flag=True, help="List the whole tree.")
@storage_options
@common_options
def add_list_command(
    path: str, service: str | None, dir_only: bool, recursive: bool
) -> None:
    """Add a listing of PATH (default: on the source); read it with `result`."""
    from journalq.cli.add import list_action

    list_action(path, service, dir_only, recursive)


# Reading a queue: status, actions, result, queues, show ------------------------


@command("status")
@json_option
@common_options
def status_command(as_json: bool) -> None:
    """Print the queue's counts, its last run and how to go on.

    The table counts actions by status: a tree, each file it copies and
    each mkdir or delete is one, and the statuses add up to the total.
    'skipped' counts files not copied because they were identical, over
    every run. It is the files a tree's listing found identical, which get
    no action, plus the completed actions that were skipped when they ran
    (an identical file, or a mkdir on an object store without directories).

    'copied in all' is the bytes of the completed copies plus those of the
    journaled parts of large copies that a stopped run left unfinished. The
    line also gives the bytes of those parts.

    A run that was killed or crashed saves no summary and leaves actions in
    progress while no process runs the queue. 'last run' then reports that
    it died mid-run, and the summary it has is labelled 'run before it'.
    """
    from journalq.cli.reports import status

    status(as_json)


@command("actions")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(ACTION_STATUSES),
    help="List only actions in this status (repeat for several).",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(ACTION_KINDS),
    help="List only actions of this kind (repeat for several).",
)
@click.option(
    "--path",
    "pattern",
    metavar="GLOB",
    help="List only actions whose source or destination matches GLOB.",
)
@click.option(
    "--tree",
    "tree",
    metavar="ID",
    shell_complete=complete_action_id,
    help="List only the actions of the tree (copy or sync) with this id or "
    "unique id prefix.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    metavar="N",
    help="List at most N actions; a line on stderr gives how many more match.",
)
@click.option("--no-header", is_flag=True, help="Leave out the header line.")
@click.option(
    "--no-trunc",
    "whole",
    is_flag=True,
    help="Print whole ids, paths and errors on a terminal too, one line per "
    "action, however wide the table gets.",
)
@json_option
@common_options
def actions_command(
    statuses: tuple[str, ...],
    kinds: tuple[str, ...],
    pattern: str | None,
    tree: str | None,
    limit: int | None,
    no_header: bool,
    whole: bool,
    as_json: bool,
) -> None:
    """List the queue's actions: id, status, kind, attempts, bytes, paths, error.

    Filters combine: `--status failed --kind copy_file` lists the files
    that failed.

    On a terminal the table fits its width. Ids are shortened to the
    shortest prefix that no other action of the queue shares (at least 8
    characters), which `show`, `cancel`, `result` and --tree accept. Paths
    too long for their column go on a line of their own below each action,
    cut in the middle where they are still too long, and an error takes
    lines of its own too. Printed to a pipe or a file, each action is one
    line with its whole id, paths and error, unless COLUMNS is set.
    `journalq show ID` prints one action whole.
    """
    from journalq.cli.reports import actions

    actions(statuses, kinds, pattern, tree, limit, no_header, whole, as_json)


@command("result")
@click.argument("action_id", metavar="ID", shell_complete=complete_action_id)
@json_option
@common_options
def result_command(action_id: str, as_json: bool) -> None:
    """Print the entries that the completed list action ID found.

    ID may be shortened to any prefix that only one action of the queue has.
    """
    from journalq.cli.reports import result

    result(action_id, as_json)


@command("queues")
@json_option
@common_options
def queues_command(as_json: bool) -> None:
    """List the named queues: counts, whether a process runs each, and the
    latest copy or sync of each.

    The first line names the folder that contains the queues, and each
    queue is the folder of its NAME in it. WAITING counts the actions the
    next run takes up: when no process runs the queue, those a stopped run
    left in progress too, and LAST RUN then reads "died mid-run".
    Under each queue, "latest:" gives the source and the destination of the
    copy or sync added to it last, not a path of the queue itself
    (`journalq copy` and `journalq sync` name a queue after the SRC and DST
    they copy).
    """
    from journalq.cli.reports import queues

    queues(as_json)


@command("show")
@click.argument("action_id", metavar="ID", shell_complete=complete_action_id)
@json_option
@common_options
def show_command(action_id: str, as_json: bool) -> None:
    """Show one action: its paths, outcome, errors and journaled history.

    ID may be shortened to any prefix that only one action of the queue has.
    """
    from journalq.cli.details import show

    show(action_id, as_json)


# Changing a queue: cancel, retry, compact, drop, fsck -------------------------


@command("cancel")
@click.argument(
    "action_ids", nargs=-1, metavar="[ID]...", shell_complete=complete_action_id
)
@click.option("--all", "everything", is_flag=True, help="Cancel every waiting action.")
@storage_options
@common_options
def cancel_command(action_ids: tuple[str, ...], everything: bool) -> None:
    """Cancel the given IDs (a tree's files too), or every waiting action with --all.

    An ID may be shortened to any prefix that only one action of the queue
    has.

    A failed action given by its ID is canceled so that it no longer counts
    as failed; its attempts stay in its history. --all leaves failed
    actions as they are. An action in progress, completed or canceled is
    left as it is. When another process runs the queue, the cancel is
    handed to it, and it cancels the actions that have not started by the
    time it reads the request.
    """
    from journalq.cli.maintenance import cancel

    cancel(action_ids, everything)


@command("retry")
@click.option(
    "--failed",
    is_flag=True,
    default=True,
    help=(
        "Make the failed actions wait again; canceled ones stay. This is "
        "what retry does, so the flag may be left out."
    ),
)
@storage_options
@common_options
def retry_command(failed: bool) -> None:
    """Make the failed actions wait again, so the next `journalq run` retries them.

    A tree with a directory that could not be listed, or a name that
    cannot be copied, is listed again as a new action that replaces it.
    """
    from journalq.cli.maintenance import retry

    retry(failed)


@command("compact")
@storage_options
@common_options
def compact_command() -> None:
    """Snapshot the queue's state and delete the journal segments behind it."""
    from journalq.cli.maintenance import compact

    compact()


@command("drop")
@click.argument(
    "name", metavar="[NAME_OR_DIR]", required=False, shell_complete=complete_queue
)
@click.option(
    "--force",
    is_flag=True,
    help=(
        "Drop the queue even when actions wait or are in progress, or when "
        "its journal cannot be read."
    ),
)
@common_options
def drop_command(name: str | None, force: bool) -> None:
    """Delete the queue NAME_OR_DIR: its journal, state and last-run summary.

    NAME_OR_DIR is a queue name or directory, as for --queue. The files at
    the source and the destination are not touched. A queue that another
    process runs is not dropped (exit 3), nor, without --force, one whose
    actions wait or are in progress (exit 1). Only a directory with
    journalq's FORMAT file and no other files than journalq writes is
    deleted (exit 2 otherwise).
    """
    from journalq.cli.maintenance import drop

    drop(name, force)


@command("fsck")
@click.option(
    "--truncate-at-corruption",
    "truncate",
    is_flag=True,
    help=(
        "Cut the journal at its first damaged record, keeping the records "
        "before it; every changed file is copied to a backup first."
    ),
)
@click.option(
    "--backup-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Where to copy changed files (default: QUEUE/{BACKUP_DIR}/UTC-TIME).",
)
@common_options
def fsck_command(truncate: bool, backup_dir: Path | None) -> None:
    """Check the queue's journal; exit 4 if it is corrupt."""
    from journalq.cli.maintenance import fsck

    fsck(truncate, backup_dir)


@command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion_command(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    \b
    Install it for new shells:
      bash: journalq completion bash \
              > ~/.local/share/bash-completion/completions/journalq
      zsh:  journalq completion zsh > "${fpath[1]}/_journalq"
      fish: journalq completion fish \
              > ~/.config/fish/completions/journalq.fish

    Or load it into the running shell: eval "$(journalq completion bash)".
    """
    click.echo(completion_script(shell), nl=False)


#: The top-level commands, by the name ``journalq`` gives each. ``resume``
#: is another name of ``run``.
COMMANDS: Final[dict[str, click.Command]] = {
    "copy": copy_command,
    "sync": sync_command,
    "add": add_group,
    "status": status_command,
    "actions": actions_command,
    "show": show_command,
    "result": result_command,
    "queues": queues_command,
    "cancel": cancel_command,
    "retry": retry_command,
    "compact": compact_command,
    "fsck": fsck_command,
    "drop": drop_command,
    "completion": completion_command,
    "run": run_command,
    "resume": run_command,
}
