"""journalq.progress: totals, rate, ETA and the rich display of a run."""

from __future__ import annotations

import io
import logging
import threading
import time
from pathlib import Path

import fsspec
import pytest
from cli_helpers import SAMPLE, write_tree
from rich.console import Console

from journalq import RunSummary, StorageQueue
from journalq.cli.output import format_summary
from journalq.events import Event, EventType
from journalq.progress import (
    ProgressDisplay,
    RunProgress,
    format_bytes,
    format_duration,
    log_progress,
    render_view,
)


class Clock:
    """Seconds that advance only when the test moves them."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _event(kind: EventType, action_id: str, **fields: object) -> Event:
    return Event(kind, action_id, str(fields.pop("action_kind", "copy_file")), **fields)  # type: ignore[arg-type]


def test_format_bytes_and_duration() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(5 * 1024**3) == "5.0 GiB"
    assert format_duration(0) == "0:00:00"
    assert format_duration(61.4) == "0:01:01"
    assert format_duration(3 * 3600 + 5) == "3:00:05"


def test_counts_follow_events() -> None:
    clock = Clock()
    progress = RunProgress(3, 3000, clock=clock)

    progress(_event(EventType.STARTED, "a", source="/s/a", total=1000))
    progress(_event(EventType.PROGRESS, "a", bytes=400, total=1000))
    during = progress.view()
    progress(_event(EventType.COMPLETED, "a", bytes=1000, total=1000))
    progress(_event(EventType.SKIPPED, "b", total=1000, method="xxh128"))
    progress(_event(EventType.STARTED, "c", source="/s/c", total=1000))
    progress(_event(EventType.FAILED, "c", total=1000, error="gone"))
    after = progress.view()

    assert during.bytes_done == 400
    assert [transfer.path for transfer in during.in_flight] == ["/s/a"]
    assert after.files_done == 3
    assert after.files_total == 3
    assert after.copied == 1
    assert after.skipped == 1
    assert after.failed == 1
    assert after.bytes_done == 1000
    # A skipped or failed file leaves the bytes still to copy.
    assert after.bytes_total == 1000
    assert after.in_flight == ()
    assert after.eta == 0.0


def test_retry_restarts_transfer() -> None:
    progress = RunProgress(1, 100, clock=Clock())

    progress(_event(EventType.STARTED, "a", source="/a", total=100, attempt=1))
    progress(_event(EventType.PROGRESS, "a", bytes=60, total=100))
    progress(_event(EventType.RETRIED, "a", total=100, error="reset"))
    between = progress.view()
    progress(_event(EventType.STARTED, "a", source="/a", total=100, attempt=2))
    progress(_event(EventType.COMPLETED, "a", bytes=100, total=100))
    after = progress.view()

    assert between.retried == 1
    assert between.bytes_done == 0
    assert between.in_flight == ()
    assert after.files_done == 1
    assert after.files_total == 1
    assert after.bytes_done == 100


def test_handed_off_action_grows_totals() -> None:
    progress = RunProgress(1, 10, clock=Clock())

    progress(_event(EventType.STARTED, "a", total=10))
    progress(_event(EventType.COMPLETED, "a", bytes=10, total=10))
    progress(_event(EventType.STARTED, "late", total=50))
    view = progress.view()

    assert view.files_total == 2
    assert view.bytes_total == 60


def test_other_actions_not_counted_as_files() -> None:
    progress = RunProgress(1, 10, clock=Clock())

    progress(_event(EventType.STARTED, "m", action_kind="mkdir", destination="/d"))
    progress(_event(EventType.COMPLETED, "m", action_kind="mkdir", method="mkdir"))
    view = progress.view()

    assert view.other == 1
    assert view.files_done == 0
    assert view.files_total == 1


def test_resumed_parts_leave_the_totals() -> None:
    """A large copy whose first 32 bytes an earlier run sent as parts."""
    progress = RunProgress(2, 40 + 500, resumed={"big": 32}, clock=Clock())

    progress(_event(EventType.STARTED, "big", total=72))
    progress(_event(EventType.PROGRESS, "big", bytes=16, total=72))
    during = progress.view()
    progress(_event(EventType.COMPLETED, "big", bytes=40, total=72))
    progress(_event(EventType.SKIPPED, "small", total=500, method="size"))
    after = progress.view()

    assert during.bytes_done == 16
    assert during.bytes_total == 540
    assert after.bytes_done == 40
    assert after.bytes_total == 40


def test_size_learned_from_progress_counts() -> None:
    """A file added without its size, as ``journalq copy FILE`` adds one.

    Its copy reports the size with its first progress event, and an
    earlier run sent 32 bytes of it as journaled parts.
    """
    progress = RunProgress(1, 0, unsized={"big": 32}, clock=Clock())

    progress(_event(EventType.STARTED, "big"))
    progress(_event(EventType.PROGRESS, "big", bytes=16, total=72))
    during = progress.view()
    progress(_event(EventType.COMPLETED, "big", bytes=40))
    after = progress.view()

    assert during.bytes_done == 16
    assert during.bytes_total == 40
    # The file's own line counts this run's bytes too.
    assert [(t.bytes, t.total) for t in during.in_flight] == [(16, 40)]
    assert after.bytes_done == 40
    assert after.bytes_total == 40


def test_resumed_line_names_bytes_of_large_files() -> None:
    progress = RunProgress(1, 0, unsized={"big": 5 * 1024**2}, clock=Clock())
    progress(_event(EventType.STARTED, "big"))
    progress(_event(EventType.PROGRESS, "big", bytes=1, total=8 * 1024**2))
    view = progress.view()

    assert view.bytes_earlier == 5 * 1024**2
    assert view.resumed
    console = Console(width=100, file=io.StringIO(), force_terminal=False)
    console.print(render_view(view, 100))
    text = console.file.getvalue()  # type: ignore[attr-defined]

    assert "Resumed: 5.0 MiB of large files were sent by earlier runs" in text
    assert "1 B/3.0 MiB" in text


def test_rate_uses_recent_window() -> None:
    clock = Clock()
    progress = RunProgress(2, 2_000_000, clock=clock)
    progress(_event(EventType.STARTED, "a", total=1_000_000))

    progress.view()
    for step in range(1, 11):
        clock.now += 1
        progress(_event(EventType.PROGRESS, "a", bytes=step * 100_000))
        view = progress.view()

    assert view.rate == pytest.approx(100_000)
    assert view.eta == pytest.approx(10)
    assert view.elapsed == pytest.approx(10)


def test_in_flight_order_puts_moving_first() -> None:
    progress = RunProgress(3, 300, clock=Clock())
    for name in ("written", "moving", "new"):
        progress(_event(EventType.STARTED, name, source=f"/{name}", total=100))
    progress(_event(EventType.PROGRESS, "written", bytes=100, total=100))
    progress(_event(EventType.PROGRESS, "moving", bytes=30, total=100))

    order = [transfer.path for transfer in progress.view().in_flight]

    assert order == ["/moving", "/new", "/written"]


def test_written_copies_count_as_syncing_not_in_flight() -> None:
    """Copies whose bytes are written wait for a group sync. The counts and
    the display show them as syncing, not as hundreds of files in flight."""
    progress = RunProgress(4, 400, clock=Clock())
    for name in ("a", "b", "c"):
        progress(_event(EventType.STARTED, name, source=f"/{name}", total=100))
        progress(_event(EventType.PROGRESS, name, bytes=100, total=100))
    progress(_event(EventType.STARTED, "d", source="/d", total=100))
    progress(_event(EventType.STARTED, "m", destination="/dir", action_kind="mkdir"))

    view = progress.view()
    screen = io.StringIO()
    Console(file=screen, width=80).print(render_view(view, 80))

    assert (view.moving, view.syncing) == (1, 4)
    assert "in flight 1, syncing 4" in view.line()
    assert "in flight 1  syncing 4" in screen.getvalue()
    assert "/dir  mkdir, syncing" in screen.getvalue()


def test_for_queue_counts_waiting_files(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "data", SAMPLE)
    with StorageQueue(str(source), str(tmp_path / "out"), tmp_path / "q") as queue:
        queue.copy_tree(str(source), str(tmp_path / "out"))
        view = RunProgress.for_queue(queue).view()

    assert view.files_total == len(SAMPLE)
    assert view.bytes_total == sum(len(content) for content in SAMPLE.values())
    assert view.done_earlier == 0
    assert not view.resumed


def test_for_queue_counts_a_local_file_added_alone(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "data", SAMPLE)
    name = next(iter(SAMPLE))
    with StorageQueue(str(source), str(tmp_path / "out"), tmp_path / "q") as queue:
        queue.copy_file(name, name)
        view = RunProgress.for_queue(queue).view()

    assert view.files_total == 1
    assert view.bytes_total == len(SAMPLE[name])


def test_for_queue_learns_a_remote_size_when_copied(
    tmp_path: Path, memory: fsspec.AbstractFileSystem
) -> None:
    """A remote file added alone has no size until its copy stats it."""
    memory.pipe_file("/data/big.bin", b"x" * 5000)
    with StorageQueue("memory://data", str(tmp_path / "out"), tmp_path / "q") as queue:
        queue.copy_file("big.bin", "big.bin")
        view = RunProgress.for_queue(queue).view()
        summary = queue.run(on_event=(progress := RunProgress.for_queue(queue)))

    assert view.files_total == 1
    assert view.bytes_total == 0
    assert summary.copied == 1
    assert progress.view().bytes_total == 5000


def test_for_queue_after_stop_reports_earlier(
    tmp_path: Path, memory: fsspec.AbstractFileSystem
) -> None:
    # A memory destination reports each completion at once; local copies
    # would report theirs in groups, after the stop came too late.
    files = {f"f{index:03d}.txt": b"x" * index for index in range(40)}
    source = write_tree(tmp_path / "data", files)
    stop = threading.Event()
    copied = []

    def on_event(event: Event) -> None:
        copied.append(event.action_id)
        stop.set()

    with StorageQueue(str(source), "memory://out", tmp_path / "q") as queue:
        queue.copy_tree(str(source), "/out")
        queue.run(on_event=on_event, stop=stop, event_types={"completed"})
        done = queue.status()["completed"]
        view = RunProgress.for_queue(queue).view()

    assert copied
    assert 0 < done < len(files)
    assert view.resumed
    assert view.done_earlier == done
    assert view.earlier_total == len(files)
    assert view.files_total == len(files) - done


def test_log_progress_writes_lines(caplog: pytest.LogCaptureFixture) -> None:
    progress = RunProgress(4, 400, clock=Clock())
    log = logging.getLogger("journalq.test.progress")

    with (
        caplog.at_level(logging.INFO, logger=log.name),
        log_progress(progress, 0.01, log),
    ):
        deadline = time.monotonic() + 10
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)

    assert caplog.records
    assert caplog.records[0].getMessage().startswith("progress: files 0/4 (0%)")


def test_log_progress_silent_without_info(caplog: pytest.LogCaptureFixture) -> None:
    progress = RunProgress(4, 400, clock=Clock())
    log = logging.getLogger("journalq.test.quiet")

    with (
        caplog.at_level(logging.WARNING, logger=log.name),
        log_progress(progress, 0.01, log),
    ):
        time.sleep(0.1)

    assert not caplog.records


def test_render_view_shows_totals() -> None:
    progress = RunProgress(10, 1000, done_earlier=5, earlier_total=15, clock=Clock())
    progress(_event(EventType.STARTED, "a", source="/data/report.csv", total=100))
    progress.mark_stopping()
    console = Console(width=100, file=io.StringIO(), force_terminal=False)

    console.print(render_view(progress.view(), 100))
    text = console.file.getvalue()  # type: ignore[attr-defined]

    assert "Resumed: 5 of 15 items were done by earlier runs" in text
    assert "Files" in text
    assert "0/10 (0%)" in text
    assert "ETA -" in text
    assert "> /data/report.csv  0 B/100 B" in text
    assert "Stopping:" in text


def test_display_ends_with_newline_in_file() -> None:
    output = io.StringIO()
    console = Console(width=80, file=output, force_terminal=False)
    progress = RunProgress(1, 1, clock=Clock())

    with ProgressDisplay(progress, console=console):
        progress(_event(EventType.COMPLETED, "a", bytes=1, total=1))

    assert output.getvalue().endswith("\n")
    assert "1/1 (100%)" in output.getvalue()


def test_summary_names_resumed_parts() -> None:
    summary = RunSummary(copied=1, bytes=3 * 1024**2, resumed_bytes=5 * 1024**2)
    summary.elapsed = 1.0

    text = format_summary(summary)

    assert text.startswith("copied 1, skipped 0, failed 0, retried 0; 3.0 MiB in")
    assert text.endswith(", after 5.0 MiB that earlier runs sent in journaled parts")
