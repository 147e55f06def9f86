"""Copy a tree to SFTP and SIGKILL the sshd sessions in the middle of it.

Usage: ``python ssh_drop_child.py SOURCE DESTINATION_URL QUEUE KEY SSHD_PID``.
The queue copies the tree SOURCE into DESTINATION_URL. At the first
progress event of ``large.bin`` its callback SIGKILLs every process below
SSHD_PID, which serve the queue's connection, and waits until the client
has seen the connection close. The callback runs in the worker thread
between two writes, so the copy's next write is a request on a closed
connection. It prints a JSON object: the run's ``copied``, ``skipped``,
``remaining``, ``failed`` and ``retried`` counts, the errors of failed
actions and the pids it killed.

It runs as a child process because the interpreter that lost the
connection is left in a state where CPython 3.11.7 later raised
"AST constructor recursion depth mismatch" from pytest's ``ast.parse``.
A child that hangs at exit fails the test by its timeout: before sshfs
files were marked closed after a failed close, 1 in 8 did.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from journalq import StorageQueue
from journalq.events import Event, EventType

#: Seconds the client may take to notice that its connection closed.
CLOSE_TIMEOUT = 10.0


def descendants(pid: int) -> list[int]:
    """Return the pids of every living descendant of process ``pid``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in brackets may contain spaces, so the fields
        # are counted from its closing bracket: state, then the parent pid.
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: list[int] = []
    wanted = [pid]
    while wanted:
        parent = wanted.pop()
        children = [child for child, of in parents.items() if of == parent]
        found.extend(children)
        wanted.extend(children)
    return found


def main(arguments: list[str]) -> None:
    source, destination, queue_dir, key, sshd_pid = arguments
    killed: list[int] = []
    options = {"client_keys": [key], "known_hosts": None}
    with StorageQueue(
        source,
        destination,
        name=queue_dir,
        parallelism=2,
        destination_options=options,
    ) as queue:
        queue.copy_tree("", "out")
        connected = queue.destination.fs

        def drop_connection(event: Event) -> None:
            large = (event.source or "").endswith("large.bin")
            if killed or event.type is not EventType.PROGRESS or not large:
                return
            if not event.bytes:
                return
            for pid in descendants(int(sshd_pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            # The copy goes on only once the client saw the connection
            # close, so its next write is a request on a closed connection.
            deadline = time.monotonic() + CLOSE_TIMEOUT
            while not connected.connection_lost and time.monotonic() < deadline:
                time.sleep(0.01)

        summary = queue.run(on_event=drop_connection)
        errors = [action.error for action in queue.get_actions("failed")]
    result = {
        "copied": summary.copied,
        "skipped": summary.skipped,
        "remaining": summary.remaining,
        "failed": summary.failed,
        "retried": summary.retried,
        "errors": errors,
        "killed": killed,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
