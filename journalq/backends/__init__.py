"""Filesystems of a queue: from an fsspec URL to a filesystem and a path.

A queue's source and destination are each an fsspec URL (``/data``,
``file:///data``, ``memory://scratch``, ``s3://bucket/prefix``...) plus
storage options. The URL's protocol picks the filesystem; its path, when it
has one, is the base that relative action paths are joined to.

Only non-secret options are written to the journal: a resumed run gets the
secret ones again from the caller, or from fsspec's own configuration.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any, Final

import fsspec
from fsspec.implementations.local import LocalFileSystem

from journalq.records import Endpoint

__all__ = [
    "Filesystem",
    "endpoint",
    "is_local",
    "is_secret",
    "open_filesystem",
    "public_options",
]

#: Option names that hold credentials. Matched as whole words of the name,
#: so ``secret``, ``aws_secret_access_key`` and ``client_keys`` are secret
#: while ``endpoint_url`` is not.
_SECRET_WORDS: Final = re.compile(
    r"(^|_)(key|keys|secret|token|password|passphrase|credentials|session)(_|$)",
    re.IGNORECASE,
)


def is_secret(name: str) -> bool:
    """Return whether the storage option ``name`` contains a credential."""
    return bool(_SECRET_WORDS.search(name))


def public_options(options: dict[str, Any] | None) -> dict[str, str]:
    """Return the options safe to journal, as strings, secrets removed."""
    if not options:
        return {}
    return {name: str(value) for name, value in options.items() if not is_secret(name)}


def endpoint(url: str, options: dict[str, Any] | None = None) -> Endpoint:
    """Build the journal's record of a filesystem, without its secrets."""
    return Endpoint(url, public_options(options))


class Filesystem:
    """An opened fsspec filesystem and the base path of the queue on it."""

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.options = dict(options or {})
        fs, base = fsspec.core.url_to_fs(url, **self.options)
        self.fs: fsspec.AbstractFileSystem = fs
        self.base: str = base if _has_path(url) else ""
        self.local = is_local(fs)

    def path(self, value: str) -> str:
        """Resolve an action's path: relative paths join the base path."""
        if "://" not in value and self.base and not value.startswith("/"):
            value = posixpath.join(self.base, value)
        if self.local and "://" not in value:
            value = os.path.abspath(value)
        return self.fs._strip_protocol(value).rstrip("/") or "/"

    def __repr__(self) -> str:
        return f"Filesystem({self.url!r})"


def _has_path(url: str) -> bool:
    if "://" not in url:
        return bool(url)
    return bool(url.split("://", 1)[1].strip("/"))


def open_filesystem(url: str, options: dict[str, Any] | None = None) -> Filesystem:
    """Open the filesystem that ``url`` names."""
    return Filesystem(url, options)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Return whether ``fs`` is the local disk (so plain ``os`` calls work)."""
    return isinstance(fs, LocalFileSystem)
