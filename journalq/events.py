"""What a run reports while it works and when it ends."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["ActionInfo", "Event", "EventType", "RunSummary"]


class EventType(enum.StrEnum):
    """The kinds of :class:`Event`."""

    STARTED = "started"
    PROGRESS = "progress"
    COMPLETED = "completed"
    SKIPPED = "skipped"
    FAILED = "failed"
    RETRIED = "retried"


@dataclass(frozen=True, slots=True)
class Event:
    """One step of one action during a run.

    ``bytes`` is what the action moved so far (``progress``) or in all
    (``completed``) in this run: a large copy resumed from the parts an
    earlier run journaled leaves those parts out. ``total`` is the file's
    size when known.
    """

    type: EventType
    action_id: str
    kind: str
    source: str | None = None
    destination: str | None = None
    attempt: int = 0
    bytes: int = 0
    total: int | None = None
    method: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Return the event as a JSON-ready dict."""
        return {
            "event": str(self.type),
            "id": self.action_id,
            "kind": self.kind,
            "source": self.source,
            "destination": self.destination,
            "attempt": self.attempt,
            "bytes": self.bytes,
            "total": self.total,
            "method": self.method,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class ActionInfo:
    """One action of a queue as :meth:`StorageQueue.get_actions` reports it."""

    id: str
    kind: str
    status: str
    source: str | None
    destination: str | None
    service: str | None
    attempts: int
    bytes: int
    outcome: str | None
    method: str | None
    #: The error of a failed action, or the last failed attempt's error of
    #: an action that waits or runs again. None once it completed or was
    #: canceled.
    error: str | None
    parent: str | None
    #: The error of the action's last failed attempt, whatever its status:
    #: a completed action keeps the one it recovered from.
    last_error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "source": self.source,
            "destination": self.destination,
            "service": self.service,
            "attempts": self.attempts,
            "bytes": self.bytes,
            "outcome": self.outcome,
            "method": self.method,
            "error": self.error,
            "parent": self.parent,
            "last_error": self.last_error,
        }


@dataclass(slots=True)
class RunSummary:
    """The counts and totals of one run.

    ``done`` counts the mkdir, delete and list actions that completed, and
    ``deleted`` the deletes among them: a sync's deletions and ``delete``
    actions. ``identical_when_listed`` counts the files among ``skipped``
    that were found identical when their tree was listed, so they had no
    action of their own. ``remaining`` counts the actions still waiting,
    not a tree that waits only for its items. ``resumed_bytes`` are the
    bytes of the large copies completed in this run that earlier runs had
    sent as journaled parts; ``bytes`` leaves them out.
    """

    copied: int = 0
    skipped: int = 0
    failed: int = 0
    done: int = 0
    retried: int = 0
    bytes: int = 0
    elapsed: float = 0.0
    interrupted: bool = False
    remaining: int = 0
    failures: list[ActionInfo] = field(default_factory=list)
    deleted: int = 0
    identical_when_listed: int = 0
    resumed_bytes: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing failed and nothing is left to do."""
        return self.failed == 0 and self.remaining == 0 and not self.interrupted

    def to_dict(self) -> dict[str, object]:
        return {
            "event": "summary",
            "copied": self.copied,
            "skipped": self.skipped,
            "failed": self.failed,
            "done": self.done,
            "deleted": self.deleted,
            "identical_when_listed": self.identical_when_listed,
            "retried": self.retried,
            "bytes": self.bytes,
            "resumed_bytes": self.resumed_bytes,
            "elapsed": round(self.elapsed, 3),
            "interrupted": self.interrupted,
            "remaining": self.remaining,
        }
