"""``journalq`` as real child processes: locking, hand-off and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import (
    MIB,
    journalq_process,
    json_lines,
    queue_files,
    read_tree,
    run_journalq,
    run_journalq_killed_at,
    write_large_file,
    write_tree,
)

from journalq import digest, executor
from journalq.cli.exits import ExitCode
from journalq.cli.output import format_bytes
from journalq.replay import Status
from journalq.store import read_state

#: Files in the tree a held run copies: enough that it is still working
#: when the test has read its first event and stopped it.
HELD_FILES = 600
#: MiB of the large file of the resume test: five 16 MiB parts, the last
#: one short.
LARGE_MIB = 72


@pytest.fixture
def many(tmp_path: Path) -> Path:
    files = {
        f"d{index % 7}/f{index:04d}.txt": b"%d\n" % index for index in range(HELD_FILES)
    }
    return write_tree(tmp_path / "many", files)


def _start_sync(source: Path, destination: Path, queue: str) -> subprocess.Popen:
    """Start `journalq sync --json` with one worker, its output piped."""
    return journalq_process(
        "sync",
        str(source),
        str(destination),
        "--queue",
        queue,
        "--json",
        "-j",
        "1",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(process: subprocess.Popen, event: str, source: str | None = None) -> None:
    """Read the events of ``process`` until one of type ``event`` arrives."""
    assert process.stdout is not None
    for line in process.stdout:
        found = json.loads(line)
        if found["event"] == event and source in (None, found["source"]):
            return
    raise AssertionError(f"the run ended without a {event!r} event")


@pytest.fixture
def held_run(many: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """A `journalq sync` that has locked its queue, frozen with SIGSTOP mid-run."""
    queue = str(tmp_path / "q")
    process = _start_sync(many, tmp_path / "out", queue)
    _wait_for(process, "started")
    process.send_signal(signal.SIGSTOP)
    try:
        yield process, queue
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGCONT)
            process.communicate(timeout=120)


def test_run_while_locked_exits_three(held_run: tuple[subprocess.Popen, str]) -> None:
    holder, queue = held_run

    started = time.monotonic()
    result = run_journalq("run", "--queue", queue)
    elapsed = time.monotonic() - started

    assert result.returncode == ExitCode.LOCKED, result.stderr
    assert f"pid {holder.pid}" in result.stderr
    assert "Traceback" not in result.stderr
    # `run` adds nothing, so nothing was handed to the holder.
    assert "handed" not in result.stderr
    # Process start-up is most of this; the lock itself is never waited for.
    assert elapsed < 15


def test_status_while_locked_names_holder(
    held_run: tuple[subprocess.Popen, str],
) -> None:
    holder, queue = held_run

    result = run_journalq("status", "--queue", queue, "--json")

    assert result.returncode == ExitCode.OK, result.stderr
    status = json.loads(result.stdout)
    assert status["running"]["pid"] == holder.pid
    assert status["length"] > HELD_FILES


def test_drop_while_locked_exits_three(
    held_run: tuple[subprocess.Popen, str],
) -> None:
    holder, queue = held_run

    result = run_journalq("drop", queue, "--force")

    assert result.returncode == ExitCode.LOCKED, result.stderr
    assert f"pid {holder.pid}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "can still be added" not in result.stderr
    assert "then drop the queue again" in result.stderr
    assert (Path(queue) / "FORMAT").exists()


def test_sync_during_run_is_handed_over(
    held_run: tuple[subprocess.Popen, str], many: Path, tmp_path: Path
) -> None:
    holder, queue = held_run
    other = tmp_path / "other"

    handed = run_journalq("sync", str(many), str(other), "--queue", queue)
    holder.send_signal(signal.SIGCONT)
    _, holder_stderr = holder.communicate(timeout=120)

    assert handed.returncode == ExitCode.LOCKED, handed.stderr
    assert f"is being run by pid {holder.pid}" in handed.stderr
    assert "the sync was handed to that run" in handed.stderr
    assert "try again" not in handed.stderr
    assert holder.returncode == ExitCode.OK, holder_stderr
    assert read_tree(other) == read_tree(many)


def test_add_during_run_is_not_lost(
    held_run: tuple[subprocess.Popen, str], tmp_path: Path
) -> None:
    holder, queue = held_run
    extra = tmp_path / "extra.txt"
    extra.write_bytes(b"added while the run was going")

    added = run_journalq(
        "add", "copy", str(extra), str(tmp_path / "late.txt"), "--queue", queue
    )
    holder.send_signal(signal.SIGCONT)
    _, holder_stderr = holder.communicate(timeout=120)
    again = run_journalq("run", "--queue", queue)

    assert added.returncode == ExitCode.OK, added.stderr
    assert f"pid {holder.pid}" in added.stderr
    assert holder.returncode == ExitCode.OK, holder_stderr
    assert again.returncode == ExitCode.OK, again.stderr
    assert (tmp_path / "late.txt").read_bytes() == extra.read_bytes()
    state = read_state(queue)
    action = state.actions[added.stdout.strip()]
    assert str(action.status) == "completed"


#: Files of the tree that `cancel --all` stops in mid-copy: enough for the
#: run to fork a copy process, large enough that each batch is bounded by
#: executor.MAX_BATCH_BYTES rather than by executor.MAX_BATCH files.
CANCELED_FILES = 300
CANCELED_FILE_BYTES = 200_000


def test_cancel_all_while_copy_processes_copy(tmp_path: Path) -> None:
    """A cancel sent while the run is stopped spares only the files out.

    A copy process has at most two batches, which it copies even while
    the coordinator is stopped, so those are the files the cancel misses.
    """
    source = write_tree(
        tmp_path / "src",
        {
            f"f{index:03d}": os.urandom(CANCELED_FILE_BYTES)
            for index in range(CANCELED_FILES)
        },
    )
    out = tmp_path / "out"
    queue = str(tmp_path / "q")
    added = run_journalq("add", "copy", f"{source}/", str(out), "--queue", queue)
    process = journalq_process(
        "run", "--queue", queue, "-j", "1", stderr=subprocess.PIPE, text=True
    )
    while len(_copied_names(out)) < 14:
        time.sleep(0.005)
    process.send_signal(signal.SIGSTOP)
    copied_when_stopped = len(_copied_names(out))

    canceled = run_journalq("cancel", "--all", "--queue", queue)
    stopped_status = run_journalq("status", "--queue", queue)
    process.send_signal(signal.SIGCONT)
    _, stderr = process.communicate(timeout=120)

    assert added.returncode == ExitCode.OK, added.stderr
    assert canceled.returncode == ExitCode.OK, canceled.stderr
    assert f"is being run by pid {process.pid}" in canceled.stdout
    assert f"asked it to cancel {CANCELED_FILES + 1} actions." in canceled.stdout
    assert f"journalq actions --status canceled --queue {queue}" in canceled.stdout
    assert "canceled 301" not in canceled.stdout
    # The stopped run has not read the request: status reports it as pending.
    requested = f"cancel requested: {CANCELED_FILES + 1} actions, not read yet"
    assert requested in stopped_status.stdout
    assert process.returncode == ExitCode.OK, stderr
    state = read_state(queue)
    files = [a for a in state.actions.values() if a.added.parent is not None]
    completed = [a for a in files if str(a.status) == "completed"]
    assert {str(a.status) for a in files} == {"completed", "canceled"}
    assert len(completed) == len(_copied_names(out))
    per_batch = executor.MAX_BATCH_BYTES // CANCELED_FILE_BYTES
    # Two batches are out at a time. SIGSTOP lands a moment after it is
    # sent, in which the run may hand out one more: a busy CI machine
    # copied 41 files more than it had. Before cancels reached the copy
    # processes, the run copied 128 more.
    assert len(completed) <= copied_when_stopped + 3 * per_batch


def _copied_names(directory: Path) -> list[str]:
    """Return the files copied into ``directory``, not the temporary ones."""
    if not directory.exists():
        return []
    return [name for name in os.listdir(directory) if not name.startswith(".")]


def test_rejected_batch_during_run_hands_nothing(
    held_run: tuple[subprocess.Popen, str], tmp_path: Path
) -> None:
    """`add --from` into a queue that another process runs hands it no
    action when a later line is rejected: the queue's files, its inbox
    among them, stay as they were."""
    holder, queue = held_run
    extra = tmp_path / "extra.txt"
    extra.write_bytes(b"not to be copied")
    missing = tmp_path / "missing"
    batch = tmp_path / "batch.jsonl"
    lines = [
        {"kind": "copy_file", "source": str(extra), "destination": str(tmp_path / "x")},
        {
            "kind": "copy_tree",
            "source": str(missing),
            "destination": str(tmp_path / "m"),
        },
    ]
    batch.write_text("".join(json.dumps(line) + "\n" for line in lines))
    before = queue_files(Path(queue))

    added = run_journalq("add", "--from", str(batch), "--queue", queue)
    after = queue_files(Path(queue))
    holder.send_signal(signal.SIGCONT)
    _, holder_stderr = holder.communicate(timeout=120)

    assert added.returncode == ExitCode.USAGE, added.stderr
    assert f"line 2: '{missing}': source directory not found" in added.stderr
    assert added.stdout == ""
    assert after == before
    assert holder.returncode == ExitCode.OK, holder_stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP], ids=["int", "hup"])
def test_ctrl_c_stops_and_resume_finishes(
    many: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    """Ctrl-C, and a hangup (a closed terminal, a dropped ssh session)."""
    queue = str(tmp_path / "q")
    process = _start_sync(many, tmp_path / "out", queue)
    _wait_for(process, "started")

    process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=60)
    resumed = run_journalq("run", "--queue", queue, "--json")

    assert process.returncode == ExitCode.INTERRUPTED, stderr
    assert f"journalq run --queue {queue}" in stderr
    assert "interrupted" in stderr
    # Without a terminal nothing echoed ^C, so no blank line comes first.
    assert stderr.startswith("stopping: no new actions start"), stderr
    assert "\n\n" not in stderr
    summary = json.loads(stdout.splitlines()[-1])
    assert summary["interrupted"] is True
    assert summary["remaining"] > 0
    assert summary["resume"] == f"journalq run --queue {queue}"
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert read_tree(tmp_path / "out") == read_tree(many)
    # What was left is what the resumed run did: the tree that waited for
    # its files is not counted as an action left.
    last = json.loads(resumed.stdout.splitlines()[-1])
    ran = last["copied"] + last["skipped"] + last["done"]
    assert ran - last["identical_when_listed"] == summary["remaining"]


def _start_stalled_run(
    tmp_path: Path, *options: str
) -> tuple[subprocess.Popen, Path, str]:
    """Start `journalq run` on a copy of a FIFO; return once its copy started.

    A FIFO with no writer stands for a read that hangs (a stalled server).
    Returns the process, the FIFO and the queue directory.
    """
    fifo = tmp_path / "stalled"
    os.mkfifo(fifo)
    queue = str(tmp_path / "q")
    # A tree listing skips a FIFO, so the stalled read is a copy of its own.
    added = run_journalq(
        "add", "copy", str(fifo), str(tmp_path / "out" / "stalled"), "--queue", queue
    )
    assert added.returncode == ExitCode.OK, added.stderr
    process = journalq_process(
        "run",
        "--queue",
        queue,
        "--json",
        "-j",
        "1",
        *options,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(process, "started", source=str(fifo))
    return process, fifo, queue


def test_cancel_during_run_drops_failure(sample: Path, tmp_path: Path) -> None:
    """A failed file canceled while another process runs the queue ends its
    tree in that run."""
    os.symlink(tmp_path / "never.txt", sample / "dangling.txt")
    queue = str(tmp_path / "q")
    copied = run_journalq(
        "copy", f"{sample}/", str(tmp_path / "tree"), "--queue", queue
    )
    state = read_state(queue)
    (failed,) = [
        action_id
        for action_id, action in state.actions.items()
        if str(action.status) == "failed" and action.added.parent is not None
    ]
    tree = state.actions[failed].added.parent
    process, fifo, _ = _start_stalled_run(tmp_path)

    canceled = run_journalq("cancel", failed, "--queue", queue)
    # Opened and closed, the FIFO reads as empty, and the stalled copy ends.
    os.close(os.open(fifo, os.O_WRONLY))
    _, stderr = process.communicate(timeout=120)
    after = read_state(queue)

    assert copied.returncode == ExitCode.FAILED, copied.stderr
    assert canceled.returncode == ExitCode.OK, canceled.stderr
    assert "asked it to cancel 1 action." in canceled.stdout
    assert process.returncode == ExitCode.OK, stderr
    assert str(after.actions[failed].status) == "canceled"
    assert tree is not None
    assert str(after.actions[tree].status) == "completed"
    assert after.actions[tree].attempts == state.actions[tree].attempts
    assert after.counts[Status.FAILED] == 0


def test_second_ctrl_c_exits_at_once(tmp_path: Path) -> None:
    """The first Ctrl-C cannot finish a copy whose read hangs, the second
    exits."""
    process, fifo, queue = _start_stalled_run(tmp_path)

    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    still_running = process.poll() is None
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    elapsed = time.monotonic() - started
    fifo.unlink()
    fifo.write_bytes(b"no longer stalled")
    resumed = run_journalq("run", "--queue", queue)

    assert still_running
    assert process.returncode == ExitCode.INTERRUPTED, stderr
    assert "exiting at once" in stderr
    assert stderr.startswith("stopping: no new actions start"), stderr
    assert "\n\n" not in stderr
    assert f"journalq run --queue {queue}" in stderr
    assert elapsed < 5
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert read_tree(tmp_path / "out") == {"stalled": b"no longer stalled"}


def test_stop_timeout_ends_stalled_run(tmp_path: Path) -> None:
    """One SIGTERM, and a copy whose read hangs: the run exits after the
    grace period of --stop-timeout as on a second signal, and resumes."""
    process, fifo, queue = _start_stalled_run(tmp_path, "--stop-timeout", "2")

    process.send_signal(signal.SIGTERM)
    signaled = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("the run still waited for the FIFO after 60 s") from None
    waited = time.monotonic() - signaled
    state = read_state(queue)
    fifo.unlink()
    fifo.write_bytes(b"no longer stalled")
    resumed = run_journalq("run", "--queue", queue)

    assert process.returncode == ExitCode.INTERRUPTED, stderr
    assert "did not stop within 2 s" in stderr
    assert f"To resume: journalq run --queue {queue}" in stderr
    # The timer starts at the signal, so the exit cannot come earlier.
    assert waited >= 2
    statuses = [str(action.status) for action in state.actions.values()]
    assert statuses == ["inprogress"]
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert read_tree(tmp_path / "out") == {"stalled": b"no longer stalled"}


def test_printed_completion_survives_kill(many: Path, tmp_path: Path) -> None:
    """A run SIGKILLed at once after its first ``completed`` line printed.

    Completions are journaled without waiting for the disk, so the line is
    printed only after a journal flush. Without that wait the kill lands
    while the record is still in the journal writer's queue.
    """
    queue = str(tmp_path / "q")
    process = _start_sync(many, tmp_path / "out", queue)
    assert process.stdout is not None
    completed = []
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "completed":
            process.kill()
            completed.append(event["id"])
            break
    # The rest of the output, from the pipe object: communicate() would read
    # past the lines that the loop above buffered.
    stdout = process.stdout.read()
    process.communicate(timeout=60)
    # A line the kill cut short has no newline yet, so it is left out.
    for line in stdout.split("\n")[:-1]:
        event = json.loads(line)
        if event["event"] == "completed":
            completed.append(event["id"])

    assert process.returncode == -signal.SIGKILL
    state = read_state(queue)
    statuses = {
        action_id: str(state.actions[action_id].status) for action_id in completed
    }
    assert statuses == dict.fromkeys(completed, "completed")


def test_closed_output_stops_run_with_141(many: Path, tmp_path: Path) -> None:
    """`journalq sync --json | head -1`: the run stops and exits with 141."""
    queue = str(tmp_path / "q")
    process = _start_sync(many, tmp_path / "out", queue)
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()
    process.wait(timeout=60)
    assert process.stderr is not None
    stderr = process.stderr.read()
    resumed = run_journalq("run", "--queue", queue)

    assert process.returncode == ExitCode.PIPE_CLOSED, stderr
    assert "Traceback" not in stderr
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert read_tree(tmp_path / "out") == read_tree(many)


#: Runs piped into ``head``. Before the acknowledging thread handled a
#: closed stdout, 7 of 10 runs on the 2-core test machine printed its
#: traceback. At that rate all 10 pass by chance about 6 times in a million.
PIPED_RUNS = 10


def test_head_closing_pipe_stops_cleanly(many: Path, tmp_path: Path) -> None:
    """`journalq sync --json | head -3`: exit 141 and one line on stderr.

    The run stops the way a Ctrl-C stops it, so no action is left in
    progress, and stderr gives the resume command instead of a traceback.
    """
    for run in range(PIPED_RUNS):
        process = journalq_process(
            "sync",
            f"{many}/",
            str(tmp_path / f"out{run}"),
            *("--queue", str(tmp_path / f"q{run}"), "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        head = subprocess.Popen(
            ["head", "-n", "3"], stdin=process.stdout, stdout=subprocess.DEVNULL
        )
        # Only head reads the pipe now, so its exit closes it.
        process.stdout.close()
        head.wait(timeout=60)
        _, stderr = process.communicate(timeout=60)

        status = read_state(tmp_path / f"q{run}").status_counts()

        assert process.returncode == ExitCode.PIPE_CLOSED, (run, stderr)
        assert stderr.decode() == (
            "stdout was closed, so the run stopped. To resume: journalq run "
            f"--queue {tmp_path / f'q{run}'}\n"
        ), run
        assert status["inprogress"] == 0, run


#: Runs the console script's main() in a child process and sends itself
#: SIGINT when the commands' imports reach fsspec, the way a Ctrl-C 0.1 s
#: after start lands. An import hook makes that moment exact.
CTRL_C_DURING_IMPORTS = """
import os, signal, sys

