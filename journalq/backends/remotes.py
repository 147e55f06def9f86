"""Named remotes: ``NAME:path`` for a filesystem configured once, like rclone's.

The remotes live in a TOML file outside every queue, so their secrets never
enter a journal: ``$JOURNALQ_CONFIG`` when set, else ``remotes.toml`` in
the user's configuration directory (``~/.config/journalq/remotes.toml`` on
Linux, from :func:`platformdirs.user_config_dir`). Each table is one
remote::

    [backup]
    protocol = "s3"                  # any fsspec protocol: s3, gcs, ssh...
    root = "my-bucket/journalq"      # optional, put before every path
    endpoint_url = "https://s3.example.com"
    key = "${BACKUP_KEY_ID}"         # ${VAR} is read from the environment
    secret = "${BACKUP_SECRET}"

    [nas]
    protocol = "ssh"
    host = "nas.example.com"
    username = "me"
    client_keys = ["~/.ssh/id_ed25519"]

``backup:photos/2024`` then means ``s3://my-bucket/journalq/photos/2024``
with those options, and ``nas:/srv/data`` means ``/srv/data`` on the host
``nas.example.com``. Every key but ``protocol`` and ``root`` is a storage
option of the protocol's filesystem. ``${VAR}`` anywhere in a string value
is replaced by the environment variable ``VAR`` when the remote is used,
and a variable that is not set is an error naming the remote and the
option. The queue journals ``NAME:path`` itself, so a resumed run reads the
file again.

A remote name is at least two characters of letters, digits, ``_``, ``-``
and ``.``, starting with a letter or digit. A local path that looks like
``NAME:path`` needs a ``./`` in front.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Any, Final

import msgspec

from journalq.errors import ActionError

__all__ = [
    "CONFIG_ENV",
    "Remote",
    "config_path",
    "expand_variables",
    "find_remote",
    "load_remotes",
    "split_remote",
]

#: Environment variable naming the remotes file, overriding the default.
CONFIG_ENV: Final = "JOURNALQ_CONFIG"

_REFERENCE: Final = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]+):(?P<path>.*)")
_VARIABLE: Final = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")
_RESERVED: Final = frozenset({"protocol", "root"})


class Remote(msgspec.Struct, frozen=True):
    """One configured remote: a protocol, a root path and storage options."""

    name: str
    protocol: str
    root: str = ""
    options: dict[str, Any] = msgspec.field(default_factory=dict)

    def url(self, path: str) -> str:
        """Return the fsspec URL of ``path`` on this remote."""
        joined = posixpath.join(self.root, path.lstrip("/")) if self.root else path
        if self.protocol in ("file", "local"):
            return joined
        return f"{self.protocol}://{joined}"


def config_path() -> Path:
    """Return the path of the remotes file (which need not exist)."""
    configured = os.environ.get(CONFIG_ENV)
    if configured:
        return Path(configured).expanduser()
    # Imported here, like tomllib below: most commands name no remote, and
    # the two imports cost a few milliseconds of every command's start-up.
    import platformdirs

    return Path(platformdirs.user_config_dir("journalq")) / "remotes.toml"


def split_remote(text: str) -> tuple[str, str] | None:
    """Split ``NAME:path`` into the remote's name and the path, if it is one.

    A URL with ``://`` and a one-letter drive like ``C:`` are not remotes.
    """
    if "://" in text:
        return None
    match = _REFERENCE.fullmatch(text)
    if match is None:
        return None
    return match["name"], match["path"]


def load_remotes(path: Path | None = None) -> dict[str, Remote]:
    """Read every remote in the remotes file; a missing file has none.

    Raises ``ActionError`` for a file that is not valid TOML or a remote
    without a ``protocol``.
    """
    import tomllib

    path = path or config_path()
    try:
        with open(path, "rb") as file:
            tables = tomllib.load(file)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ActionError(
            str(path), f"invalid remotes file: {exc}; fix the TOML syntax"
        ) from exc
    return {
        name: _remote(path, name, table)
        for name, table in tables.items()
        if isinstance(table, dict)
    }


def _remote(path: Path, name: str, table: dict[str, Any]) -> Remote:
    protocol = table.get("protocol")
    if not isinstance(protocol, str) or not protocol:
        raise ActionError(
            name,
            f"remote {name!r} in {path} has no protocol; add a line such as "
            'protocol = "s3"',
        )
    options = {key: value for key, value in table.items() if key not in _RESERVED}
    root = str(table.get("root", ""))
    # A local root keeps its leading slash: it is an absolute path.
    root = root.rstrip("/") if protocol in ("file", "local") else root.strip("/")
    return Remote(name, protocol, root, options)


def find_remote(name: str) -> Remote:
    """Return the remote ``name``; raises ``ActionError`` when none is set up."""
    path = config_path()
    remotes = load_remotes(path)
    remote = remotes.get(name)
    if remote is None:
        known = ", ".join(sorted(remotes)) or "none"
        raise ActionError(
            f"{name}:",
            f"no remote named {name!r} in {path} (configured: {known}); add a "
            f"[{name}] table there, set ${CONFIG_ENV} to another file, or write "
            "a local path that contains ':' as ./PATH",
        )
    return remote


def expand_variables(remote: Remote) -> dict[str, Any]:
    """Return the remote's options with ``${VAR}`` read from the environment."""
    return {
        key: _expand(remote.name, key, value) for key, value in remote.options.items()
    }


def _expand(remote: str, option: str, value: Any) -> Any:
    if isinstance(value, list):
        return [_expand(remote, option, item) for item in value]
    if isinstance(value, dict):
        return {key: _expand(remote, option, item) for key, item in value.items()}
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        variable = match["name"]
        found = os.environ.get(variable)
        if found is None:
            raise ActionError(
                f"{remote}:",
                f"option {option!r} of remote {remote!r} reads the environment "
                f"variable {variable}, which is not set; export it and try again",
            )
        return found

    return _VARIABLE.sub(replace, value)
