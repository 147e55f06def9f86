"""Progress of a run for people: files, bytes, rate, ETA and files in flight.

:class:`RunProgress` is an ``on_event`` callback for :meth:`StorageQueue.run
<journalq.StorageQueue.run>` that folds the run's events into totals, which
:meth:`RunProgress.view` returns as one consistent :class:`ProgressView`.
Two consumers draw a view:

* :class:`ProgressDisplay` redraws it with rich a few times a second on a
  terminal or in a notebook;
* :func:`log_progress` writes it as one line at info level every so often,
  for logs and cron jobs.

Example::

    from journalq import StorageQueue
    from journalq.progress import ProgressDisplay, RunProgress

    with StorageQueue("/data", "/backup", name="nightly") as queue:
        queue.sync("/data", "/backup")
        progress = RunProgress.for_queue(queue)
        with ProgressDisplay(progress):
            queue.run(on_event=progress, event_types=progress.event_types)

The totals are known before the run starts, from the actions that wait.
Actions another process hands to the run while it works raise the totals
when they start. Files that a tree listing found identical never become
actions, so they count in the run's :class:`~journalq.RunSummary` but not
here.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from journalq.events import Event, EventType
from journalq.records import Kind

if TYPE_CHECKING:
    from fsspec.callbacks import Callback
    from rich.console import Console, RenderableType

    from journalq.queue import StorageQueue

__all__ = [
    "CallbackProgress",
    "ProgressDisplay",
    "ProgressView",
    "RunProgress",
    "Transfer",
    "format_bytes",
    "format_duration",
    "log_progress",
]

logger = logging.getLogger(__name__)

#: Seconds of recent history the rate is measured over. rich's own progress
#: bars use 30 s (``speed_estimate_period`` in rich 15). A shorter window
#: follows a run that speeds up or slows down sooner, but the ETA moves
#: more with each large file.
RATE_WINDOW: Final = 10.0
#: Minimum seconds between two rate samples, so a view taken on every
#: event keeps the sample deque short.
SAMPLE_SPACING: Final = 0.25
#: Files in flight that a display lists by name; the rest are counted.
SHOWN_IN_FLIGHT: Final = 5

_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_TREES: Final = frozenset({Kind.COPY_TREE, Kind.SYNC})
#: Actions whose one call adds or removes a directory entry.
_ENTRY_KINDS: Final = frozenset({Kind.MKDIR, Kind.DELETE})


def format_bytes(count: float) -> str:
    """Format a byte count with a binary unit, such as ``"1.5 MiB"``.

    Parameters
    ----------
    count:
        Number of bytes; fractions are allowed for rates.

    Returns
    -------
    str
        Whole bytes below 1 KiB, otherwise one decimal and the unit.
    """
    value = float(count)
    for unit in _UNITS[:-1]:
        if abs(value) < 1024:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"


def format_duration(seconds: float) -> str:
    """Format seconds as ``H:MM:SS``, the way rsync and rich show times."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@dataclass(frozen=True, slots=True)
class Transfer:
    """One action in flight: its path and the bytes it moved so far."""

    action_id: str
    kind: str
    path: str
    bytes: int
    total: int | None

    @property
    def written(self) -> bool:
        """True when the work is done and only the commit remains.

        A copy is written once all its bytes are. A mkdir or delete takes
        one call, after which a local one waits for its group's filesystem
        sync, so it counts as written from its start.
        """
        if self.kind in _ENTRY_KINDS:
            return True
        return self.total is not None and self.bytes >= self.total > 0


