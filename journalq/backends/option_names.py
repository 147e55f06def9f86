"""Storage option names a filesystem class takes, checked before it is built.

fsspec filesystems take ``**kwargs``, and most pass the options they do not
name on to ``AbstractFileSystem``, which ignores them. s3fs passes them to
aiobotocore's session, which raises ``TypeError`` only at the first request.
So a misspelled option (``endpoint`` for ``endpoint_url``) is either
ignored or fails long after the queue journaled it. :func:`check_options`
rejects such a name before the filesystem is built.

The names a class takes are collected along its MRO, from the named
parameters of each ``__init__``. A class whose ``__init__`` takes
``**kwargs`` adds the names of wherever those go:

* ``super().__init__`` only: read from the source of ``__init__``, which
  must use ``**kwargs`` nowhere else. The walk goes on to the next class.
* ``AbstractFileSystem`` ends the walk with the options it documents.
* For s3fs, gcsfs and sshfs the destinations are listed in this module:
  their ``__init__`` also reads options from ``**kwargs`` or passes them
  elsewhere. sshfs passes them to ``asyncssh.connect``, which raises
  ``TypeError`` for an unknown one while the filesystem is built.

When neither applies (HTTP passes unknown options to every request), the
names cannot be decided, and each option not named in a signature is
logged as a warning instead of rejected.

Some options take a JSON object whose keys become keyword arguments of
another library, which rejects an unknown one only when the filesystem
first connects. Where those keys are known (:data:`_NESTED_KEYS`), the
keys of such a value are checked too. Others are not checked: s3fs's
``s3_additional_kwargs`` go to each S3 request, and which keys a request
takes depends on the operation.
"""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import logging
import textwrap
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple

import fsspec

from journalq.errors import StorageOptionError, StorageOptionValueError

__all__ = [
    "NestedKeys",
    "accepted_options",
    "check_options",
    "closest_names",
    "nested_keys",
]

logger = logging.getLogger(__name__)

#: The options ``AbstractFileSystem.__init__(**storage_options)`` documents:
#: the settings of its listings cache (``DirCache``), ``skip_instance_cache``
#: (read by fsspec's instance cache) and ``asynchronous`` and ``loop``.
#: It ignores any other name. Checked against fsspec 2026.9.
FSSPEC_BASE_OPTIONS: Final = frozenset(
    {
        "use_listings_cache",
        "listings_expiry_time",
        "max_paths",
        "skip_instance_cache",
        "asynchronous",
        "loop",
    }
)


def _aiobotocore_session() -> frozenset[str]:
    from aiobotocore.session import AioSession

    return _parameters(AioSession.__init__) | FSSPEC_BASE_OPTIONS


def _gcsfs_retries() -> frozenset[str]:
    from gcsfs.extended_gcsfs import DEFAULT_RETRY_CONFIG

    return frozenset(f"retry_{name}" for name in DEFAULT_RETRY_CONFIG) | {
        "memmove_max_workers"
    }


#: Classes whose ``**kwargs`` end in another library: the names that
#: library takes. s3fs 2026.9 passes every option but the listings-cache
#: ones to ``aiobotocore.session.AioSession(**kwargs)``.
_KWARGS_END: Final[dict[str, Callable[[], frozenset[str]]]] = {
    "s3fs.core.S3FileSystem": _aiobotocore_session,
}

#: Classes that read some options from ``**kwargs`` themselves and pass
#: all of them to ``super().__init__``: the names they read (gcsfs 2026.10).
_KWARGS_READ: Final[dict[str, Callable[[], frozenset[str]]]] = {
    "gcsfs.core.GCSFileSystem": lambda: frozenset({"listings_expiry_time"}),
    "gcsfs.extended_gcsfs.ExtendedGcsFileSystem": _gcsfs_retries,
}

#: Classes whose constructor raises ``TypeError`` for an unknown option
#: itself: sshfs passes ``**kwargs`` to ``asyncssh.connect``.
_CHECKED_BY_CONSTRUCTOR: Final = frozenset({"sshfs.spec.SSHFileSystem"})


class NestedKeys(NamedTuple):
    """The keys that a storage option whose value is a JSON object takes."""

    #: Returns the accepted keys, importing the library that defines them.
    keys: Callable[[], frozenset[str]]
    #: A description of the keys' origin, which the error quotes.
    source: str


@functools.cache
def _create_client_keys() -> frozenset[str]:
    from botocore.session import Session

    # s3fs passes the service name, and a ``config`` built from
    # ``config_kwargs``, itself, so either key again is a TypeError.
    return _parameters(Session.create_client) - {"service_name", "config"}


@functools.cache
def _botocore_config_keys() -> frozenset[str]:
    from aiobotocore.config import AioConfig
    from botocore.config import Config

    # Config(**kwargs) raises TypeError for a key not in OPTION_DEFAULTS.
    return _parameters(AioConfig.__init__) | frozenset(Config.OPTION_DEFAULTS)


@functools.cache
def _client_session_keys() -> frozenset[str]:
    from aiohttp import ClientSession

    return _parameters(ClientSession.__init__)


