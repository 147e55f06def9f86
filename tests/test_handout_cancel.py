"""Cancels of files handed to copy processes before the cancel arrived.

A copy process checks the queue's inbox before each file and hands back
the files it has not started once a request arrived. The run keeps a
cancel of a file that is out at a copy process until the file comes back:
canceled when it was not copied, dropped when it was. The inbox keeps the
request until then, so a crash does not lose it.

A FIFO as a source file stops a copy process at a known point: opening it
blocks until a writer opens it too, and the copy process then leaves it
to the coordinator, because it is not a regular file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from journalq import StorageQueue, copier, executor, inbox, transfer
from journalq.events import Event
from journalq.records import Canceled, Completed, Outcome, Started, encode_batch
from journalq.replay import ActionState, Status
from journalq.store import QueueStore, read_state

pytestmark = pytest.mark.skipif(
    not copier.available(), reason="copy processes exist only on Linux"
)


@contextlib.contextmanager
def fifo_feeder(path: Path) -> Iterator[None]:
    """Let every reader of the FIFO at ``path`` through, with no data.

    A writer that opens and closes the FIFO ends each blocked open of a
    reader, which then reads end of file.
    """
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:
                # ENXIO: no reader has the FIFO open yet.
                if error.errno != errno.ENXIO:
                    raise
                time.sleep(0.005)
                continue
            os.close(fd)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def post_until_changed(queue_dir: Path, before: int | None) -> None:
    """Post a request to the inbox until its directory's mtime is not ``before``.

    Two changes within one tick of the kernel's clock leave the mtime as it
    was, so a post right after the last change may not show.
    """
    while True:
        inbox.post(queue_dir, encode_batch([]))
        if copier.inbox_mtime(str(queue_dir / inbox.INBOX_DIR)) != before:
            return
        time.sleep(0.01)


def tasks_for(directory: Path, names: tuple[str, ...]) -> list[copier.Task]:
    """Return tasks that copy each file NAME in ``directory`` to NAME.out."""
    return [
        copier.Task(
            f"{index:016x}",
            str(directory / name),
            str(directory / f"{name}.out"),
            -1,
            None,
        )
        for index, name in enumerate(names)
    ]


def test_inbox_change_hands_back_rest(tmp_path: Path) -> None:
    queue_dir = tmp_path / "q"
    (queue_dir / inbox.INBOX_DIR).mkdir(parents=True)
    inbox_dir = str(queue_dir / inbox.INBOX_DIR)
    (tmp_path / "first").write_bytes(b"first")
    os.mkfifo(tmp_path / "blocking")
    (tmp_path / "last").write_bytes(b"last")
    tasks = tasks_for(tmp_path, ("first", "blocking", "last"))
    helper = copier.CopyProcess(executor.COPY_PROCESS_BYTES, inbox_dir)
    try:
        helper.send(tasks, copier.inbox_mtime(inbox_dir))
        while not (tmp_path / "first.out").exists():
            time.sleep(0.005)
        # The copy process now waits in the FIFO's open, or is about to.
        post_until_changed(queue_dir, copier.inbox_mtime(inbox_dir))
        with fifo_feeder(tmp_path / "blocking"):
            first, blocking, last = helper.receive()
    finally:
        helper.close()

    assert isinstance(first, copier.Copied)
    assert blocking in (None, copier.HandedBack())
    assert last == copier.HandedBack()
    assert not (tmp_path / "last.out").exists()


def test_unchanged_inbox_copies_batch(tmp_path: Path) -> None:
    queue_dir = tmp_path / "q"
    (queue_dir / inbox.INBOX_DIR).mkdir(parents=True)
    inbox_dir = str(queue_dir / inbox.INBOX_DIR)
    names = ("a", "b", "c")
    for name in names:
        (tmp_path / name).write_bytes(name.encode())
    tasks = tasks_for(tmp_path, names)
    helper = copier.CopyProcess(executor.COPY_PROCESS_BYTES, inbox_dir)
    try:
        helper.send(tasks, copier.inbox_mtime(inbox_dir))
        outcomes = helper.receive()
    finally:
        helper.close()

    assert all(isinstance(outcome, copier.Copied) for outcome in outcomes)
    assert [(tmp_path / f"{name}.out").read_bytes() for name in names] == [
        b"a",
        b"b",
        b"c",
    ]


#: Files of the tree whose copies go to one copy process: enough for the
#: run to fork one (executor.COPY_PROCESS_FILES), in batches of a quarter
#: of the tree (at most executor.MAX_PROCESS_BATCH files).
TREE_FILES = 300
BATCH_FILES = min(executor.MAX_PROCESS_BATCH, TREE_FILES // 4)


def source_tree(tmp_path: Path) -> Path:
    """Write the TREE_FILES small files of the tree to copy; return its root."""
    source = tmp_path / "src"
    source.mkdir()
    for index in range(TREE_FILES):
        (source / f"f{index:04d}").write_bytes(b"%d\n" % index)
    return source


def block_second_batch(
    queue: StorageQueue,
) -> tuple[list[ActionState], list[ActionState], str]:
    """Add the tree and make its second batch start with a FIFO.

    The FIFO stops the copy process at a known point. Returns the first
    batch, the second and the FIFO's path.
    """
    queue.copy_tree("", "")
    files = [
        action
        for action in queue.state.actions.values()
        if action.added.parent is not None
    ]
    first_batch = files[:BATCH_FILES]
    second_batch = files[BATCH_FILES : 2 * BATCH_FILES]
    blocking, _ = queue.state.paths(second_batch[0])
    assert blocking is not None
    os.unlink(blocking)
    os.mkfifo(blocking)
    return first_batch, second_batch, blocking


def test_cancel_reaches_handed_out_files(tmp_path: Path) -> None:
    source = source_tree(tmp_path)
    queue_dir = tmp_path / "q"
    canceled: list[subprocess.CompletedProcess] = []
    feeder = contextlib.ExitStack()

    with StorageQueue(source, tmp_path / "dst", queue_dir, parallelism=1) as queue:
        first_batch, second_batch, blocking = block_second_batch(queue)

        def cancel_once(event: Event) -> None:
            # The first file of the first batch is journaled while the copy
            # process waits in the FIFO's open.
            if canceled:
                return
            canceled.append(
                subprocess.run(
                    [
                        *(sys.executable, "-m", "journalq", "cancel", "--all"),
                        *("--queue", str(queue_dir)),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
            )
            feeder.enter_context(fifo_feeder(Path(blocking)))

        with feeder:
            queue.run(on_event=cancel_once, event_types={"started"})

    state = read_state(queue_dir)
    statuses = {action.action_id: action.status for action in state.actions.values()}
    assert canceled[0].returncode == 0, canceled[0].stderr
    assert "asked it to cancel" in canceled[0].stdout
    assert {statuses[action.action_id] for action in first_batch} == {Status.COMPLETED}
    assert {statuses[action.action_id] for action in second_batch} == {Status.CANCELED}
    for action in second_batch[1:]:
        _, destination = state.paths(action)
        assert destination is not None
        assert not os.path.exists(destination), destination
    assert os.listdir(queue_dir / inbox.INBOX_DIR) == []


def _handed_out_with_cancel(tmp_path: Path) -> tuple[QueueStore, str]:
    """Open a queue store with one copy handed out and a cancel posted."""
    (tmp_path / "file.txt").write_text("content")
    queue_dir = tmp_path / "queue"
    with StorageQueue(tmp_path, tmp_path / "out", queue_dir) as queue:
        action_id = queue.copy_file("file.txt", "file.txt")
    store = QueueStore.open(queue_dir)
    assert store.hand_out([action_id], 1) == {action_id}
    inbox.post(queue_dir, encode_batch([Canceled(action_id, "user")]))
    store.drain_inbox()
    return store, action_id


def test_cancel_of_returned_copy_applies(tmp_path: Path) -> None:
    store, action_id = _handed_out_with_cancel(tmp_path)
    try:
        drained = store.state.actions[action_id].status
        requests = os.listdir(store.directory / inbox.INBOX_DIR)
        store.hand_back([action_id], 1)
        store.release([action_id])
        released = store.state.actions[action_id].status
    finally:
        store.close()

    assert drained is Status.INPROGRESS
    assert len(requests) == 1
    assert released is Status.CANCELED
    assert read_state(store.directory).actions[action_id].status is Status.CANCELED
    assert os.listdir(store.directory / inbox.INBOX_DIR) == []


def test_cancel_of_copied_handout_dropped(tmp_path: Path) -> None:
    store, action_id = _handed_out_with_cancel(tmp_path)
    try:
        store.append([Completed(action_id, 1, Outcome.COPIED)], durable=True)
        store.release([action_id])
    finally:
        store.close()

    state = read_state(store.directory)
    assert state.actions[action_id].status is Status.COMPLETED
    assert os.listdir(store.directory / inbox.INBOX_DIR) == []


def _crash_with_handout(
    tmp_path: Path, names: tuple[str, ...], canceled: tuple[str, ...]
) -> tuple[Path, dict[str, str]]:
    """Leave a queue as a run killed with the files ``names`` handed out.

    A killed process hands out one copy per name, posts one cancel request
    naming ``canceled`` (none when empty), drains the inbox, which keeps
    those cancels back, and exits with code 9. Returns the queue directory and
    the action id of each name. The caller writes what the dead copy
    process left at the destination.
    """
    queue_dir = tmp_path / "queue"
    (tmp_path / "src").mkdir()
    (tmp_path / "out").mkdir()
    ids: dict[str, str] = {}
    with StorageQueue(tmp_path / "src", tmp_path / "out", queue_dir) as queue:
        for name in names:
            (tmp_path / "src" / name).write_text(f"content of {name}")
            ids[name] = queue.copy_file(name, name)
    canceled_ids = [ids[name] for name in canceled]
    script = textwrap.dedent(
        f"""
        import os
        from journalq import inbox
        from journalq.records import Canceled, encode_batch
        from journalq.store import QueueStore

        store = QueueStore.open({str(queue_dir)!r})
        store.hand_out({list(ids.values())!r}, 1)
        if {canceled_ids!r}:
            cancels = [Canceled(action_id) for action_id in {canceled_ids!r}]
            inbox.post({str(queue_dir)!r}, encode_batch(cancels))
        store.drain_inbox()
        os._exit(9)
        """
    )
    killed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert killed.returncode == 9, killed.stderr
    return queue_dir, ids


def _cut_off(tmp_path: Path, name: str, action_id: str) -> str:
    """Write the temporary file of a copy cut off, where a copy process
    writes it (attempt 1, no nonce); return its path."""
    temporary = transfer.temp_path(str(tmp_path / "out" / name), action_id, 1)
    Path(temporary).write_bytes(b"cont")
    return temporary


def _put_in_place(tmp_path: Path, name: str) -> None:
    """Write the copy of ``name`` that a copy process renames into place:
    the source's content and mtime."""
    shutil.copy2(tmp_path / "src" / name, tmp_path / "out" / name)


