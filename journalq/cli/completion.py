"""Shell completion: ``journalq completion SHELL`` and what it completes.

The scripts are click's own (bash 4.4 or newer, zsh and fish). Beyond
command and option names they complete queue names for ``--queue`` (the
queues under the queue home), action ids for ``show`` and ``cancel``
(those of the queue named by ``--queue``) and local paths for SRC, DST and
PATH. A completion that cannot read its queue offers nothing rather than
failing in the shell. The queue store is imported only by the completions
that read a queue, so that completing a command or an option name stays
as quick as ``journalq --help``.
"""

from __future__ import annotations

import logging
import os
from typing import Final

import click
from click.shell_completion import CompletionItem, get_completion_class

__all__ = [
    "SHELLS",
    "complete_action_id",
    "complete_location",
    "complete_queue",
    "completion_script",
    "queue_names",
]

logger = logging.getLogger(__name__)

#: Shells whose completion script ``journalq completion`` prints.
SHELLS: Final = ("bash", "zsh", "fish")
#: The variable click's scripts set to ask the program for completions.
COMPLETE_VARIABLE: Final = "_JOURNALQ_COMPLETE"
#: Action ids offered at most, so a queue of a million files stays usable.
MAX_IDS: Final = 200


def completion_script(shell: str) -> str:
    """Return the completion script for ``shell`` (one of :data:`SHELLS`)."""
    from journalq.cli.main import cli

    completion_class = get_completion_class(shell)
    if completion_class is None or shell not in SHELLS:
        raise ValueError(f"no completion for the shell {shell!r}")
    return completion_class(cli, {}, "journalq", COMPLETE_VARIABLE).source()


def queues_root() -> str:
    """Return the directory that named queues live in."""
    from journalq.store import queue_directory

    return os.fspath(queue_directory("_").parent)


def queue_names() -> list[str]:
    """Return the names of the queues under the queue home, sorted.

    A hidden directory is left out: a name starting with ``.`` means a path
    to ``--queue``, and a queue that ``journalq drop`` was deleting when it
    was killed is renamed to one.
    """
    from journalq.store import FORMAT_NAME

    root = queues_root()
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return sorted(
        name
        for name in names
        if not name.startswith(".")
        and os.path.exists(os.path.join(root, name, FORMAT_NAME))
    )


def _looks_like_path(text: str) -> bool:
    return os.sep in text or text.startswith((".", "~"))


def complete_queue(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Complete ``--queue``: queue names, or directories for a path."""
    if _looks_like_path(incomplete):
        return [CompletionItem(incomplete, type="dir")]
    return [
        CompletionItem(name) for name in queue_names() if name.startswith(incomplete)
    ]


def complete_location(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Complete SRC, DST and PATH: local paths (URLs are left alone)."""
    if "://" in incomplete:
        return []
    return [CompletionItem(incomplete, type="file")]


def complete_action_id(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Complete an action id from the queue that ``--queue`` names."""
    from journalq.cli.context import DEFAULT_QUEUE, settings
    from journalq.store import queue_directory, read_state

    name = settings(ctx).queue or DEFAULT_QUEUE
    try:
        state = read_state(queue_directory(name))
        ids = [
            action_id for action_id in state.actions if action_id.startswith(incomplete)
        ]
    except Exception as error:  # a completion must never fail the shell
        logger.debug("no ids to complete from queue %s: %s", name, error)
        return []
    return [CompletionItem(action_id) for action_id in ids[:MAX_IDS]]
