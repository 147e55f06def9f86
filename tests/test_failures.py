"""Failed actions: dropped by ``cancel``, replaced by the same request, retried."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from journalq import StorageQueue, inbox
from journalq.records import Canceled, encode_batch
from journalq.replay import Status
from journalq.store import QueueStore, read_state


def _failed_tree(tmp_path: Path, missing: tuple[str, ...]) -> tuple[Path, Path]:
    """Return a source tree with a dangling link per name in ``missing``.

    The tree also has one regular file, ``a.txt``.
    """
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("a")
    for name in missing:
        (source / name).symlink_to(tmp_path / f"{name}.target")
    return source, tmp_path / "queue"


@contextlib.contextmanager
def copied_tree(
    tmp_path: Path, missing: tuple[str, ...]
) -> Iterator[tuple[StorageQueue, str]]:
    """Copy a tree made by :func:`_failed_tree` once; yield the queue and tree id."""
    source, queue_dir = _failed_tree(tmp_path, missing)
    with StorageQueue(source, tmp_path / "dst", queue_dir) as queue:
        tree = queue.copy_tree("", "")
        queue.run()
        yield queue, tree


def _statuses(queue: StorageQueue) -> dict[str, str]:
    return {action.id: action.status for action in queue.get_actions()}


def test_cancel_failed_file_completes_tree(tmp_path: Path) -> None:
    with copied_tree(tmp_path, ("gone",)) as (queue, tree):
        (failed,) = [a.id for a in queue.get_actions("failed") if a.id != tree]

        canceled = queue.cancel(failed)
        statuses = _statuses(queue)
        summary = queue.run()

    assert canceled == [failed]
    assert statuses[failed] == "canceled"
    assert statuses[tree] == "completed"
    assert summary.failed == 0
    state = read_state(tmp_path / "queue")
    assert state.counts[Status.FAILED] == 0
    assert state.actions[tree].status is Status.COMPLETED


def test_cancel_one_of_two_failed_files(tmp_path: Path) -> None:
    with copied_tree(tmp_path, ("gone", "lost")) as (queue, tree):
        first, second = [a.id for a in queue.get_actions("failed") if a.id != tree]

        queue.cancel(first)
        tree_info = queue.get_action(tree)

    assert tree_info.status == "failed"
    assert tree_info.error is not None
    assert "1 of 3 items failed" in tree_info.error
    assert read_state(tmp_path / "queue").actions[second].status is Status.FAILED


def test_cancel_then_retry_counts_attempt(tmp_path: Path) -> None:
    """A cancel adds no attempt to the tree, a run of a retried item does."""
    with copied_tree(tmp_path, ("gone", "lost")) as (queue, tree):
        items = {
            Path(a.source or "").name: a.id
            for a in queue.get_actions("failed")
            if a.id != tree
        }
        (tmp_path / "lost.target").write_text("found")

        queue.cancel(items["gone"])
        after_cancel = queue.get_action(tree)
        queue.retry()
        summary = queue.run()
        after_run = queue.get_action(tree)

    assert after_cancel.status == "failed"
    assert after_cancel.attempts == 1
    assert summary.failed == 0
    assert after_run.status == "completed"
    assert after_run.attempts == 2


def test_cancel_failed_tree_drops_items(tmp_path: Path) -> None:
    with copied_tree(tmp_path, ("gone", "lost")) as (queue, tree):
        failed = sorted(a.id for a in queue.get_actions("failed"))

        canceled = queue.cancel(tree)
        status = queue.status()

    assert sorted(canceled) == failed
    assert status["failed"] == 0
    assert status["canceled"] == 3
    assert status["completed"] == 1


def test_cancel_all_leaves_failed(tmp_path: Path) -> None:
    with copied_tree(tmp_path, ("gone",)) as (queue, _):
        canceled = queue.cancel()
        status = queue.status()

    assert canceled == []
    assert status["failed"] == 2


def test_missing_source_error_names_cancel(tmp_path: Path) -> None:
    with copied_tree(tmp_path, ("gone",)) as (queue, _):
        (link,) = [a for a in queue.get_actions("failed") if a.kind == "copy_file"]
        os.unlink(tmp_path / "src" / "gone")
        queue.retry()
        queue.run()
        again = queue.get_action(link.id)

    assert link.error is not None
    assert "points to" in link.error
    cancel = f"`journalq cancel {link.id} --queue {queue.directory}`"
    assert f"drop this action with {cancel}" in link.error
    assert again.status == "failed"
    assert again.error is not None
    assert again.error.startswith(
        f"FileNotFoundError: source file not found: {tmp_path / 'src' / 'gone'}; "
    )
    assert cancel in again.error


def test_request_added_again_replaces_failed(tmp_path: Path) -> None:
    with copied_tree(tmp_path, ("gone",)) as (queue, old_tree):
        old_failed = sorted(a.id for a in queue.get_actions("failed"))
        os.unlink(tmp_path / "src" / "gone")

        new_tree = queue.copy_tree("", "")
        summary = queue.run()
        statuses = _statuses(queue)
        retried = queue.retry()

    assert new_tree != old_tree
    assert old_tree in old_failed
    assert summary.failed == 0
    assert {statuses[action_id] for action_id in old_failed} == {"canceled"}
    assert statuses[new_tree] == "completed"
    assert retried == []
    history = read_state(tmp_path / "queue").actions[old_tree]
    assert history.status is Status.CANCELED


def test_file_added_again_replaces_failed(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    queue_dir = tmp_path / "queue"
    with StorageQueue(source, tmp_path / "dst", queue_dir) as queue:
        first = queue.copy_file("late.txt", "late.txt")
        queue.run()
        (source / "late.txt").write_text("here now")
        second = queue.copy_file("late.txt", "late.txt")
        summary = queue.run()
        statuses = _statuses(queue)

    assert second != first
    assert statuses == {first: "canceled", second: "completed"}
    assert summary.copied == 1
    assert (tmp_path / "dst" / "late.txt").read_text() == "here now"


def test_handed_off_cancel_drops_failed(tmp_path: Path) -> None:
    """A cancel from the inbox drops a failed action, as a direct one does."""
    source, queue_dir = _failed_tree(tmp_path, ())
    with StorageQueue(source, tmp_path / "dst", queue_dir) as queue:
        action_id = queue.copy_file("missing.txt", "missing.txt")
        queue.run()
        before = queue.get_action(action_id).status
    store = QueueStore.open(queue_dir)
    try:
        inbox.post(queue_dir, encode_batch([Canceled(action_id, "user")]))
        store.drain_inbox()
        drained = store.state.actions[action_id].status
    finally:
        store.close()

    assert before == "failed"
    assert drained is Status.CANCELED
    assert read_state(queue_dir).actions[action_id].status is Status.CANCELED