def test_handout_canceled_after_crash(tmp_path: Path) -> None:
    """A run killed while a cancel of a handed-out copy waits in the inbox,
    or while the run keeps it back, leaves the copy in progress. With no file
    in place at the destination the copy process did not finish it, so the
    next open removes its temporary file and cancels it."""
    queue_dir, ids = _crash_with_handout(tmp_path, ("file.txt",), ("file.txt",))
    action_id = ids["file.txt"]
    temporary = _cut_off(tmp_path, "file.txt", action_id)

    with StorageQueue(name=queue_dir) as queue:
        reopened = queue.get_action(action_id).status
        swept = not os.path.exists(temporary)
        requests = os.listdir(queue_dir / inbox.INBOX_DIR)
        summary = queue.run()
        ran = queue.get_action(action_id).status

    assert reopened == "canceled"
    assert swept
    assert requests == []
    assert ran == "canceled"
    assert summary.copied == 0
    assert not (tmp_path / "out" / "file.txt").exists()
    assert read_state(queue_dir).actions[action_id].status is Status.CANCELED


def test_handout_in_place_spared_after_crash(tmp_path: Path) -> None:
    """A cancel of a handed-out copy whose file a killed run's copy process
    renamed into place is dropped at the next open: the copy waits and the
    run finds it identical."""
    queue_dir, ids = _crash_with_handout(tmp_path, ("file.txt",), ("file.txt",))
    action_id = ids["file.txt"]
    _put_in_place(tmp_path, "file.txt")

    with StorageQueue(name=queue_dir) as queue:
        reopened = queue.get_action(action_id).status
        requests = os.listdir(queue_dir / inbox.INBOX_DIR)
        summary = queue.run()
        ran = queue.get_action(action_id)

    assert reopened == "waiting"
    assert requests == []
    assert ran.status == "completed"
    assert ran.outcome == "skipped"
    assert summary.copied == 0
    assert summary.skipped == 1


