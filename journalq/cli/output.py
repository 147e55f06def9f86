"""What the ``journalq`` command prints: event lines, summaries and tables.

Plain output goes to the terminal for people: one line per finished file at
``-v``, failures always, and a one-line summary on stderr at the end of a
run. ``--json`` prints one JSON object per line on stdout instead, built from
the library's own ``to_dict()`` forms, so scripts read exactly what the
library reports.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import click
import msgspec

from journalq.events import ActionInfo, Event, EventType, RunSummary

__all__ = [
    "EventPrinter",
    "action_rows",
    "format_bytes",
    "format_summary",
    "print_json",
    "resume_command",
    "status_lines",
]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_json_encoder = msgspec.json.Encoder()


def format_bytes(count: float) -> str:
    """Format a byte count with a binary unit: ``"1.5 MiB"``."""
    value = float(count)
    for unit in _UNITS[:-1]:
        if abs(value) < 1024:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"


def print_json(value: Mapping[str, Any]) -> None:
    """Print ``value`` as one line of JSON on stdout."""
    click.echo(_json_encoder.encode(value).decode())


def resume_command(queue_dir: str) -> str:
    """Return the command that resumes the queue in ``queue_dir``."""
    return shlex.join(["journalq", "run", "--queue", queue_dir])


def format_summary(summary: RunSummary, *, dry_run: bool = False) -> str:
    """Return the one-line summary of a run."""
    rate = summary.bytes / summary.elapsed if summary.elapsed > 0 else 0.0
    verb = "would copy" if dry_run else "copied"
    parts = [
        f"{verb} {summary.copied}",
        f"skipped {summary.skipped}",
        f"failed {summary.failed}",
    ]
    if summary.done:
        parts.append(f"other actions {summary.done}")
    text = ", ".join(parts)
    text += f"; {format_bytes(summary.bytes)} in {summary.elapsed:.1f} s"
    text += f" ({format_bytes(rate)}/s)"
    if summary.interrupted:
        text += "; interrupted"
    if summary.remaining:
        text += f"; {summary.remaining} actions left"
    return text


class EventPrinter:
    """Print the events of a run as they arrive (from any worker thread).

    ``verbosity`` 0 prints nothing (the library logs each failure as a
    warning), 1 prints failures, finished files and retries, 2 adds starts.
    ``as_json`` prints every event, progress included.
    """

    def __init__(self, *, as_json: bool, verbosity: int, dry_run: bool) -> None:
        self.as_json = as_json
        self.verbosity = verbosity
        self.dry_run = dry_run
        self._lock = threading.Lock()

    @property
    def event_types(self) -> frozenset[EventType]:
        """The event types this printer shows; the run builds only those."""
        if self.as_json:
            return frozenset(EventType)
        # At the default verbosity the library's warning already names each
        # failure, so printing it here too would show it twice.
        wanted: set[EventType] = set()
        if self.verbosity >= 1:
            wanted |= {
                EventType.FAILED,
                EventType.COMPLETED,
                EventType.SKIPPED,
                EventType.RETRIED,
            }
        if self.verbosity >= 2:
            wanted.add(EventType.STARTED)
        return frozenset(wanted)

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self.as_json:
                print_json(event.to_dict())
                return
            line = self._describe(event)
            if line is not None:
                click.echo(line, err=event.type is EventType.FAILED)

    def _describe(self, event: Event) -> str | None:
        target = _arrow(event.source, event.destination)
        match event.type:
            case EventType.FAILED:
                return f"failed: {event.kind} {target}: {event.error}"
            case EventType.COMPLETED if self.verbosity >= 1:
                verb = "would copy" if self.dry_run else "copied"
                if event.kind != "copy_file":
                    verb = (
                        f"would {event.kind}" if self.dry_run else f"{event.kind} done:"
                    )
                return f"{verb} {target} ({format_bytes(event.bytes)})"
            case EventType.SKIPPED if self.verbosity >= 1:
                return f"skipped {target} (identical by {event.method})"
            case EventType.RETRIED if self.verbosity >= 1:
                return f"retrying {event.kind} {target} ({event.error})"
            case EventType.STARTED if self.verbosity >= 2:
                return f"started {event.kind} {target} (attempt {event.attempt})"
        return None


def _arrow(source: str | None, destination: str | None) -> str:
    if source and destination:
        return f"{source} -> {destination}"
    return source or destination or ""


def status_lines(counts: Mapping[str, int]) -> list[str]:
    """Return ``status`` as aligned ``name: value`` lines."""
    width = max(len(name) for name in counts)
    lines = []
    for name, value in counts.items():
        shown = format_bytes(value) if name == "bytes" else str(value)
        lines.append(f"{name + ':':<{width + 1}} {shown}")
    return lines


def action_rows(actions: Iterable[ActionInfo]) -> list[str]:
    """Return one line per action: id, status, kind, paths, error."""
    rows = []
    for action in actions:
        line = f"{action.id}  {action.status:<10} {action.kind:<9} "
        line += _arrow(action.source, action.destination)
        if action.service and not action.destination:
            line += f" ({action.service})"
        if action.error:
            line += f"  error: {action.error}"
        rows.append(line.rstrip())
    return rows
