"""Storage options: parsing ``key=value``, secrets, and their journal form.

Storage options are the keyword arguments of an fsspec filesystem
(``endpoint_url``, ``key``, ``port``...). They reach a queue from three
places, later ones winning: fsspec's own configuration (its config files
and ``FSSPEC_<PROTOCOL>_<NAME>`` variables, which fsspec applies itself
each time it opens a filesystem), a named remote (see
:mod:`journalq.backends.remotes`), and the caller
(``StorageQueue(source_options=...)`` or ``--source-option key=value``).

Only the options that are not secret are journaled, so a resumed run gets
the secret ones again from the same places. Secrets nested in an option's
value are found too: a key that names a credential at any depth of dicts
and lists (``client_kwargs={"aws_secret_access_key": ...}``), and a string
that is a URL with a password (``proxies={"https": "http://u:pw@proxy"}``).
Such an option is journaled with those values replaced, and a resumed run
needs the whole option again. A value that is not a string is journaled as
JSON text and decoded again when the queue is opened, so ``port=2222``
comes back as an integer and ``known_hosts=None`` as ``None``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from journalq.backends.urls import hide_password
from journalq.errors import ActionError

__all__ = [
    "decode_options",
    "is_secret",
    "parse_option",
    "parse_value",
    "public_options",
    "secret_names",
    "without_secrets",
]

#: Option names that contain credentials. Matched as whole words of the
#: name, separated by ``_`` or ``-``, so ``secret``,
#: ``aws_secret_access_key``, ``client_keys``, ``private_key`` and the
#: header ``X-Amz-Security-Token`` are secret while ``endpoint_url`` is
#: not. ``token`` covers gcsfs's token (a credentials file, a dict or
#: ``"anon"``).
_SECRET_WORDS: Final = re.compile(
    r"(^|[_-])(key|keys|secret|token|password|passwd|passphrase|credentials"
    r"|session|auth|authorization|pkey)([_-]|$)",
    re.IGNORECASE,
)


def is_secret(name: str) -> bool:
    """Return whether the storage option ``name`` contains a credential."""
    return bool(_SECRET_WORDS.search(name))


def parse_value(text: str) -> Any:
    """Return a command-line option value with its JSON type, if it has one.

    ``2222`` becomes an int, ``true`` a bool, ``null`` None, ``[...]`` and
    ``{...}`` a list and a dict. Anything else stays the string it is.
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_option(text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` storage option given on the command line.

    The value is typed by :func:`parse_value`. Raises ``ActionError`` for
    text without ``=`` or with an empty key.
    """
    name, separator, value = text.partition("=")
    name = name.strip()
    if not separator or not name:
        raise ActionError(
            text,
            "invalid storage option; expected KEY=VALUE, for example "
            "endpoint_url=http://127.0.0.1:9000",
        )
    return name, parse_value(value)


#: What the journal keeps of a secret option: its name only, so a resumed
#: run can name the options it must be given again.
SECRET_PLACEHOLDER: Final = "<secret, not journaled>"


def public_options(options: Mapping[str, Any] | None) -> dict[str, str]:
    """Return the options safe to journal as strings, secret values removed.

    A secret option keeps its name, with :data:`SECRET_PLACEHOLDER` for a
    value, and so does each secret nested in an option's value (see
    :func:`without_secrets`).

    Strings are kept as they are; other values become JSON text, which
    :func:`decode_options` reads back. A value JSON cannot encode is
    journaled as its ``str()``.
    """
    if not options:
        return {}
    return {
        name: SECRET_PLACEHOLDER
        if is_secret(name)
        else _journal_text(without_secrets(value))
        for name, value in options.items()
    }


def without_secrets(value: Any, placeholder: str = SECRET_PLACEHOLDER) -> Any:
    """Return ``value`` with each secret in it replaced by ``placeholder``.

    A secret is the value of a dict key that :func:`is_secret` names, at any
    depth of dicts, lists and tuples, or a string that is a URL with a
    password. Other values are kept, and a value without secrets is
    returned as it is.
    """
    if isinstance(value, str):
        return placeholder if hide_password(value) != value else value
    if isinstance(value, Mapping):
        return {
            key: placeholder
            if is_secret(str(key))
            else without_secrets(item, placeholder)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [without_secrets(item, placeholder) for item in value]
    return value


def secret_names(journaled: Mapping[str, str]) -> list[str]:
    """Return the names of journaled options that had secrets removed."""
    return [
        name
        for name, text in journaled.items()
        if text == SECRET_PLACEHOLDER or _has_placeholder(_decoded(text))
    ]


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_has_placeholder(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_placeholder(item) for item in value)
    return value == SECRET_PLACEHOLDER


def _journal_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


def decode_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``options`` with journaled JSON values decoded again.

    The journal's options arrive merged with the caller's, so a caller's
    string that is JSON for a number, a boolean or null (``"2222"``) is
    decoded too, as :func:`parse_option` would. Secret options are never
    journaled, so their values pass unchanged: a password ``"1234"`` stays
    a string. Placeholders of secrets that were not given again are left
    out, at any depth.
    """
    return {
        name: value
        if is_secret(name) or not isinstance(value, str)
        else _without_placeholders(_decoded(value))
        for name, value in options.items()
        if value != SECRET_PLACEHOLDER
    }


def _without_placeholders(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: _without_placeholders(item)
            for key, item in value.items()
            if item != SECRET_PLACEHOLDER
        }
    if isinstance(value, list):
        return [
            _without_placeholders(item) for item in value if item != SECRET_PLACEHOLDER
        ]
    return value


def _decoded(text: str) -> Any:
    value = parse_value(text)
    # Only JSON that is not a string (numbers, booleans, null, lists,
    # objects) was encoded by public_options; a quoted string stays quoted.
    return text if isinstance(value, str) else value