def test_handout_other_mtime_canceled(tmp_path: Path) -> None:
    """A destination file with the source's size but another mtime was not
    put there by the dead copy process, so the cancel applies."""
    queue_dir, ids = _crash_with_handout(tmp_path, ("file.txt",), ("file.txt",))
    action_id = ids["file.txt"]
    _put_in_place(tmp_path, "file.txt")
    os.utime(tmp_path / "out" / "file.txt", ns=(0, 0))

    with StorageQueue(name=queue_dir) as queue:
        reopened = queue.get_action(action_id).status

    assert reopened == "canceled"
    assert os.stat(tmp_path / "out" / "file.txt").st_mtime_ns == 0
    assert os.listdir(queue_dir / inbox.INBOX_DIR) == []


def test_handout_unchecked_spared_after_crash(tmp_path: Path) -> None:
    """A destination that stat cannot check (a symbolic link to itself, so
    stat fails with ELOOP) may be a finished copy: the cancel is dropped
    and the copy waits."""
    queue_dir, ids = _crash_with_handout(tmp_path, ("file.txt",), ("file.txt",))
    action_id = ids["file.txt"]
    os.symlink("file.txt", tmp_path / "out" / "file.txt")

    with StorageQueue(name=queue_dir) as queue:
        reopened = queue.get_action(action_id).status

    assert reopened == "waiting"
    assert os.listdir(queue_dir / inbox.INBOX_DIR) == []


