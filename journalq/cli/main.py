"""The ``journalq`` command group and its entry point."""

from __future__ import annotations

import gc

import click

from journalq.cli.add import add_group
from journalq.cli.base import command, group
from journalq.cli.completion import SHELLS, completion_script
from journalq.cli.context import common_options
from journalq.cli.maintenance import (
    cancel_command,
    compact_command,
    drop_command,
    fsck_command,
    retry_command,
)
from journalq.cli.reports import (
    actions_command,
    queues_command,
    result_command,
    show_command,
    status_command,
)
from journalq.cli.running import copy_command, run_command, sync_command

__all__ = ["cli", "main"]


@group(
    "journalq",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="journalq")
@common_options
def cli() -> None:
    """Copy and sync files between fsspec filesystems, resumably.

    Every action is journaled before it runs, so an interrupted command
    (Ctrl-C, kill -9, a reboot) resumes where it stopped when it is run
    again. Exit status: 0 all completed, 1 some actions failed, 2 invalid
    usage, 3 queue locked by another process, 4 journal corrupt or queue
    unusable, 130 interrupted, 141 stdout closed (by `head`, for example).
    """


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


for _command in (
    copy_command,
    sync_command,
    add_group,
    status_command,
    actions_command,
    show_command,
    result_command,
    queues_command,
    cancel_command,
    retry_command,
    compact_command,
    fsck_command,
    drop_command,
    completion_command,
):
    cli.add_command(_command)
cli.add_command(run_command, "run")
cli.add_command(run_command, "resume")


def main() -> None:
    """Run the ``journalq`` command line (the console script)."""
    try:
        cli(prog_name="journalq")
    finally:
        # The process ends next. Freezing every object keeps the collector
        # from walking them all once more while the interpreter shuts down,
        # which took about 30 ms of a 0.37 s no-op sync on the 2-core
        # development VM. Nothing is freed later, so only the console
        # script does this, never a library caller.
        gc.freeze()
