"""Filesystems of a queue: from an fsspec URL to a filesystem and a path.

A queue's source and destination are each an fsspec URL plus storage
options: ``/data``, ``file:///data``, ``memory://scratch``,
``s3://bucket/prefix``, ``gcs://bucket/prefix``,
``ssh://user@host:2222/srv/data``, any other protocol fsspec knows, or
``NAME:path`` for a remote configured in journalq's remotes file (see
:mod:`journalq.backends.remotes`). The URL's protocol picks the filesystem;
its path, when it has one, is the base that relative action paths are
joined to. Where options come from, and which are journaled, is in
:mod:`journalq.backends.options`. A password in a URL's userinfo becomes a
secret storage option before the URL is used (:mod:`journalq.backends.urls`).

S3 (s3fs), GCS (gcsfs) and SFTP (sshfs) are opened as journalq's own
subclasses of those filesystems (:mod:`journalq.backends.s3`,
:mod:`~journalq.backends.gcs`, :mod:`~journalq.backends.sftp`), which add
directory markers, clear errors, transient-error rules, digests the
backend reports and sinks that commit each copy in one step. Every other
protocol goes through fsspec unchanged.
"""

from __future__ import annotations

import importlib
import os
import posixpath
from collections.abc import Mapping
from typing import Any, Final

import fsspec
from fsspec.implementations.local import LocalFileSystem

from journalq.backends import remotes
from journalq.backends.option_names import check_options
from journalq.backends.options import (
    decode_options,
    is_secret,
    parse_option,
    public_options,
)
from journalq.backends.urls import (
    chained_password_error,
    hide_password,
    url_password,
    without_password,
)
from journalq.errors import ActionError
from journalq.records import Endpoint

__all__ = [
    "Filesystem",
    "check_option_names",
    "configured_options",
    "endpoint",
    "hide_password",
    "is_local",
    "is_secret",
    "open_filesystem",
    "parse_option",
    "public_options",
    "split_url",
]

#: journalq's module for each protocol whose filesystem it extends.
_BACKENDS: Final = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "ssh": "sftp",
    "sftp": "sftp",
}

#: The ``pip install journalq[...]`` extra that brings each protocol's package.
_EXTRAS: Final = _BACKENDS


def endpoint(url: str, options: dict[str, Any] | None = None) -> Endpoint:
    """Build the journal's record of a filesystem, without its secrets.

    A password in the URL is kept out like a secret option: the record has
    the URL without it and the option's name (see :func:`split_url`).
    """
    url, options = split_url(url, options)
    return Endpoint(url, public_options(options))


