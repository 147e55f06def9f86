"""Sync a tree with journalq, stop half way, then resume: a plain script.

    python examples/sync_and_resume.py [SRC DST]

Without arguments it writes a sample tree of 3,000 small files into a
temporary directory and syncs it there. The first run is asked to stop
once a quarter of the files are reported copied, the way Ctrl-C stops
`journalq sync`. Copies are reported in groups of up to 512, once a
group is durable, so more are done by then. Opening the queue again and
running it copies only the rest. The queue lives in a temporary
directory, so the script leaves nothing behind in the journalq home.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

from journalq import Event, EventType, StorageQueue


def make_sample(root: Path, files: int = 3_000) -> None:
    """Write ``files`` small files in ten folders under ``root``."""
    for index in range(files):
        path = root / f"folder{index % 10}" / f"file{index:04d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"line {index}\n" * (index % 50 + 1))


def first_run(source: Path, destination: Path, queue_dir: Path) -> None:
    """Add the sync and run it until a quarter of the files are copied."""
    stop = threading.Event()
    copied = 0
    files = sum(1 for path in source.rglob("*") if path.is_file())

    def on_event(event: Event) -> None:
        nonlocal copied
        if event.type is EventType.COMPLETED and event.kind == "copy_file":
            copied += 1
            if copied >= files // 4:
                stop.set()

    with StorageQueue(str(source), str(destination), queue_dir) as queue:
        queue.sync(str(source), str(destination), delete=True)
        summary = queue.run(on_event=on_event, stop=stop, event_types={"completed"})
        print(f"first run: copied {summary.copied}, interrupted {summary.interrupted}")
        print(f"status after it: {queue.status()}")


def resume(queue_dir: Path) -> bool:
    """Open the queue again and run what is left; return whether all is done."""
    with StorageQueue(name=queue_dir) as queue:
        summary = queue.run()
        print(f"resumed run: copied {summary.copied}, skipped {summary.skipped}")
        for failure in summary.failures:
            print(f"failed: {failure.source}: {failure.error}")
        return summary.ok


def main(arguments: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="journalq-example-") as scratch:
        if arguments:
            source, destination = (Path(argument).resolve() for argument in arguments)
        else:
            source, destination = Path(scratch, "source"), Path(scratch, "backup")
            make_sample(source)
        queue_dir = Path(scratch, "queue")
        first_run(source, destination, queue_dir)
        done = resume(queue_dir)
    print("done" if done else "not done")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
