"""``--source-option KEY=VALUE``: storage options given on the command line.

fsspec filesystems take keyword arguments (``anon=true``, ``port=2222``,
``endpoint_url=http://127.0.0.1:9000``...). On the command line each is
written as ``KEY=VALUE``. ``true`` and ``false`` (any case) become
booleans and plain integers become ints, so ``0755`` becomes 755. Everything
else, ``1e3`` and ``1.5`` included, stays a string.
"""

from __future__ import annotations

import re
from typing import Any, Final

import click

__all__ = ["StorageOption", "parse_option"]

_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")


def parse_option(text: str) -> tuple[str, Any]:
    """Split ``"key=value"`` into the key and the converted value.

    Raises ValueError naming the problem when ``text`` has no ``=`` or the
    key is not a Python identifier (fsspec passes options as keywords). The
    message never repeats a value, because it may be a secret.
    """
    key, separator, value = text.partition("=")
    key = key.strip()
    if not separator:
        raise ValueError("expected KEY=VALUE, but the value has no '='")
    if not _KEY.fullmatch(key):
        raise ValueError(
            f"the key {key!r} is not a valid option name (letters, digits "
            "and _, not starting with a digit)"
        )
    return key, _convert(value)


def _convert(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INTEGER.fullmatch(value):
        return int(value)
    return value


class StorageOption(click.ParamType):
    """The click type of a ``KEY=VALUE`` storage option."""

    name = "key=value"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_option(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)