def test_handout_without_cancel_after_crash(tmp_path: Path) -> None:
    """A handed-out copy that no cancel names waits again after a crash, its
    temporary file removed, and the run copies it."""
    queue_dir, ids = _crash_with_handout(tmp_path, ("file.txt",), ())
    action_id = ids["file.txt"]
    temporary = _cut_off(tmp_path, "file.txt", action_id)

    with StorageQueue(name=queue_dir) as queue:
        reopened = queue.get_action(action_id)
        swept = not os.path.exists(temporary)
        summary = queue.run()
        ran = queue.get_action(action_id).status

    assert reopened.status == "waiting"
    assert reopened.attempts == 0
    assert swept
    assert ran == "completed"
    assert summary.copied == 1
    assert (tmp_path / "out" / "file.txt").read_text() == "content of file.txt"


def test_handout_cancel_survives_crash_at_open(tmp_path: Path) -> None:
    """An open killed after the cancels it decided are durable, before it
    removes their request, delivers the request again. The copy found in
    place is still in progress then, so the next open decides its cancel
    again instead of canceling a waiting copy."""
    names = ("gone", "kept", "other")
    queue_dir, ids = _crash_with_handout(tmp_path, names, ("gone", "kept"))
    _cut_off(tmp_path, "gone", ids["gone"])
    _put_in_place(tmp_path, "kept")
    script = f"from journalq import StorageQueue\nStorageQueue(name={str(queue_dir)!r})"

    killed = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "JOURNALQ_CRASH_AT": "journal.after_sync:1"},
        capture_output=True,
        text=True,
        check=False,
    )
    between = read_state(queue_dir).actions
    requests = os.listdir(queue_dir / inbox.INBOX_DIR)
    with StorageQueue(name=queue_dir) as queue:
        reopened = {name: queue.get_action(ids[name]).status for name in names}
        summary = queue.run()
        ran = {name: queue.get_action(ids[name]).status for name in names}

    assert killed.returncode == -9, killed.stderr
    assert between[ids["gone"]].status is Status.CANCELED
    assert between[ids["kept"]].status is Status.INPROGRESS
    assert between[ids["other"]].status is Status.INPROGRESS
    assert len(requests) == 1
    assert reopened == {"gone": "canceled", "kept": "waiting", "other": "waiting"}
    assert os.listdir(queue_dir / inbox.INBOX_DIR) == []
    assert ran == {"gone": "canceled", "kept": "completed", "other": "completed"}
    assert summary.copied == 1
    assert summary.skipped == 1
    assert not (tmp_path / "out" / "gone").exists()


