"""The summary of each queue's last command-line run, for ``journalq status``.

The journal records what each action did, not when a run began or ended,
so the command line keeps the last run's summary itself. It writes one
JSON file per queue, named by the queue's id, under ``runs/`` next to the
named queues (``$JOURNALQ_HOME/runs/``). It is a convenience, not state: it is written
without fsync, a crash may leave the previous run's summary, and a file
that cannot be read is ignored. Runs of the library without the command
line leave it unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from journalq.cli.completion import queues_root
from journalq.errors import JournalqError
from journalq.events import RunSummary
from journalq.store import read_format

__all__ = ["LastRun", "forget_last_run", "load_last_run", "save_last_run"]

logger = logging.getLogger(__name__)


class LastRun(msgspec.Struct, frozen=True):
    """The summary of a queue's last run and the time it ended."""

    #: Seconds since the epoch when the run ended.
    ended: float
    copied: int
    skipped: int
    failed: int
    retried: int
    done: int
    bytes: int
    #: Seconds the run took.
    elapsed: float
    interrupted: bool
    #: Actions still waiting when it ended.
    remaining: int
    #: Deletes among ``done``; 0 in a summary written before it was kept.
    deleted: int = 0

    @property
    def rate(self) -> float:
        """Bytes per second the run copied."""
        return self.bytes / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the run as a JSON-ready dict, its rate included."""
        return {
            **msgspec.structs.asdict(self),
            "rate": round(self.rate, 1),
        }


def _path(directory: Path) -> Path | None:
    header = read_format(directory)
    if header is None:
        return None
    return _path_of(header.queue_id)


def _path_of(queue_id: str) -> Path:
    return Path(queues_root()).parent / "runs" / f"{queue_id}.json"


def forget_last_run(queue_id: str) -> None:
    """Delete the last run of the queue with id ``queue_id``, if it has one."""
    with contextlib.suppress(FileNotFoundError):
        _path_of(queue_id).unlink()


def save_last_run(directory: Path, summary: RunSummary) -> None:
    """Keep ``summary`` as the last run of the queue in ``directory``.

    A failure to write is logged and otherwise ignored: the run itself is
    journaled already.
    """
    run = LastRun(
        ended=time.time(),
        copied=summary.copied,
        skipped=summary.skipped,
        failed=summary.failed,
        retried=summary.retried,
        done=summary.done,
        bytes=summary.bytes,
        elapsed=round(summary.elapsed, 3),
        interrupted=summary.interrupted,
        remaining=summary.remaining,
        deleted=summary.deleted,
    )
    try:
        path = _path(directory)
        if path is None:
            return
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=".run-", suffix=".tmp", delete=False
        ) as temporary:
            temporary.write(msgspec.json.encode(run))
        os.replace(temporary.name, path)
    except (OSError, JournalqError) as error:
        logger.warning("could not record the run's summary for status: %s", error)


def load_last_run(directory: Path) -> LastRun | None:
    """Return the last run of the queue in ``directory``, or None."""
    try:
        path = _path(directory)
        if path is None:
            return None
        return msgspec.json.decode(path.read_bytes(), type=LastRun)
    except (OSError, JournalqError, msgspec.DecodeError) as error:
        logger.debug("no last run for %s: %s", directory, error)
        return None