class CtrlCAtFsspec:
    def find_spec(self, name, path, target=None):
        if name == "fsspec":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlCAtFsspec())
sys.argv = ["journalq", *sys.argv[1:]]
from journalq.cli import main
main()
"""


def test_ctrl_c_during_imports_exits_130(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CTRL_C_DURING_IMPORTS,
            "status",
            "--queue",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == ExitCode.INTERRUPTED, result.stderr
    assert result.stderr.startswith("journalq: error: interrupted;")
    assert result.stderr.count("\n") == 1


def test_console_script_imports_no_commands() -> None:
    """The package that the console script imports first loads nothing heavy.

    So a Ctrl-C right after start lands in main(), which reports it.
    """
    code = (
        "import sys; import journalq.cli; "
        "print(sorted(m for m in ('fsspec', 'typing', 'journalq.cli.main', "
        "'journalq.replay') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"


#: The dataclasses that the CLI's import creates: the classes of the
#: library's documented API, on which callers may use dataclasses.asdict
#: and dataclasses.replace. A ProgressView contains Transfers in ``in_flight``.
PUBLIC_DATACLASSES = [
    "journalq.compare.FileInfo",
    "journalq.drop.DroppedQueue",
    "journalq.events.ActionInfo",
    "journalq.events.Event",
    "journalq.events.RunSummary",
    "journalq.progress.ProgressView",
    "journalq.progress.Transfer",
    "journalq.retry.Backoff",
]


def test_cli_import_makes_only_public_dataclasses() -> None:
    """Internal classes are msgspec Structs, whose classes are created in C.

    A command imports the modules that do its work, and Python 3.11
    generates and compiles the methods of each dataclass at import, about
    0.5 ms a class. All of them are imported here.
    """
    code = (
        "import dataclasses, sys; import journalq.cli.main\n"
        "import journalq.cli.add, journalq.cli.details, journalq.cli.maintenance\n"
        "import journalq.cli.reports, journalq.cli.running\n"
        "for name, module in sorted(sys.modules.items()):\n"
        "    if name.startswith('journalq'):\n"
        "        for value in vars(module).values():\n"
        "            if (isinstance(value, type) and value.__module__ == name\n"
        "                    and dataclasses.is_dataclass(value)):\n"
        "                print(name + '.' + value.__qualname__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert sorted(result.stdout.split()) == PUBLIC_DATACLASSES


def test_resumed_large_copy_counts_sent_bytes(tmp_path: Path) -> None:
    """A large copy killed after two parts reports only what its resume sent.

    The run is killed before it journals its third part, so the parts it
    had in flight are on disk but not journaled and are sent again.
    """
    source = tmp_path / "src"
    write_large_file(source / "big.bin", LARGE_MIB)
    size = LARGE_MIB * MIB
    queue = str(tmp_path / "q")
    command = ("copy", f"{source}/", f"{tmp_path / 'dst'}/", "--queue", queue)
    threshold = ("--part-threshold", "1M")

    killed = run_journalq_killed_at("parts.before_record:3", *command, *threshold)
    (action,) = [a for a in read_state(queue).actions.values() if a.parts]
    journaled = sum(part.size for part in action.parts.written.values())
    resumed = run_journalq(*command, *threshold, "--json")
    status = json.loads(run_journalq("status", "--queue", queue, "--json").stdout)

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert journaled == 2 * digest.PART_SIZE
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    events = json_lines(resumed.stdout)
    remaining = size - journaled
    assert events[0]["event"] == "run"
    assert events[0]["bytes"] == remaining
    (completed,) = [event for event in events if event["event"] == "completed"]
    assert completed["bytes"] == remaining
    progress = [event["bytes"] for event in events if event["event"] == "progress"]
    assert max(progress) == remaining
    summary = events[-1]
    assert summary["bytes"] == remaining
    assert summary["bytes"] < size
    assert status["last_run"]["bytes"] == remaining
    # The queue's own total counts the whole file, whichever run sent it.
    assert status["bytes"] == size
    assert (tmp_path / "dst" / "big.bin").read_bytes() == (
        source / "big.bin"
    ).read_bytes()


#: ``python -c`` script: ``journalq ARGUMENTS`` that sends itself SIGINT, as
#: Ctrl-C does, when its copy in parts is about to journal its second part.
#: The run then stops after the parts in flight, with some of them journaled.
CTRL_C_AT_SECOND_PART = textwrap.dedent(
    """
    import os, signal, sys
    from journalq import faults
    from journalq.cli import main

    reached = 0

    def interrupt(name):
        global reached
        if name == "parts.before_record":
            reached += 1
            if reached == 2:
                os.kill(os.getpid(), signal.SIGINT)

    faults.install(interrupt)
    sys.argv[0] = "journalq"
    main()
    """
)


def _status(queue: str) -> tuple[str, dict]:
    """Return the ``copied in all`` line of ``status`` and ``status --json``."""
    text = run_journalq("status", "--queue", queue)
    data = run_journalq("status", "--queue", queue, "--json")
    assert text.returncode == ExitCode.OK, text.stderr
    assert data.returncode == ExitCode.OK, data.stderr
    (line,) = [line for line in text.stdout.splitlines() if "copied in all" in line]
    return line, json.loads(data.stdout)


def _journaled_part_bytes(queue: str) -> int:
    (action,) = [a for a in read_state(queue).actions.values() if a.parts]
    return sum(part.size for part in action.parts.written.values())


def _check_counted_once(command: tuple[str, ...], queue: str, size: int) -> None:
    """Resume ``command`` and check that the whole file is counted once."""
    resumed = run_journalq(*command)
    line, data = _status(queue)

    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert line == f"copied in all: {format_bytes(size)}"
    assert data["bytes"] == size
    assert data["part_bytes"] == 0
    assert data["part_copies"] == 0


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGINT"])
def test_status_counts_journaled_parts(tmp_path: Path, stop: str) -> None:
    """``copied in all`` includes the parts an interrupted large copy
    journaled, names them apart, and counts the file once after the resume."""
    source = tmp_path / "src"
    write_large_file(source / "big.bin", LARGE_MIB)
    size = LARGE_MIB * MIB
    queue = str(tmp_path / "q")
    command = ("copy", f"{source}/", f"{tmp_path / 'dst'}/", "--queue", queue)

    if stop == "SIGKILL":
        stopped = run_journalq_killed_at("parts.before_record:3", *command)
        expected_code = -signal.SIGKILL
    else:
        stopped = subprocess.run(
            [sys.executable, "-c", CTRL_C_AT_SECOND_PART, *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        expected_code = ExitCode.INTERRUPTED
    journaled = _journaled_part_bytes(queue)
    line, data = _status(queue)

    assert stopped.returncode == expected_code, stopped.stderr
    assert digest.PART_SIZE <= journaled < size
    assert line == (
        f"copied in all: {format_bytes(journaled)}, {format_bytes(journaled)} "
        "of it in the journaled parts of 1 large copy not completed yet"
    )
    assert data["bytes"] == 0
    assert data["part_bytes"] == journaled
    assert data["part_copies"] == 1
    _check_counted_once(command, queue, size)