def test_started_spared_after_crash(tmp_path: Path) -> None:
    """A cancel of a copy that the killed run had started itself, not
    handed out, is dropped at the next open: the copy waits again, with
    the crash counted."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "file.txt").write_text("content")
    queue_dir = tmp_path / "queue"
    with StorageQueue(tmp_path / "src", tmp_path / "out", queue_dir) as queue:
        action_id = queue.copy_file("file.txt", "file.txt")
    store = QueueStore.open(queue_dir)
    try:
        assert store.start(action_id, Started(action_id, 1, time.time_ns()))
        store.flush()
    finally:
        store.close()
    inbox.post(queue_dir, encode_batch([Canceled(action_id)]))

    with StorageQueue(name=queue_dir) as queue:
        reopened = queue.get_action(action_id)

    assert reopened.status == "waiting"
    assert reopened.attempts == 1
    assert os.listdir(queue_dir / inbox.INBOX_DIR) == []


def test_handout_cancel_posted_twice(tmp_path: Path) -> None:
    """Two requests that cancel the same handed-out copy are both decided
    and removed at the next open. A request left in the inbox would cancel
    the file at a later open, once it waits."""
    queue_dir, ids = _crash_with_handout(tmp_path, ("file.txt",), ("file.txt",))
    action_id = ids["file.txt"]
    _put_in_place(tmp_path, "file.txt")
    inbox.post(queue_dir, encode_batch([Canceled(action_id)]))

    with StorageQueue(name=queue_dir) as queue:
        reopened = queue.get_action(action_id).status
        requests = os.listdir(queue_dir / inbox.INBOX_DIR)
    with StorageQueue(name=queue_dir) as queue:
        again = queue.get_action(action_id).status

    assert reopened == "waiting"
    assert requests == []
    assert again == "waiting"


def test_stop_recalls_handed_out_files(tmp_path: Path) -> None:
    """A stop makes the copy process hand back the files it has not started.

    The copy process waits in the FIFO's open at the start of the second
    batch when the first outcome is journaled. The run is asked to stop
    then, and the FIFO opens only once the inbox's mtime has moved, which
    is what makes the copy process hand back the rest of its batches.
    """
    source = source_tree(tmp_path)
    queue_dir = tmp_path / "q"
    inbox_dir = str(queue_dir / inbox.INBOX_DIR)
    stop = threading.Event()
    moved: list[bool] = []
    feeder = contextlib.ExitStack()

    with StorageQueue(source, tmp_path / "dst", queue_dir, parallelism=1) as queue:
        first_batch, second_batch, blocking = block_second_batch(queue)
        before = copier.inbox_mtime(inbox_dir)

        def stop_once(event: Event) -> None:
            if stop.is_set():
                return
            stop.set()
            deadline = time.monotonic() + 10
            while copier.inbox_mtime(inbox_dir) == before:
                if time.monotonic() > deadline:
                    moved.append(False)
                    break
                time.sleep(0.005)
            else:
                moved.append(True)
            feeder.enter_context(fifo_feeder(Path(blocking)))

        with feeder:
            summary = queue.run(on_event=stop_once, event_types={"started"}, stop=stop)

    state = read_state(queue_dir)
    statuses = {action.action_id: action.status for action in state.actions.values()}
    assert moved == [True]
    assert summary.interrupted
    assert {statuses[action.action_id] for action in first_batch} == {Status.COMPLETED}
    assert {statuses[action.action_id] for action in second_batch[1:]} == {
        Status.WAITING
    }
    for action in second_batch[1:]:
        _, destination = state.paths(action)
        assert destination is not None
        assert not os.path.exists(destination), destination
