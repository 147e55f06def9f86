"""``--source-option KEY=VALUE``: storage options given on the command line.

fsspec filesystems take keyword arguments (``anon=true``, ``port=2222``,
``endpoint_url=http://127.0.0.1:9000``...). Each is written as
``KEY=VALUE`` and parsed by :func:`journalq.backends.parse_option`, the
rule the library uses too. A value that is valid JSON gets its JSON type
(``2222`` an int, ``true`` a bool, ``null`` None, ``[...]`` a list). Any
other value stays a string, so ``True``, ``0755`` and ``s3://b`` do.
"""

from __future__ import annotations

import re
from typing import Any, Final

import click

from journalq.errors import ActionError

__all__ = ["StorageOption"]

_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class StorageOption(click.ParamType):
    """The click type of a ``KEY=VALUE`` storage option.

    Its error messages never repeat the value, because it may be a secret.
    """

    name = "key=value"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        if "=" not in value:
            self.fail("expected KEY=VALUE, but the value has no '='", param, ctx)
        key = value.partition("=")[0].strip()
        if not _KEY.fullmatch(key):
            self.fail(
                f"the key {key!r} is not a valid option name (letters, digits "
                "and _, not starting with a digit)",
                param,
                ctx,
            )
        # Imported here: the backends package imports fsspec, which the
        # command line needs only once a command runs.
        from journalq.backends import parse_option

        try:
            return parse_option(value)
        except ActionError as error:
            self.fail(error.reason, param, ctx)
