"""The workload that the survival tests kill: add, cancel, compact and run.

Usage: ``python survival_child.py SOURCE DESTINATION QUEUE FIRST_ROUND
ROUNDS``. Each round opens the queue, which recovers whatever the last
process left. It adds a tree copy, a few file copies, a mkdir and a list,
and cancels one copy before it starts. It takes a snapshot every other
round, runs the queue and closes it. Opening the queue again in the next round seals a
journal segment, so that round's snapshot deletes segments.

Every acknowledged record is printed on stdout, one line each, flushed at
once, so a parent that kills this process can tell what must survive:

* ``add ID`` once the add returned (the ``added`` record is durable);
* ``cancel ID`` once the cancel returned;
* ``done ID`` once a flush that followed the action's completion returned.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from journalq import StorageQueue, faults
from journalq import queue as queue_module
from journalq.errors import JournalError
from journalq.events import Event, EventType
from journalq.replay import Status

#: Files copied one by one per round; the first is canceled before it runs.
EXTRAS_PER_ROUND = 4
#: Records per journal append of a tree expansion. The library's 50,000
#: keeps huge trees in bounded frames. The survival trees have a few
#: hundred to 1,200 files, so a smaller chunk puts crash points between
#: the chunks of their expansion.
EXPANSION_CHUNK = 200
#: Environment variable naming the file where a child writes how often it
#: reached each crash point, instead of crashing at one.
CENSUS_VARIABLE = "JOURNALQ_SURVIVAL_CENSUS"
#: Pause of the acknowledging thread between flushes, in seconds: short
#: enough that most completions are acknowledged before a random kill.
ACKNOWLEDGE_INTERVAL = 0.01


Emit = Callable[[str, str], None]


def print_line(kind: str, action_id: str = "") -> None:
    """Print one acknowledgement line and flush it at once."""
    print(f"{kind} {action_id}".rstrip(), flush=True)


class Acknowledger:
    """Reports completions once a flush that followed them returned."""

    def __init__(self, queue: StorageQueue, emit: Emit) -> None:
        self._emit = emit
        # StorageQueue has no public flush; its store's flush waits until
        # every record appended so far is synced.
        self._flush = queue._store.flush
        self._completed: list[str] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Acknowledger:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join()
        self._acknowledge()

    def on_event(self, event: Event) -> None:
        if event.type in (EventType.COMPLETED, EventType.SKIPPED):
            with self._lock:
                self._completed.append(event.action_id)

    def _loop(self) -> None:
        while not self._stopped.wait(ACKNOWLEDGE_INTERVAL):
            try:
                self._acknowledge()
            except JournalError:
                # The journal failed (a simulated power cut, a full disk),
                # and the run gets the same error and stops.
                return

    def _acknowledge(self) -> None:
        with self._lock:
            taken, self._completed = self._completed, []
        if taken:
            self._flush()
            for action_id in taken:
                self._emit("done", action_id)


def run_round(
    source: str, destination: str, queue_dir: str, number: int, emit: Emit
) -> None:
    """Run round ``number`` of the workload, reporting through ``emit``."""
    queue = StorageQueue(source, destination, name=queue_dir, parallelism=2)
    try:
        _add_and_run(queue, number, emit)
    finally:
        queue.close()
    emit("closed", "")


def _add_and_run(queue: StorageQueue, number: int, emit: Emit) -> None:
    emit("open", "")
    added = [queue.copy_tree("tree", "tree")]
    emit("add", added[0])
    for index in range(EXTRAS_PER_ROUND):
        relpath = f"extra/{number}-{index}.bin"
        action_id = queue.copy_file(relpath, relpath)
        added.append(action_id)
        emit("add", action_id)
        if index == 0:
            for canceled in queue.cancel(action_id):
                emit("cancel", canceled)
    for action_id in (
        queue.mkdir("destination", f"made/{number}"),
        queue.list("tree"),
    ):
        added.append(action_id)
        emit("add", action_id)
    if number % 2 == 1:
        queue.compact()

    with Acknowledger(queue, emit) as acknowledger:
        queue.run(on_event=acknowledger.on_event)
    # A run ends with a flush, so the trees it completed are durable now.
    for action_id in added:
        if queue.state.actions[action_id].status is Status.COMPLETED:
            emit("done", action_id)


def count_points(path: str) -> None:
    """Count every crash point reached; write the counts to ``path`` at exit."""
    counts: Counter[str] = Counter()
    faults.install(lambda name: counts.update((name,)))
    atexit.register(lambda: Path(path).write_text(json.dumps(counts)))


def main(arguments: list[str]) -> None:
    source, destination, queue_dir, first, rounds = arguments
    queue_module.EXPANSION_CHUNK = EXPANSION_CHUNK
    census = os.environ.get(CENSUS_VARIABLE)
    if census:
        count_points(census)
    for number in range(int(first), int(first) + int(rounds)):
        run_round(source, destination, queue_dir, number, print_line)
    print_line("finished")


if __name__ == "__main__":
    main(sys.argv[1:])
