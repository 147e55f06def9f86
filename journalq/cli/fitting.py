"""Fitting tables into the terminal: shortened ids, paths cut in the middle.

A table printed to a terminal is fitted to its width. Ids are shortened
to the shortest prefix that no other action of the queue shares, at least
:data:`MIN_ID_CHARS` characters, as ``git log --oneline`` shortens hashes.
Every command that takes an id accepts such a prefix. A path too long for
the room it has keeps its start and its last components (see
:func:`journalq.cli.output.shorten_path`), and the two sides of
``SRC -> DST`` share the room by one rule. Output to a pipe or a file is
not fitted unless ``COLUMNS`` is set, so a script gets whole ids and paths.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from typing import Final

from journalq.cli.output import abbreviate_home, arrow, shorten_path

__all__ = [
    "MIN_ID_CHARS",
    "fit_pair",
    "share_width",
    "table_width",
    "unique_prefix_length",
]

#: Minimum length of a shortened id, the same as that of the id in the
#: name of a large copy's parts file.
MIN_ID_CHARS: Final = 8
#: Characters ``SRC -> DST`` puts between the two paths.
_ARROW_CHARS: Final = len(" -> ")


def table_width() -> int | None:
    """Return the columns a table may take, or None to print it whole.

    ``COLUMNS``, when it is set to a positive number, wins. Otherwise a
    terminal on stdout gives its width, and a pipe or a file no limit.
    """
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def unique_prefix_length(ids: Iterable[str], minimum: int = MIN_ID_CHARS) -> int:
    """Return the shortest prefix length at which all ``ids`` differ.

    It is at least ``minimum``. Neighbours in sorted order share the
    longest prefixes, so only they are compared.
    """
    length = minimum
    for first, second in itertools.pairwise(sorted(ids)):
        length = max(length, _common_prefix_length(first, second) + 1)
    return length


def _common_prefix_length(first: str, second: str) -> int:
    for index, (left, right) in enumerate(zip(first, second, strict=False)):
        if left != right:
            return index
    return min(len(first), len(second))


def share_width(lengths: Sequence[int], total: int) -> list[int]:
    """Split ``total`` columns among fields of the given natural lengths.

    Each field gets an equal share. A field shorter than its share keeps
    its length, and the columns it leaves are shared among the longer
    ones. The widths add up to at most ``total`` and never exceed a
    field's length.
    """
    widths = list(lengths)
    left = max(total, 0)
    pending = sorted(range(len(lengths)), key=lambda index: lengths[index])
    while pending:
        share = left // len(pending)
        shortest = pending[0]
        if lengths[shortest] <= share:
            left -= lengths[shortest]
            pending.pop(0)
            continue
        # Every field left is longer than an equal share: they split the
        # rest, the first ones taking a column of the remainder each.
        extra = left - share * len(pending)
        for rank, index in enumerate(pending):
            widths[index] = share + (1 if rank < extra else 0)
        break
    return widths


def fit_pair(source: str, destination: str, width: int | None) -> str:
    """Return ``SRC -> DST`` in at most ``width`` characters where possible.

    Both paths start with ``~`` under the home directory. When the pair is
    still too long, :func:`share_width` splits the room between the two and
    each is cut by :func:`shorten_path`, so a short side stays whole and
    the longer sides are cut alike. A path whose last component does not
    fit its share keeps only the end of that component. None as ``width``
    leaves both paths whole.
    """
    source, destination = abbreviate_home(source), abbreviate_home(destination)
    if width is None or len(source) + _ARROW_CHARS + len(destination) <= width:
        return arrow(source, destination)
    source_width, destination_width = share_width(
        [len(source), len(destination)], width - _ARROW_CHARS
    )
    return arrow(
        shorten_path(source, source_width),
        shorten_path(destination, destination_width),
    )
