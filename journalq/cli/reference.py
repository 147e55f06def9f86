"""Write the command-line reference in Markdown from the click commands.

``python -m journalq.cli.reference > docs/cli.md`` regenerates the page; a
test regenerates it and compares, so the page cannot drift from ``--help``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import click

from journalq.cli.main import cli

__all__ = ["reference"]

_PROLOGUE = """\
# Command-line reference

Generated from the commands' own help by `python -m journalq.cli.reference`;
do not edit by hand. The options `--queue`, `-v` and `-q` (and, on the
commands that run a queue, `-j`, `--compare`, `--dry-run`, `--progress`
and `--stats`) may also be given before the command name:
`journalq -v sync A B` is `journalq sync A B -v`. The exit codes and the
JSON lines of `--json` are described in [the JSON reference](json.md).
"""


def reference() -> str:
    """Return the Markdown reference of every ``journalq`` command."""
    parts = [_PROLOGUE]
    for path, command in _walk(cli, ["journalq"]):
        parts.append(_section(path, command))
    return "\n".join(parts)


def _walk(
    command: click.Command, path: list[str]
) -> Iterator[tuple[list[str], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            child = command.commands[name]
            if name == "resume":
                continue  # the same command as `run`, named twice
            yield from _walk(child, [*path, name])


def _section(path: list[str], command: click.Command) -> str:
    name = " ".join(path)
    context = click.Context(command, info_name=name, help_option_names=["-h", "--help"])
    lines = [f"## `{name}`", ""]
    usage = " ".join(command.collect_usage_pieces(context))
    lines += ["```", f"{name} {usage}".rstrip(), "```", ""]
    # `journalq resume` has no section: the help of `run` names it.
    lines += _help_lines(command.help or "")
    options = [
        record
        for param in command.get_params(context)
        if isinstance(param, click.Option)
        and (record := param.get_help_record(context)) is not None
    ]
    if options:
        lines += ["| option | what it sets |", "|---|---|"]
        lines += [f"| `{_cell(names)}` | {_cell(text)} |" for names, text in options]
        lines.append("")
    return "\n".join(lines)


def _help_lines(text: str) -> list[str]:
    """Return click help text as Markdown; ``\\b`` blocks stay as written."""
    lines: list[str] = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        if paragraph.startswith("\b"):
            block = paragraph.removeprefix("\b").strip("\n")
            lines += ["```", block, "```", ""]
        else:
            lines += [" ".join(paragraph.split()), ""]
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    click.echo(reference(), nl=False)