@dataclass(frozen=True, slots=True)
class ProgressView:
    """The state of a run at one moment, as :meth:`RunProgress.view` returns it.

    Attributes
    ----------
    files_done, files_total:
        File copies ended in this run (copied, skipped or failed) and the
        copies the run has to end. mkdir, delete and list actions count in
        ``other`` instead.
    bytes_done, bytes_total:
        Bytes copied so far, including those of copies in flight, and the
        bytes the run copies in all. A skipped or failed file leaves the
        total, so the total shrinks as the run learns what it need not copy.
    copied, skipped, failed, retried, other:
        Files copied, files found identical, actions that failed for good,
        attempts retried after a transient error, and mkdir, delete and list
        actions completed.
    elapsed:
        Seconds since the run started.
    rate:
        Bytes per second over the last :data:`RATE_WINDOW` seconds.
    eta:
        Estimated seconds until the run ends, or None while unknown.
    in_flight:
        The actions started and not yet ended: those part way through
        first, then the most recently started, then those whose bytes are
        all written and wait to be committed.
    done_earlier, earlier_total:
        Items of the trees being resumed (files, mkdir and delete actions)
        that earlier runs already ended, and the items those trees have.
        Both are 0 for a new transfer.
    stopping:
        True once a stop was requested: no new action starts.
    bytes_earlier:
        Bytes of the large copies in this run that earlier runs sent as
        journaled parts; ``bytes_total`` leaves them out.
    """

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    copied: int
    skipped: int
    failed: int
    retried: int
    other: int
    elapsed: float
    rate: float
    eta: float | None
    in_flight: tuple[Transfer, ...]
    done_earlier: int
    earlier_total: int
    stopping: bool
    bytes_earlier: int = 0

    @property
    def resumed(self) -> bool:
        """True when earlier runs already ended part of this transfer."""
        return self.done_earlier > 0 or self.bytes_earlier > 0

    @property
    def syncing(self) -> int:
        """Actions in flight whose work is done, waiting for a sync.

        A local copy waits for its group's filesystem sync before it ends,
        so hundreds of small files can be in this state at once.
        """
        return sum(1 for transfer in self.in_flight if transfer.written)

    @property
    def moving(self) -> int:
        """Actions in flight that are still working: all but :attr:`syncing`."""
        return len(self.in_flight) - self.syncing

    def counts(self) -> str:
        """Return the counts of the run, as the display and the log show them."""
        text = (
            f"copied {self.copied}  skipped {self.skipped}  failed {self.failed}  "
            f"retried {self.retried}  in flight {self.moving}"
        )
        syncing = self.syncing
        if syncing:
            text += f"  syncing {syncing}"
        return text

    def line(self) -> str:
        """Return the view as one line of text, for logs."""
        percent = _percent(self.files_done, self.files_total)
        parts = [
            f"files {self.files_done}/{self.files_total} ({percent:.0f}%)",
            f"{format_bytes(self.bytes_done)} of {format_bytes(self.bytes_total)}",
            f"{format_bytes(self.rate)}/s",
            f"ETA {format_duration(self.eta) if self.eta is not None else '-'}",
        ]
        return ", ".join(parts) + "; " + self.counts().replace("  ", ", ")


def _journaled_part_bytes(action: object) -> int:
    """Return the bytes of the parts journaled for a large copy that waits."""
    # Only an ActionState has parts; a compacted action has ended.
    parts = getattr(action, "parts", None)
    if parts is None:
        return 0
    return sum(part.size for part in parts.written.values())


def _percent(done: int, total: int) -> float:
    return 100.0 * done / total if total else 100.0