def split_url(
    url: str, options: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """Move a password in ``url`` into the storage option that receives it.

    Returns the URL without the password and ``options`` with it, under
    the name the filesystem class reads it as (see
    :mod:`journalq.backends.urls`). An option given explicitly wins over
    the URL's password. Raises ``ActionError``, naming the URL without its
    password, when the filesystem reads no password from URLs, its
    protocol is unknown, or the URL is chained.
    """
    options = dict(options or {})
    if hide_password(url) == url:
        return url, options
    if "::" in url:
        raise chained_password_error(url)
    protocol = _protocol(url)
    try:
        filesystem_class = fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        raise _missing_package(hide_password(url), protocol, exc) from exc
    except ValueError as exc:
        raise _unknown_protocol(hide_password(url)) from exc
    public, from_url = _password_option(url, filesystem_class)
    return public, {**from_url, **options}


def _password_option(url: str, filesystem_class: Any) -> tuple[str, dict[str, str]]:
    """Move the password of ``url`` into the option ``filesystem_class`` reads.

    Returns ``url`` and ``{}`` unchanged when the class reads that part of
    the URL into an option that is no secret.
    """
    password = url_password(url)
    names = [
        name
        for name, value in filesystem_class._get_kwargs_from_urls(url).items()
        if value == password
    ]
    secret = [name for name in names if is_secret(name)]
    if secret:
        return without_password(url), {secret[0]: password}
    if names:
        return url, {}
    raise ActionError(
        without_password(url),
        f"the URL contains a password, but {filesystem_class.__name__} reads "
        "none from URLs, so it would stay in every path, and paths are "
        "journaled; remove it from the URL and give the credentials as "
        "storage options (secret ones are never journaled)",
    )


class Filesystem:
    """An opened fsspec filesystem and the base path of the queue on it.

    ``url`` is what the caller gave (a remote stays ``NAME:path``);
    ``target`` is the fsspec URL it resolved to. Neither contains a
    password: one given in the URL is among :attr:`options`.
    """

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        self.url, given = split_url(url, options)
        self.target, merged = split_url(*_resolve(self.url, given))
        self.options = decode_options(merged)
        self._fs, base = _open(self.target, self.options)
        self.base: str = base if _has_path(self.target) else ""
        self.local = is_local(self._fs)
        #: The base path as the paths of actions are compared with it, once
        #: a path was resolved.
        self._root: str | None = None

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The filesystem, connected again first if its connection was lost."""
        fs = self._fs
        if getattr(fs, "connection_lost", False):
            self._fs, _ = _open(self.target, self.options, fresh=True)
        return self._fs

    def path(self, value: str) -> str:
        """Resolve an action's path: relative paths join the base path.

        Raises ``ActionError`` for a path outside the base path: a queue
        opened on ``/data`` acts on ``/data`` and below, as an rclone remote
        stays within its root.
        """
        resolved = value
        if "://" not in resolved and self.base and not resolved.startswith("/"):
            resolved = posixpath.join(self.base, resolved)
        if self.local and "://" not in resolved:
            resolved = os.path.abspath(resolved)
        resolved = self._fs._strip_protocol(resolved).rstrip("/") or "/"
        if self.base and self._outside_root(resolved):
            raise ActionError(
                value,
                f"is outside {self.url}, the root this queue was opened "
                "with (symbolic links followed); give a path under it, "
                "or use a queue whose root contains it",
            )
        return resolved

    def _outside_root(self, path: str) -> bool:
        """Return whether the resolved ``path`` is outside the base path."""
        if self._root is None:
            base = os.path.abspath(self.base) if self.local else self.base
            self._root = self._fs._strip_protocol(base).rstrip("/") or "/"
        if not _within(path, self._root):
            return True
        # A symbolic link under the root can lead to a directory out of it,
        # and a tree copied from there would copy that directory. A link to
        # a file is copied as the file, as in a tree.
        if self.local and os.path.isdir(path):
            return not _within(os.path.realpath(path), os.path.realpath(self._root))
        return False

    def url_of(self, value: str) -> str:
        """Return the URL of an action's path, or the path itself on the local disk.

        journalq's S3, GCS and SFTP filesystems build it (``s3://bucket/key``,
        ``ssh://user@host:22/path``), and other filesystems put their protocol
        in front.
        """
        path = self.path(value)
        if self.local:
            return path
        url_of = getattr(self._fs, "url_of", None)
        if url_of is not None:
            return url_of(path)
        return self._fs.unstrip_protocol(path)

    def __repr__(self) -> str:
        return f"Filesystem({self.url!r})"


def _within(path: str, root: str) -> bool:
    """Return whether ``path`` is ``root`` or below it."""
    prefix = root if root.endswith("/") else root + "/"
    return path == root or path.startswith(prefix)


def open_filesystem(url: str, options: dict[str, Any] | None = None) -> Filesystem:
    """Open the filesystem that ``url`` names.

    Raises ``ActionError`` naming the URL for an unknown protocol, a
    protocol whose package is not installed, or an unknown remote.
    """
    return Filesystem(url, options)


def check_option_names(url: str, options: Mapping[str, Any]) -> None:
    """Raise ``StorageOptionError`` for an option that ``url``'s filesystem rejects.

    Only the names are checked, and the filesystem is not opened. A URL
    whose filesystem class cannot be found (an unknown remote or protocol,
    a package that is not installed, a chained URL) is not checked, and
    opening it reports the problem.
    """
    if not options:
        return
    cls = _filesystem_class(url)
    if cls is not None:
        check_options(cls, hide_password(url), options)


def configured_options(url: str) -> dict[str, Any]:
    """Return the storage options fsspec's configuration gives ``url``'s filesystem.

    fsspec reads them from its config files and ``FSSPEC_<PROTOCOL>_<NAME>``
    environment variables when it is imported, and applies them to each
    filesystem it opens (``fsspec.config.apply_config``). A URL whose
    filesystem class cannot be found gets none.
    """
    cls = _filesystem_class(url)
    if cls is None:
        return {}
    return fsspec.config.apply_config(cls, {})


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Return whether ``fs`` is the local disk (so plain ``os`` calls work)."""
    return isinstance(fs, LocalFileSystem)


# Resolution ------------------------------------------------------------------


def _resolve(url: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return the fsspec URL and the options of ``url``, remotes expanded."""
    reference = remotes.split_remote(url)
    if reference is None:
        return url, options
    name, path = reference
    remote = remotes.find_remote(name)
    return remote.url(path), {**remotes.expand_variables(remote), **options}


def _filesystem_class(url: str) -> type | None:
    """Return the class :func:`open_filesystem` would build for ``url``, or None."""
    reference = remotes.split_remote(url)
    try:
        if reference is not None:
            url = remotes.find_remote(reference[0]).url(reference[1])
        if "::" in url:
            return None
        protocol = _protocol(url)
        module = _BACKENDS.get(protocol)
        if module is None:
            return fsspec.get_filesystem_class(protocol)
        return importlib.import_module(f"journalq.backends.{module}").FILESYSTEM
    except (ActionError, ImportError, ValueError):
        return None


def _protocol(url: str) -> str:
    if "::" in url or "://" not in url:
        return "file" if "://" not in url else url.split("://", 1)[0]
    return url.split("://", 1)[0]


def _has_path(url: str) -> bool:
    if "://" not in url:
        return bool(url)
    return bool(url.split("://", 1)[1].strip("/"))


def _open(
    url: str, options: dict[str, Any], *, fresh: bool = False
) -> tuple[fsspec.AbstractFileSystem, str]:
    protocol = _protocol(url)
    module = _BACKENDS.get(protocol)
    if module is None or "::" in url:
        return _open_generic(url, options)
    try:
        backend = importlib.import_module(f"journalq.backends.{module}")
    except ImportError as exc:
        raise _missing_package(url, protocol, exc) from exc
    cls = backend.FILESYSTEM
    check_options(cls, url, options)
    arguments = {**cls._get_kwargs_from_urls(url), **options}
    if fresh:
        arguments["skip_instance_cache"] = True
    fs = _construct(url, cls, arguments)
    return fs, cls._strip_protocol(url)


def _construct(url: str, cls: type, arguments: dict[str, Any]) -> Any:
    try:
        return cls(**arguments)
    except TypeError as exc:
        raise ActionError(
            url, f"invalid storage options for {cls.__name__}: {exc}"
        ) from exc


def _open_generic(
    url: str, options: dict[str, Any]
) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        if "::" not in url:
            # NOTE: the options of a chained URL are split among its
            # filesystems by fsspec, so they are not checked here.
            check_options(fsspec.get_filesystem_class(_protocol(url)), url, options)
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        raise _missing_package(url, _protocol(url), exc) from exc
    except ValueError as exc:
        if "Protocol not known" not in str(exc):
            raise
        raise _unknown_protocol(url) from exc


def _unknown_protocol(url: str) -> ActionError:
    known = ", ".join(sorted(fsspec.available_protocols()))
    return ActionError(
        url,
        f"unknown protocol {_protocol(url)!r}; use one fsspec knows "
        f"({known}), a local path, or NAME:path for a configured remote",
    )


def _missing_package(url: str, protocol: str, exc: ImportError) -> ActionError:
    extra = _EXTRAS.get(protocol)
    if extra is None:
        return ActionError(
            url,
            f"the package for the {protocol!r} protocol is not installed "
            f"({exc}); install it with pip",
        )
    return ActionError(
        url,
        f"the {protocol!r} protocol needs a package that is not installed "
        f"({exc}); run: pip install 'journalq[{extra}]'",
    )
