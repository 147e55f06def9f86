"""The table that ``journalq actions`` prints, whole or fitted to a width.

Whole, each action is one line with its full id, paths and error, for a
pipe or a file. Fitted (on a terminal, see :mod:`journalq.cli.fitting`),
the ids are shortened. The paths stay in the last column when every
action's paths fit it. Otherwise each action's paths go on a line of their
own below it, cut in the middle only where that line is still too long.
An error is wrapped on lines of its own below its action. So a typical
queue's table fits 80 columns, and ``journalq show ID`` prints one action
whole.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Final

import click

from journalq.cli.fitting import fit_pair
from journalq.cli.output import (
    abbreviate_home,
    arrow,
    format_bytes,
    print_table,
    shorten_path,
    table_lines,
)
from journalq.events import ActionInfo

__all__ = ["print_actions"]

#: Titles of the columns before PATH.
_TITLES: Final = ("ID", "STATUS", "KIND", "ATTEMPTS", "BYTES")
#: Indexes of the columns aligned to the right: ATTEMPTS and BYTES.
_RIGHT: Final = frozenset({3, 4})
#: Columns between two cells of a row, as :func:`table_lines` joins them.
_GAP: Final = 2
#: Minimum width of a path or an error line, however narrow the terminal.
MIN_CUT_CHARS: Final = 24
#: Lines an error takes at most below its action in a fitted table.
MAX_ERROR_LINES: Final = 3
#: Indent of the lines below a row: its paths and its error.
_INDENT: Final = "  "
_ERROR_LABEL: Final = f"{_INDENT}error: "


def print_actions(
    actions: Sequence[ActionInfo],
    *,
    header: bool,
    width: int | None = None,
    id_chars: int | None = None,
) -> None:
    """Print ``actions`` as a table, fitted to ``width`` columns unless None.

    ``id_chars`` is the length of the shortened ids of a fitted table.
    """
    if width is None:
        _print_whole(actions, header=header)
        return
    _print_fitted(actions, header=header, width=width, id_chars=id_chars)


def _print_whole(actions: Sequence[ActionInfo], *, header: bool) -> None:
    with_errors = any(action.error for action in actions)
    rows = []
    for action in actions:
        row = [*_fixed_cells(action, None), _whole_path(action)]
        if with_errors:
            row.append(action.error or "")
        rows.append(row)
    titles = [*_TITLES, "PATH"]
    if with_errors:
        titles.append("ERROR")
    print_table(rows, titles if header else None, right=_RIGHT)


def _print_fitted(
    actions: Sequence[ActionInfo], *, header: bool, width: int, id_chars: int | None
) -> None:
    fixed = [_fixed_cells(action, id_chars) for action in actions]
    paths = [_fitted_path(action, None) for action in actions]
    every = [list(_TITLES), *fixed] if header else fixed
    path_width = width - _columns_width(every)
    if all(len(path) <= path_width for path in paths):
        rows = [[*cells, path] for cells, path in zip(fixed, paths, strict=True)]
        _print_lines(rows, [*_TITLES, "PATH"], actions, header=header, width=width)
        return
    # The paths go on lines of their own, below their rows, with the whole
    # width for them.
    below = [
        f"{_INDENT}{_fitted_path(action, width - len(_INDENT))}" for action in actions
    ]
    _print_lines(fixed, list(_TITLES), actions, header=header, width=width, below=below)


def _print_lines(
    rows: Sequence[Sequence[str]],
    titles: Sequence[str],
    actions: Sequence[ActionInfo],
    *,
    header: bool,
    width: int,
    below: Sequence[str] | None = None,
) -> None:
    """Print ``rows``, each followed by its line of ``below`` and its error."""
    lines = table_lines(rows, titles if header else None, right=_RIGHT)
    if header:
        click.echo(click.style(lines.pop(0), bold=True))
    for number, (line, action) in enumerate(zip(lines, actions, strict=True)):
        click.echo(line)
        if below is not None:
            click.echo(below[number])
        if action.error:
            for error_line in _error_lines(action.error, width):
                click.echo(error_line)


def _columns_width(rows: Sequence[Sequence[str]]) -> int:
    """Return the columns that the cells of ``rows`` take, each with its gap."""
    if not rows:
        return 0
    return sum(
        max(len(row[index]) for row in rows) + _GAP for index in range(len(rows[0]))
    )


def _fixed_cells(action: ActionInfo, id_chars: int | None) -> list[str]:
    return [
        action.id[:id_chars] if id_chars else action.id,
        action.status,
        action.kind,
        str(action.attempts),
        format_bytes(action.bytes),
    ]


def _service(action: ActionInfo) -> str:
    """Return `` (source)`` or `` (destination)`` for an action with one path."""
    if action.service and not (action.source and action.destination):
        return f" ({action.service})"
    return ""


def _whole_path(action: ActionInfo) -> str:
    return arrow(action.source, action.destination) + _service(action)


def _fitted_path(action: ActionInfo, width: int | None) -> str:
    """Return the action's paths, ``~`` for the home directory, cut to ``width``.

    None leaves them whole.
    """
    if width is not None:
        width = max(width, MIN_CUT_CHARS)
    if action.source and action.destination:
        return fit_pair(action.source, action.destination, width)
    service = _service(action)
    path = abbreviate_home(action.source or action.destination or "")
    if width is not None:
        path = shorten_path(path, width - len(service))
    return path + service


def _error_lines(error: str, width: int) -> list[str]:
    """Return ``error`` wrapped below its action, cut after a few lines."""
    return textwrap.wrap(
        error,
        width=max(width, MIN_CUT_CHARS),
        initial_indent=_ERROR_LABEL,
        subsequent_indent=" " * len(_ERROR_LABEL),
        max_lines=MAX_ERROR_LINES,
        placeholder=" ...",
        # Paths have hyphens; a line ends between words, not inside a name.
        break_on_hyphens=False,
    )