class RunProgress:
    """Totals of one run, built from its events; an ``on_event`` callback.

    Events arrive from the run's worker threads; :meth:`view` may be called
    from any thread at the same time.

    Parameters
    ----------
    files:
        File copies the run is expected to end.
    bytes:
        Bytes those actions are expected to copy.
    done_earlier, earlier_total:
        See :class:`ProgressView`.
    resumed:
        Per action id, the bytes of a large copy that an earlier run sent
        as journaled parts. ``bytes`` leaves them out, and so does the
        ``completed`` event of that copy.
    unsized:
        Per action id, the same for the copies among ``files`` whose size
        was not known when they were added. The first event that gives a
        copy's size adds it to the bytes expected.
    clock:
        Source of monotonic seconds; tests pass their own.
    """

    #: The event types a RunProgress reads; pass them as the run's
    #: ``event_types`` together with those of any other callback.
    event_types: Final = frozenset(
        {
            EventType.STARTED,
            EventType.PROGRESS,
            EventType.COMPLETED,
            EventType.SKIPPED,
            EventType.FAILED,
            EventType.RETRIED,
        }
    )

    def __init__(
        self,
        files: int = 0,
        bytes: int = 0,
        *,
        done_earlier: int = 0,
        earlier_total: int = 0,
        resumed: dict[str, int] | None = None,
        unsized: dict[str, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._resumed = dict(resumed or {})
        self._unsized = dict(unsized or {})
        self._bytes_earlier = sum(self._resumed.values())
        self._clock = clock
        self._started = clock()
        self._files_total = files
        self._bytes_total = bytes
        self._done_earlier = done_earlier
        self._earlier_total = earlier_total
        self._counts = collections.Counter[str]()
        self._bytes_ended = 0
        self._in_flight: dict[str, list[Any]] = {}
        #: Copies among the actions in flight.
        self._files_moving = 0
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._stopping = False

    @classmethod
    def for_queue(cls, queue: StorageQueue) -> RunProgress:
        """Return a RunProgress with the totals of what waits in ``queue``.

        Reads every action once. Packed (compacted) actions have ended, so
        they are passed over without being unpacked. The parts of a large
        copy that an earlier run journaled are not counted in the bytes.
        """
        files = 0
        size = 0
        resumed: dict[str, int] = {}
        unsized: dict[str, int] = {}
        pending_children: collections.Counter[str] = collections.Counter()
        trees = []
        for action in queue.state.actions.values():
            if action.terminal:
                continue
            added = action.added
            if added.kind in _TREES:
                trees.append(action)
                continue
            if added.kind is Kind.COPY_FILE:
                files += 1
                size += added.size or 0
                sent = _journaled_part_bytes(action)
                if added.size is None:
                    # Counted once its copy reports the size.
                    unsized[action.action_id] = sent
                elif sent:
                    resumed[action.action_id] = sent
                    size -= sent
            if added.parent is not None:
                pending_children[added.parent] += 1
        earlier_total = 0
        done_earlier = 0
        for tree in trees:
            if tree.children is None:
                continue
            earlier_total += tree.children
            done_earlier += tree.children - pending_children[tree.action_id]
        return cls(
            files,
            size,
            done_earlier=done_earlier,
            earlier_total=earlier_total,
            resumed=resumed,
            unsized=unsized,
        )

    def mark_stopping(self) -> None:
        """Note that the run was asked to stop (safe in a signal handler)."""
        self._stopping = True

    def __call__(self, event: Event) -> None:
        """Fold one event of the run into the totals."""
        with self._lock:
            match event.type:
                case EventType.STARTED:
                    self._start(event)
                case EventType.PROGRESS:
                    self._advance(event)
                case EventType.RETRIED:
                    self._counts["retried"] += 1
                    self._leave(event)
                case _:
                    self._end(event)

    def _start(self, event: Event) -> None:
        path = event.source or event.destination or ""
        new = event.action_id not in self._in_flight
        if new and event.kind == Kind.COPY_FILE:
            self._files_moving += 1
            self._grow_totals(event)
        self._in_flight[event.action_id] = [event.kind, path, 0, event.total]

    def _advance(self, event: Event) -> None:
        if event.action_id not in self._in_flight:
            self._start(event)
        entry = self._in_flight[event.action_id]
        entry[2] = event.bytes
        if entry[3] is None and event.total is not None:
            entry[3] = event.total
            self._learn_size(event.action_id, event.total)

    def _learn_size(self, action_id: str, size: int) -> None:
        """Add a copy's size to the bytes expected, once it is known."""
        sent = self._unsized.pop(action_id, None)
        if sent is None:
            return
        self._bytes_total += size - sent
        if sent:
            self._resumed[action_id] = sent
            self._bytes_earlier += sent

    def _leave(self, event: Event) -> bool:
        """Take an action out of the ones in flight; return whether it was."""
        if self._in_flight.pop(event.action_id, None) is None:
            return False
        if event.kind == Kind.COPY_FILE:
            self._files_moving -= 1
        return True

    def _end(self, event: Event) -> None:
        is_file = event.kind == Kind.COPY_FILE
        entry = self._in_flight.get(event.action_id)
        learned = entry[3] if entry is not None else None
        if not self._leave(event) and is_file:
            self._grow_totals(event)
        # What the totals expected this file to move: nothing for a file
        # whose size they never learned.
        expected = event.total if event.total is not None else learned
        if event.action_id in self._unsized:
            expected = 0
            del self._unsized[event.action_id]
        total = (expected or 0) - self._resumed.pop(event.action_id, 0)
        counts = self._counts
        if is_file:
            counts["files_done"] += 1
        match event.type:
            case EventType.SKIPPED:
                counts["skipped"] += 1
                self._bytes_total -= total
            case EventType.FAILED:
                counts["failed"] += 1
                self._bytes_total -= total
            case _ if is_file:
                counts["copied"] += 1
                self._bytes_ended += event.bytes
                # A file that changed size since it was listed moves the total.
                self._bytes_total += event.bytes - total
            case _:
                counts["other"] += 1

    def _grow_totals(self, event: Event) -> None:
        """Count a file the totals did not include (handed off mid-run)."""
        if self._counts["files_done"] + self._files_moving > self._files_total:
            self._files_total += 1
            self._bytes_total += event.total or 0

    def view(self) -> ProgressView:
        """Return the totals as they are now."""
        with self._lock:
            now = self._clock()
            in_flight = _busiest_first(self._in_flight, self._resumed)
            moving = sum(transfer.bytes for transfer in in_flight)
            bytes_done = self._bytes_ended + moving
            rate = self._rate(now, bytes_done)
            counts = self._counts
            files_done = counts["files_done"]
            view = ProgressView(
                files_done=files_done,
                files_total=max(self._files_total, files_done + self._files_moving),
                bytes_done=bytes_done,
                bytes_total=max(self._bytes_total, bytes_done),
                copied=counts["copied"],
                skipped=counts["skipped"],
                failed=counts["failed"],
                retried=counts["retried"],
                other=counts["other"],
                elapsed=now - self._started,
                rate=rate,
                eta=None,
                in_flight=in_flight,
                done_earlier=self._done_earlier,
                earlier_total=self._earlier_total,
                stopping=self._stopping,
                bytes_earlier=self._bytes_earlier,
            )
        return _with_eta(view)

    def _rate(self, now: float, bytes_done: int) -> float:
        samples = self._samples
        if not samples or now - samples[-1][0] >= SAMPLE_SPACING:
            samples.append((now, bytes_done))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        first_time, first_bytes = samples[0]
        if now - first_time < SAMPLE_SPACING:
            # Too early for a window: the average since the start.
            elapsed = now - self._started
            return bytes_done / elapsed if elapsed > 0 else 0.0
        return max(0.0, (bytes_done - first_bytes) / (now - first_time))

    def byte_totals(self) -> tuple[int, int]:
        """Return the bytes done and the bytes expected, as :meth:`view` has them.

        Cheaper than a view: it sorts nothing and reads no clock.
        """
        with self._lock:
            moving = sum(entry[2] for entry in self._in_flight.values())
            done = self._bytes_ended + moving
            return done, max(self._bytes_total, done)

    def line(self) -> str:
        """Return the current totals as one line of text, for logs."""
        return self.view().line()


class CallbackProgress:
    """Feeds a run's events to an fsspec ``Callback``; an ``on_event`` callback.

    :meth:`StorageQueue.run(callback=...) <journalq.StorageQueue.run>`
    makes one. The callback gets the run's byte totals as
    :class:`RunProgress` counts them: ``set_size`` with the bytes of the
    files to copy, again whenever that changes, and
    ``relative_update`` with the bytes copied since the last call. The
    bytes of an attempt that is retried are copied again, so the value
    goes back by them, and ``relative_update`` gets a negative count.
    The total changes when a file is skipped or fails (it leaves the
    total), when a file's size changed since it was listed, and when a
    file added by ``copy_file``, whose size the queue learns only by
    copying it, ends.

    Each file copy also gets ``callback.branched(source, destination)``,
    the fsspec hook that ``get`` and ``put`` call per file. The child
    callback it returns gets ``set_size`` with the file's size,
    ``relative_update`` with the bytes of each chunk, and ``close`` when
    the attempt ends. fsspec's ``Callback`` returns a no-op child, so only
    a callback that overrides ``branched`` receives files. Events arrive from
    the run's worker threads, and the calls on the callback and on its
    children are serialized.
    """

    event_types: Final = RunProgress.event_types

    def __init__(self, callback: Callback, progress: RunProgress) -> None:
        self._callback = callback
        self._progress = progress
        self._lock = threading.Lock()
        done, self._size = progress.byte_totals()
        self._done = 0
        #: Per file in flight: its child callback and the bytes it got.
        self._files: dict[str, tuple[Callback, int]] = {}
        callback.set_size(self._size)
        if done:
            callback.relative_update(done)
            self._done = done

    @classmethod
    def for_queue(cls, callback: Callback, queue: StorageQueue) -> CallbackProgress:
        """Return a feeder whose totals are those of what waits in ``queue``."""
        return cls(callback, RunProgress.for_queue(queue))

    def __call__(self, event: Event) -> None:
        """Fold one event into the totals and report what changed."""
        self._progress(event)
        done, size = self._progress.byte_totals()
        with self._lock:
            if event.kind == Kind.COPY_FILE:
                self._report_file(event)
            if size != self._size:
                self._size = size
                self._callback.set_size(size)
            if done != self._done:
                self._callback.relative_update(done - self._done)
                self._done = done

    def _report_file(self, event: Event) -> None:
        entry = self._files.pop(event.action_id, None)
        if entry is not None and event.type is EventType.STARTED:
            # A new attempt: the last one ended without an event of its own.
            entry[0].close()
            entry = None
        if entry is None:
            if event.type not in _TRANSFERRING:
                return
            child = self._callback.branched(event.source, event.destination)
            if event.total is not None:
                child.set_size(event.total)
            entry = (child, 0)
        child, sent = entry
        if event.bytes > sent:
            child.relative_update(event.bytes - sent)
            sent = event.bytes
        if event.type in _MOVING:
            self._files[event.action_id] = (child, sent)
        else:
            child.close()


#: Events of a file copy that has begun; the others end an attempt.
_MOVING: Final = frozenset({EventType.STARTED, EventType.PROGRESS})
#: Events after which a file's child callback exists.
_TRANSFERRING: Final = _MOVING | {EventType.COMPLETED}


def _busiest_first(
    in_flight: dict[str, list[Any]], resumed: dict[str, int]
) -> tuple[Transfer, ...]:
    """Return the actions in flight, the ones a reader wants to see first.

    First those part way through their bytes, then those just started
    (newest first), then those whose bytes are all written. A local copy
    that has written its bytes waits for its group's filesystem sync before
    it is journaled as completed, so those are mostly done already. A large
    copy's total leaves out the ``resumed`` bytes that earlier runs sent,
    as its moved bytes do.
    """
    transfers = [
        Transfer(
            action_id,
            kind,
            path,
            moved,
            None if total is None else total - resumed.get(action_id, 0),
        )
        for action_id, (kind, path, moved, total) in in_flight.items()
    ]
    transfers.reverse()
    transfers.sort(key=_interest)
    return tuple(transfers)


def _interest(transfer: Transfer) -> int:
    if transfer.written:
        return 2
    return 0 if transfer.bytes else 1


def _with_eta(view: ProgressView) -> ProgressView:
    """Fill in the ETA: by bytes while any remain, else by files."""
    remaining_bytes = view.bytes_total - view.bytes_done
    remaining_files = view.files_total - view.files_done
    eta: float | None = None
    if remaining_files <= 0:
        eta = 0.0
    elif remaining_bytes > 0 and view.rate > 0:
        eta = remaining_bytes / view.rate
    elif view.files_done and view.elapsed > 0:
        eta = remaining_files * view.elapsed / view.files_done
    return dataclasses.replace(view, eta=eta)


@contextlib.contextmanager
def log_progress(
    progress: RunProgress,
    interval: float,
    log: logging.Logger = logger,
) -> Iterator[None]:
    """Log ``progress`` as one line at info level every ``interval`` seconds.

    Parameters
    ----------
    progress:
        The totals to log; the caller passes it to the run as ``on_event``.
    interval:
        Seconds between two lines. 0 or less logs nothing.
    log:
        The logger to write to. Nothing is written while it does not accept
        info records.
    """
    if interval <= 0 or not log.isEnabledFor(logging.INFO):
        yield
        return
    done = threading.Event()

    def write_lines() -> None:
        while not done.wait(interval):
            log.info("progress: %s", progress.line())

    thread = threading.Thread(target=write_lines, name="journalq-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class ProgressDisplay:
    """Draw a :class:`RunProgress` with rich while the block runs.

    The display shows the files and bytes done with bars, the rate, the
    ETA, the counts of copied, skipped, failed and retried files, the files
    in flight and, when the run resumes a transfer, how much earlier runs
    did. It stays on screen when the block ends, as rclone's and pip's do.
    Lines other code prints meanwhile (logging, ``print``) appear above it.

    Parameters
    ----------
    progress:
        The totals to draw.
    console:
        The rich console to draw on; default: a new one on stderr.
    refresh_per_second:
        How often the display is redrawn.
    """

    def __init__(
        self,
        progress: RunProgress,
        console: Console | None = None,
        *,
        refresh_per_second: float = 4,
    ) -> None:
        from rich.console import Console
        from rich.live import Live

        self.progress = progress
        self.console = console or Console(stderr=True)
        self._live = Live(
            console=self.console,
            refresh_per_second=refresh_per_second,
            get_renderable=self._render,
            transient=False,
        )

    def __enter__(self) -> ProgressDisplay:
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.stop()
        # rich 15 ends the last render with a newline only on a terminal, so
        # a display drawn into a file or pipe would run into the next line.
        if not self.console.is_terminal and not self.console.is_jupyter:
            self.console.line()

    def _render(self) -> RenderableType:
        return render_view(self.progress.view(), self.console.width)


def render_view(view: ProgressView, width: int = 80) -> RenderableType:
    """Build the rich renderable of ``view`` for a console ``width`` wide."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    bar_width = max(10, min(40, width - 36))
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold")
    grid.add_column(width=bar_width)
    grid.add_column(no_wrap=True)
    grid.add_row(
        "Files",
        ProgressBar(total=view.files_total or 1, completed=view.files_done),
        f"{view.files_done}/{view.files_total} "
        f"({_percent(view.files_done, view.files_total):.0f}%)",
    )
    grid.add_row(
        "Bytes",
        ProgressBar(total=view.bytes_total or 1, completed=view.bytes_done),
        f"{format_bytes(view.bytes_done)}/{format_bytes(view.bytes_total)}",
    )
    eta = format_duration(view.eta) if view.eta is not None else "-"
    rate = Text(
        f"{format_bytes(view.rate)}/s  ETA {eta}  "
        f"elapsed {format_duration(view.elapsed)}"
    )
    parts: list[RenderableType] = []
    if view.resumed:
        parts.append(Text(_resumed_line(view), style="cyan"))
    parts.append(grid)
    parts.append(Text.assemble(("Rate  ", "bold"), rate))
    parts.append(Text(view.counts(), style="red" if view.failed else ""))
    parts.extend(_in_flight_lines(view, width))
    if view.stopping:
        parts.append(
            Text(
                "Stopping: waiting for the actions in flight; Ctrl-C again "
                "exits at once",
                style="yellow",
            )
        )
    return Group(*parts)


def _resumed_line(view: ProgressView) -> str:
    """Say what earlier runs did of the transfers this run resumes."""
    sent = f"{format_bytes(view.bytes_earlier)} of large files"
    if not view.done_earlier:
        return f"Resumed: {sent} were sent by earlier runs"
    line = (
        f"Resumed: {view.done_earlier} of {view.earlier_total} items were done "
        "by earlier runs"
    )
    return f"{line}, and {sent} sent" if view.bytes_earlier else line


def _in_flight_lines(view: ProgressView, width: int) -> list[RenderableType]:
    from rich.text import Text

    lines: list[RenderableType] = []
    for transfer in view.in_flight[:SHOWN_IN_FLIGHT]:
        if transfer.kind != Kind.COPY_FILE:
            # A mkdir, delete or list moves no bytes of its own.
            amount = str(transfer.kind)
        else:
            amount = format_bytes(transfer.bytes)
            if transfer.total:
                amount += f"/{format_bytes(transfer.total)}"
        if transfer.written:
            amount += ", syncing"
        room = max(10, width - len(amount) - 6)
        path = transfer.path
        if len(path) > room:
            path = "..." + path[-(room - 3) :]
        lines.append(Text(f"  > {path}  {amount}", style="dim"))
    hidden = len(view.in_flight) - SHOWN_IN_FLIGHT
    if hidden > 0:
        # "more", not "more in flight": most of them are often syncing.
        lines.append(Text(f"  and {hidden} more", style="dim"))
    return lines
