"""Batch files for ``journalq add --from FILE``: one action per line.

Each non-blank line is a JSON object in the dict form that
:meth:`StorageQueue.add` takes, for example::

    {"kind": "copy_file", "source": "/data/a.csv", "destination": "/backup/a.csv"}
    {"kind": "sync", "source": "/data", "destination": "/backup", "delete": true}
    {"kind": "mkdir", "path": "/backup/empty", "service": "destination"}

Paths may be URLs (``memory://x``); every source of the file must be on one
filesystem and every destination on one, because a queue has one of each.
Every line is parsed and checked here before the queue is opened, and
:meth:`StorageQueue.add_all` checks the actions themselves before it
journals the first, so a bad line adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec

from journalq.cli.queues import parse_location
from journalq.errors import ActionError

__all__ = ["Batch", "BatchLineError", "parse_batch"]

#: Fields each kind requires, and the fields it also accepts.
REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "copy_file": ("source", "destination"),
    "copy_tree": ("source", "destination"),
    "sync": ("source", "destination"),
    "mkdir": ("path",),
    "delete": ("path",),
    "list": ("path",),
}
OPTIONAL: Final[dict[str, tuple[str, ...]]] = {
    "copy_file": (),
    "copy_tree": (),
    "sync": ("delete", "max_delete", "force"),
    "mkdir": ("service",),
    "delete": ("service", "recursive"),
    "list": ("service", "dir_only", "recursive"),
}
#: The service a path addresses when a line names none (the library's too).
DEFAULT_SERVICE: Final = {"mkdir": "destination", "delete": "destination"}
_TYPES: Final[dict[str, type]] = {
    "source": str,
    "destination": str,
    "path": str,
    "service": str,
    "delete": bool,
    "force": bool,
    "recursive": bool,
    "dir_only": bool,
    "max_delete": int,
}
_SERVICES: Final = ("source", "destination")


class BatchLineError(Exception):
    """A line of a batch file is invalid."""

    def __init__(self, line: int, problem: str) -> None:
        self.line = line
        self.problem = problem
        super().__init__(f"line {line}: {problem}")


class Batch(msgspec.Struct):
    """The checked actions of a batch file and the filesystems they use."""

    #: (line number, specification with plain paths) in file order.
    actions: list[tuple[int, dict[str, Any]]] = msgspec.field(default_factory=list)
    #: Filesystem URL of each service, with the line that set it first.
    filesystems: dict[str, tuple[str, int]] = msgspec.field(default_factory=dict)

    def filesystem(self, service: str) -> str | None:
        found = self.filesystems.get(service)
        return found[0] if found else None


def parse_batch(lines: Iterable[str]) -> Batch:
    """Check every line of a batch file; raises BatchLineError for the first bad one."""
    batch = Batch()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        specification = _decode(number, line)
        _check_fields(number, specification)
        batch.actions.append((number, _resolve(number, specification, batch)))
    return batch


def _decode(number: int, line: str) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(line)
    except msgspec.DecodeError as error:
        raise BatchLineError(number, f"invalid JSON ({error})") from None
    if not isinstance(value, dict):
        raise BatchLineError(number, f"expected a JSON object, got {line.strip()!r}")
    return value


def _check_fields(number: int, specification: dict[str, Any]) -> None:
    kind = specification.get("kind")
    if kind not in REQUIRED:
        expected = ", ".join(REQUIRED)
        raise BatchLineError(
            number, f"unknown kind {kind!r}; expected one of: {expected}"
        )
    allowed = {"kind", *REQUIRED[kind], *OPTIONAL[kind]}
    for name in specification:
        if name not in allowed:
            raise BatchLineError(
                number,
                f"unknown field {name!r} for {kind}; allowed: "
                f"{', '.join(sorted(allowed))}",
            )
    for name in REQUIRED[kind]:
        if name not in specification:
            raise BatchLineError(number, f"{kind} needs the field {name!r}")
    for name, value in specification.items():
        _check_type(number, name, value)


def _check_type(number: int, name: str, value: Any) -> None:
    expected = _TYPES.get(name)
    if expected is None:
        return
    if name == "max_delete" and value is None:
        return
    # bool is a subclass of int, so true must not pass for max_delete.
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise BatchLineError(
            number, f"field {name!r} must be a {expected.__name__}, got {value!r}"
        )
    if name == "service" and value not in _SERVICES:
        raise BatchLineError(
            number, f"service {value!r} is invalid; expected 'source' or 'destination'"
        )


def _resolve(
    number: int, specification: dict[str, Any], batch: Batch
) -> dict[str, Any]:
    """Replace URLs by paths, recording each service's filesystem."""
    resolved = dict(specification)
    kind = specification["kind"]
    if "path" in specification:
        service = specification.get("service", DEFAULT_SERVICE.get(kind, "source"))
        resolved["service"] = service
        resolved["path"] = _path_on(number, service, specification["path"], batch)
        return resolved
    for service in _SERVICES:
        resolved[service] = _path_on(number, service, specification[service], batch)
    return resolved


def _path_on(number: int, service: str, text: str, batch: Batch) -> str:
    try:
        location = parse_location(text)
    except ActionError as error:
        raise BatchLineError(number, error.reason) from None
    known = batch.filesystems.get(service)
    if known is None:
        batch.filesystems[service] = (location.filesystem, number)
    elif known[0] != location.filesystem:
        raise BatchLineError(
            number,
            f"the {service} {text!r} is on {location.filesystem}, but line "
            f"{known[1]} put the {service} on {known[0]}; a queue has one "
            f"{service} filesystem, so put these actions in another queue",
        )
    return location.path