#: Options whose JSON object value is passed on as keyword arguments, by
#: class: the keys each takes. s3fs 2026.9 passes ``client_kwargs`` to
#: ``AioSession.create_client`` and ``config_kwargs`` to ``AioConfig``.
#: gcsfs 2026.10 passes ``session_kwargs`` to ``aiohttp.ClientSession``.
_NESTED_KEYS: Final[dict[str, dict[str, NestedKeys]]] = {
    "s3fs.core.S3FileSystem": {
        "client_kwargs": NestedKeys(
            _create_client_keys,
            "the keyword arguments of botocore's Session.create_client "
            "except service_name and config",
        ),
        "config_kwargs": NestedKeys(
            _botocore_config_keys, "the parameters of botocore.config.Config"
        ),
    },
    "gcsfs.core.GCSFileSystem": {
        "session_kwargs": NestedKeys(
            _client_session_keys, "the keyword arguments of aiohttp.ClientSession"
        ),
    },
}


def check_options(cls: type, url: str, options: Mapping[str, Any]) -> None:
    """Raise ``StorageOptionError`` for an option that ``cls`` does not take.

    Options are the caller's, not those fsspec reads from its own
    configuration. When the names ``cls`` takes cannot be decided, an
    option its signatures do not name is logged as a warning. The keys
    of an option in :data:`_NESTED_KEYS` are checked as well.
    """
    if not options:
        return
    if _qualified(cls) not in _CHECKED_BY_CONSTRUCTOR:
        _check_names(cls, url, options)
    _check_nested_keys(cls, url, options)


def _check_names(cls: type, url: str, options: Mapping[str, Any]) -> None:
    names, complete = accepted_options(cls)
    unknown = sorted(name for name in options if name not in names)
    if not unknown:
        return
    if complete:
        raise StorageOptionError(
            url, cls.__name__, unknown, closest_names(unknown, names)
        )
    for name in unknown:
        _warn_unchecked(cls.__name__, name)


def _check_nested_keys(cls: type, url: str, options: Mapping[str, Any]) -> None:
    """Raise ``StorageOptionError`` for a key that an option's value may not have.

    Raises ``StorageOptionValueError`` when such an option is not a JSON
    object at all.
    """
    for option, nested in nested_keys(cls).items():
        if option not in options:
            continue
        value = options[option]
        if not isinstance(value, Mapping):
            raise StorageOptionValueError(url, cls.__name__, option, value)
        accepted = nested.keys()
        unknown = sorted(str(key) for key in value if key not in accepted)
        if unknown:
            raise StorageOptionError(
                url,
                cls.__name__,
                unknown,
                closest_names(unknown, accepted),
                option=option,
                keys_source=nested.source,
            )


def nested_keys(cls: type) -> dict[str, NestedKeys]:
    """Return the options of ``cls`` whose JSON object keys are known."""
    for klass in cls.__mro__:
        found = _NESTED_KEYS.get(_qualified(klass))
        if found is not None:
            return found
    return {}


@functools.cache
def _warn_unchecked(class_name: str, name: str) -> None:
    logger.warning(
        "cannot check the storage option %r: %s passes options it does not "
        "name on to other code, so a misspelled one is ignored or fails later",
        name,
        class_name,
    )


@functools.cache
def accepted_options(cls: type) -> tuple[frozenset[str], bool]:
    """Return the option names ``cls`` takes, and whether that list is complete."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is fsspec.AbstractFileSystem:
            return frozenset(names | FSSPEC_BASE_OPTIONS), True
        function = klass.__dict__.get("__init__")
        if function is None:
            continue
        names |= _parameters(function)
        if not _takes_kwargs(function):
            return frozenset(names), True
        qualified = _qualified(klass)
        if qualified in _KWARGS_END:
            return frozenset(names | _KWARGS_END[qualified]()), True
        if qualified in _KWARGS_READ:
            names |= _KWARGS_READ[qualified]()
            continue
        if not _forwards_to_super(function):
            return frozenset(names), False
    return frozenset(names), False


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _parameters(function: Any) -> frozenset[str]:
    """Return the names ``function`` takes as keywords, ``self`` left out."""
    parameters = list(inspect.signature(function).parameters.values())[1:]
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in parameters if p.kind in keyword)


def _takes_kwargs(function: Any) -> bool:
    return any(
        parameter.kind is inspect.Parameter.VAR_KEYWORD
        for parameter in inspect.signature(function).parameters.values()
    )


def _forwards_to_super(function: Any) -> bool:
    """Return whether ``function`` uses its ``**kwargs`` only in ``super().__init__``.

    False when its source cannot be read or parsed.
    """
    try:
        source = textwrap.dedent(inspect.getsource(function))
        definition = ast.parse(source).body[0]
    except (OSError, TypeError, SyntaxError, IndexError):
        return False
    if not isinstance(definition, ast.FunctionDef) or definition.args.kwarg is None:
        return False
    name = definition.args.kwarg.arg
    forwarded = {
        id(keyword.value)
        for call in ast.walk(definition)
        if isinstance(call, ast.Call) and _is_super_init(call.func)
        for keyword in call.keywords
        if keyword.arg is None
    }
    uses = [
        node
        for node in ast.walk(definition)
        if isinstance(node, ast.Name) and node.id == name
    ]
    return all(id(node) in forwarded for node in uses)


def _is_super_init(function: ast.expr) -> bool:
    """Return whether ``function`` is ``super().__init__``."""
    if not isinstance(function, ast.Attribute) or function.attr != "__init__":
        return False
    call = function.value
    return (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == "super"
    )


def closest_names(unknown: Iterable[str], names: Iterable[str]) -> dict[str, str]:
    """Return the closest accepted name for each unknown one that has one."""
    known = sorted(names)
    found = {}
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if close:
            found[name] = close[0]
    return found
