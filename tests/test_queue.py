"""StorageQueue end to end on real local files and the memory filesystem."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from tree_helpers import read_tree

from journalq import (
    ActionError,
    BatchError,
    QueueError,
    QueueLockedError,
    StorageQueue,
)
from journalq.events import EventType
from journalq.store import read_state

NAMES = [
    "plain.txt",
    "with space.txt",
    " leading space.txt",
    "sym+%#?&$@:~;.txt",
    "ünïcödé.txt",
    unicodedata.normalize("NFC", "café.txt"),
    unicodedata.normalize("NFD", "café.txt"),
    "empty.bin",
    "nested/deeper/file.dat",
]


def make_tree(root: Path) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    for index, name in enumerate(NAMES):
        data = b"" if name == "empty.bin" else f"{index}:{name}\n".encode() * 50
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        contents[name] = data
    (root / "empty-dir").mkdir()
    return contents


class CredentialMemoryFileSystem(MemoryFileSystem):
    """The memory filesystem with the credential options of s3fs.

    Secret storage options are rejected by a filesystem that does not take
    them, so the tests of secrets need one that does.
    """

    protocol = ("credmem",)

    def __init__(
        self,
        *args: Any,
        key: str | None = None,
        secret: str | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        if path.startswith("credmem://"):
            path = "memory://" + path.removeprefix("credmem://")
        return super()._strip_protocol(path)


fsspec.register_implementation("credmem", CredentialMemoryFileSystem, clobber=True)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    make_tree(root)
    return root


@pytest.fixture
def dst(tmp_path: Path) -> Path:
    return tmp_path / "dst"


@pytest.fixture
def queue_dir(tmp_path: Path) -> Path:
    return tmp_path / "queue"


def test_copy_tree_copies_every_file(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_tree(str(src), str(dst))
        summary = queue.run()
        status = queue.status()
    assert read_tree(dst) == read_tree(src)
    assert (dst / "empty-dir").is_dir()
    assert summary.failed == 0
    assert summary.copied == len(NAMES)
    assert status["failed"] == 0
    assert status["waiting"] == 0
    assert status["completed"] == status["length"]


def test_nfc_and_nfd_names_stay_distinct(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_tree(str(src), str(dst))
        queue.run()
    names = set(os.listdir(dst))
    assert unicodedata.normalize("NFC", "café.txt") in names
    assert unicodedata.normalize("NFD", "café.txt") in names


def test_second_sync_copies_nothing(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.sync(str(src), str(dst))
        first = queue.run()
        queue.sync(str(src), str(dst))
        second = queue.run()
    assert first.copied == len(NAMES)
    assert second.copied == 0
    assert second.bytes == 0
    assert second.skipped == len(NAMES)


def test_second_sync_makes_no_directories(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.sync(str(src), str(dst))
        queue.run()
        made = len([a for a in queue.get_actions() if a.kind == "mkdir"])
        queue.sync(str(src), str(dst))
        second = queue.run()
        actions = queue.get_actions()
    # Every directory exists after the first sync, so the second adds no mkdir.
    assert made == 3
    assert len([a for a in actions if a.kind == "mkdir"]) == made
    assert second.done == 0


def test_same_size_different_content_is_copied(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.sync(str(src), str(dst))
        queue.run()
        target = dst / "plain.txt"
        original = target.read_bytes()
        target.write_bytes(bytes(reversed(original)))
        queue.sync(str(src), str(dst))
        summary = queue.run()
    assert target.read_bytes() == original
    assert summary.copied == 1


def test_rerun_of_tree_never_nests(src, dst, queue_dir):
    for _ in range(2):
        with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
            queue.copy_tree(str(src), str(dst))
            queue.run()
    assert not (dst / "src").exists()
    assert read_tree(dst) == read_tree(src)


@pytest.mark.parametrize("method", ["copy_tree", "sync"])
def test_empty_source_tree_makes_its_root(tmp_path, dst, queue_dir, method):
    """cp -r and rsync make the copy of an empty folder; so does journalq."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with StorageQueue(str(empty), str(dst), name=str(queue_dir)) as queue:
        getattr(queue, method)(str(empty), str(dst / "copy"))
        summary = queue.run()
        counts = queue.status()
    assert summary.ok
    assert counts["completed"] == 1
    assert (dst / "copy").is_dir()
    assert list((dst / "copy").iterdir()) == []


def test_empty_source_tree_dry_run_makes_nothing(tmp_path, dst, queue_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with StorageQueue(str(empty), str(dst), name=str(queue_dir)) as queue:
        queue.copy_tree(str(empty), str(dst))
        queue.run(dry_run=True)
    assert not dst.exists()


def test_dry_run_summary_has_failures(tmp_path, dst, queue_dir):
    """A dry run journals no failure but reports those a real run would have."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a")
    (src / "gone.txt").symlink_to(tmp_path / "nowhere")
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_tree(str(src), str(dst))
        summary = queue.run(dry_run=True)
        counts = queue.status()

    assert summary.failed == 1
    (failure,) = summary.failures
    assert failure.source == str(src / "gone.txt")
    assert failure.status == "failed"
    assert failure.attempts == 1
    assert (failure.error or "").startswith("FileNotFoundError: ")
    assert counts["failed"] == 0
    assert counts["waiting"] == 3


def test_empty_tree_root_blocked_by_file(tmp_path, dst, queue_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with StorageQueue(str(empty), str(dst), name=str(queue_dir)) as queue:
        tree = queue.copy_tree(str(empty), str(dst / "copy"))
        # A file where the destination's parent folder goes, after the add.
        dst.write_bytes(b"not a folder")
        summary = queue.run()
        [failed] = queue.get_actions("failed")
    assert not summary.ok
    assert failed.id == tree
    assert "cannot make the destination directory" in (failed.error or "")


def test_sync_delete_removes_extraneous(src, dst, queue_dir):
    dst.mkdir()
    (dst / "stale.txt").write_bytes(b"old")
    (dst / "stale-dir" / "inner").mkdir(parents=True)
    (dst / "stale-dir" / "inner" / "x").write_bytes(b"x")
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.sync(str(src), str(dst), delete=True)
        summary = queue.run()
        actions = queue.get_actions("completed")
    assert summary.failed == 0
    assert not (dst / "stale.txt").exists()
    assert not (dst / "stale-dir").exists()
    assert read_tree(dst) == read_tree(src)
    deletes = [action for action in actions if action.kind == "delete"]
    mkdirs = [action for action in actions if action.kind == "mkdir"]
    assert len(deletes) == 4
    assert summary.deleted == len(deletes)
    assert summary.done == len(deletes) + len(mkdirs)
    assert summary.to_dict()["deleted"] == len(deletes)


def test_summary_counts_delete_actions(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.mkdir("destination", str(dst / "made"))
        mkdir_run = queue.run()
        queue.delete("destination", str(dst / "made"), recursive=True)
        queue.delete("destination", str(dst / "never-existed"))
        deleted = queue.run()
    assert mkdir_run.deleted == 0
    assert mkdir_run.done == 1
    assert deleted.deleted == 2
    assert deleted.done == 2


def test_sync_delete_from_empty_source_is_refused(tmp_path, dst, queue_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    dst.mkdir()
    (dst / "keep.txt").write_bytes(b"keep")
    with StorageQueue(str(empty), str(dst), name=str(queue_dir)) as queue:
        with pytest.raises(ActionError, match="has no files") as raised:
            queue.sync(str(empty), str(dst), delete=True)
        assert "would remove the only item under" in str(raised.value)
        assert queue.status()["length"] == 0
        queue.sync(str(empty), str(dst), delete=True, force=True)
        queue.run()
    assert not (dst / "keep.txt").exists()


def test_sync_delete_from_directories_only_is_refused(tmp_path, dst, queue_dir):
    """A source of empty directories, as a fresh filesystem's lost+found."""
    source = tmp_path / "fresh"
    (source / "lost+found").mkdir(parents=True)
    dst.mkdir()
    for name in ("a.txt", "b.txt"):
        (dst / name).write_bytes(b"keep")
    with StorageQueue(str(source), str(dst), name=str(queue_dir)) as queue:
        with pytest.raises(ActionError, match="has no files") as raised:
            queue.sync(str(source), str(dst), delete=True)
        assert queue.status()["length"] == 0
    assert "would remove all 2 items" in str(raised.value)
    assert sorted(os.listdir(dst)) == ["a.txt", "b.txt"]


def test_max_delete_aborts_before_any_delete(src, dst, queue_dir):
    dst.mkdir()
    for index in range(5):
        (dst / f"stale{index}").write_bytes(b"s")
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        with pytest.raises(ActionError, match="more than the maximum of 2"):
            queue.sync(str(src), str(dst), delete=True, max_delete=2)
        assert queue.status()["length"] == 0
    assert len(list(dst.iterdir())) == 5


def test_missing_source_root_adds_nothing(tmp_path, dst, queue_dir):
    missing = tmp_path / "missing"
    with StorageQueue(str(tmp_path), str(dst), name=str(queue_dir)) as queue:
        with pytest.raises(ActionError, match="not found"):
            queue.sync(str(missing), str(dst), delete=True)
        assert queue.status()["length"] == 0


def test_overlapping_trees_rejected(src, queue_dir):
    with StorageQueue(str(src), str(src), name=str(queue_dir)) as queue:
        with pytest.raises(ActionError, match="overlaps"):
            queue.copy_tree(str(src), str(src / "inside"))


@pytest.mark.parametrize(
    "outside",
    ["/etc", "../elsewhere", "sub/../../elsewhere", "{src}-sibling"],
)
def test_path_outside_the_root_is_rejected(src, dst, queue_dir, outside):
    """A queue opened on a directory acts below it, as an rclone remote does."""
    outside = outside.format(src=src)
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        with pytest.raises(ActionError, match="outside") as caught:
            queue.sync(outside, str(dst))
        with pytest.raises(ActionError, match="outside"):
            queue.copy_file("a.txt", "/tmp/elsewhere.txt")
        with pytest.raises(ActionError, match="outside"):
            queue.delete("destination", str(dst) + "-sibling", recursive=True)
        assert queue.status()["length"] == 0
    assert caught.value.value == outside


def test_link_out_of_the_root_is_rejected(tmp_path, src, dst, queue_dir):
    """A link under the root that leads out of it counts as outside."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not for this queue")
    (src / "escape").symlink_to(outside)
    (src / "inside").symlink_to(src / "nested")
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        with pytest.raises(ActionError, match="outside"):
            queue.copy_tree("escape", "escape")
        queue.copy_tree("inside", "inside")
        summary = queue.run()
    assert summary.ok
    assert not (dst / "escape").exists()
    assert read_tree(dst / "inside") == read_tree(src / "nested")


def test_paths_at_and_below_the_root_are_taken(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_tree(str(src), str(dst))
        queue.copy_file("empty.bin", "copies/empty.bin")
        queue.mkdir("destination", "made")
        summary = queue.run()
    assert summary.ok
    assert (dst / "copies" / "empty.bin").exists()
    assert (dst / "made").is_dir()


def test_memory_root_confines_paths(queue_dir):
    with StorageQueue(
        "memory://confined/src", "memory://confined/dst", name=str(queue_dir)
    ) as queue:
        with pytest.raises(ActionError, match="outside"):
            queue.copy_tree("memory://confined/other", "memory://confined/dst")
        queue.mkdir("destination", "memory://confined/dst/inside")


def test_dangling_symlink_fails_alone(src, dst, queue_dir):
    (src / "dangling").symlink_to(src / "nowhere")
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_tree(str(src), str(dst))
        summary = queue.run()
        failed = queue.get_actions("failed")
    assert summary.failed == 1
    failed_files = [a for a in failed if a.kind == "copy_file"]
    assert len(failed_files) == 1
    assert failed_files[0].source.endswith("dangling")
    assert "FileNotFoundError" in (failed_files[0].error or "")
    assert (dst / "plain.txt").exists()


def test_copy_file_skips_identical(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_file(str(src / "plain.txt"), str(dst / "copy.txt"))
        first = queue.run()
        queue.copy_file(str(src / "plain.txt"), str(dst / "copy.txt"))
        second = queue.run()
    assert first.copied == 1
    assert second.skipped == 1
    assert (dst / "copy.txt").read_bytes() == (src / "plain.txt").read_bytes()


def test_pending_duplicate_add_returns_same_id(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        first = queue.copy_file(str(src / "plain.txt"), str(dst / "a"))
        second = queue.copy_file(str(src / "plain.txt"), str(dst / "a"))
        assert first == second
        assert queue.status()["length"] == 1


def test_compare_size_skips_same_size(src, dst, queue_dir):
    dst.mkdir()
    (dst / "plain.txt").write_bytes(b"x" * (src / "plain.txt").stat().st_size)
    with StorageQueue(str(src), str(dst), name=str(queue_dir), compare="size") as q:
        q.copy_file(str(src / "plain.txt"), str(dst / "plain.txt"))
        summary = q.run()
    assert summary.skipped == 1


def test_compare_always_copies(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_file(str(src / "plain.txt"), str(dst / "plain.txt"))
        queue.run()
        queue.copy_file(str(src / "plain.txt"), str(dst / "plain.txt"))
        summary = queue.run(compare="always")
    assert summary.copied == 1


def test_unknown_compare_rejected(src, dst, queue_dir):
    with pytest.raises(ActionError, match="checksum"):
        StorageQueue(str(src), str(dst), name=str(queue_dir), compare="md6")


def test_cancel_all_waiting(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_tree(str(src), str(dst))
        canceled = queue.cancel()
        summary = queue.run()
        status = queue.status()
    assert canceled
    assert summary.copied == 0
    assert status["canceled"] == len(canceled)
    assert not dst.exists() or not any(dst.rglob("*.txt"))


def test_cancel_survives_reopen(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        keep = queue.copy_file(str(src / "plain.txt"), str(dst / "a"))
        drop = queue.copy_file(str(src / "plain.txt"), str(dst / "b"))
        queue.cancel(drop)
    with StorageQueue(name=str(queue_dir)) as queue:
        queue.run()
        assert queue.get_action(drop).status == "canceled"
        assert queue.get_action(keep).status == "completed"
    assert not (dst / "b").exists()


def test_cancel_unknown_id_rejected(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        with pytest.raises(ActionError, match="no action"):
            queue.cancel("0123456789abcdef")


def test_mkdir_and_delete(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.mkdir("destination", str(dst / "made"))
        queue.run()
        assert (dst / "made").is_dir()
        queue.delete("destination", str(dst / "made"), recursive=True)
        queue.delete("destination", str(dst / "never-existed"))
        summary = queue.run()
    assert summary.failed == 0
    assert not (dst / "made").exists()


def test_bad_service_rejected(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        with pytest.raises(ActionError, match="'source' or 'destination'"):
            queue.mkdir("elsewhere", "/x")


def test_list_result_is_stored(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        listing = queue.list(str(src), recursive=True)
        queue.run()
        entries = queue.list_result(listing)
    names = {os.path.relpath(entry["name"], src) for entry in entries}
    assert "nested/deeper/file.dat" in names
    assert "nested" in names


def test_list_dir_only(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        listing = queue.list(str(src), dir_only=True)
        queue.run()
        entries = queue.list_result(listing)
    assert {entry["type"] for entry in entries} == {"directory"}


def test_retry_failed_after_fix(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_file(str(src / "later.txt"), str(dst / "later.txt"))
        assert queue.run().failed == 1
        (src / "later.txt").write_bytes(b"now here")
        new_ids = queue.retry()
        summary = queue.run()
    assert len(new_ids) == 1
    assert summary.copied == 1
    assert (dst / "later.txt").read_bytes() == b"now here"


def test_retry_keeps_id_and_clears_failure(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        failed = queue.copy_file(str(src / "later.txt"), str(dst / "later.txt"))
        queue.run()
        (src / "later.txt").write_bytes(b"now here")
        assert queue.retry() == [failed]
        assert queue.retry() == []
        queue.run()
        status = queue.status()
        info = queue.get_action(failed)
    assert info.status == "completed"
    assert info.attempts == 2
    assert status["failed"] == 0
    assert status["length"] == 1


def test_retry_reopens_failed_tree(src, dst, queue_dir):
    (src / "dangling").symlink_to(src / "nowhere")
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        tree = queue.copy_tree(str(src), str(dst))
        queue.run()
        assert queue.get_action(tree).status == "failed"
        (src / "nowhere").write_bytes(b"target now exists")
        queue.retry()
        summary = queue.run()
        assert queue.get_action(tree).status == "completed"
    assert summary.failed == 0
    assert (dst / "dangling").read_bytes() == b"target now exists"


def test_events_reported(src, dst, queue_dir):
    events = []
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_tree(str(src), str(dst))
        queue.run(on_event=events.append)
    types = {event.type for event in events}
    assert EventType.STARTED in types
    assert EventType.COMPLETED in types
    completed = [e for e in events if e.type is EventType.COMPLETED]
    assert any(e.kind == "copy_file" and e.bytes > 0 for e in completed)


def test_run_iter_yields_events(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_tree(str(src), str(dst))
        kinds = [event.type for event in queue.run_iter()]
    assert kinds.count(EventType.STARTED) >= len(NAMES)


def test_action_executes_one_specification(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        other = queue.copy_file(str(src / "plain.txt"), str(dst / "other"))
        info = queue.action(
            {
                "kind": "copy_file",
                "source": str(src / "plain.txt"),
                "destination": str(dst / "now"),
            }
        )
        assert info.status == "completed"
        assert queue.get_action(other).status == "waiting"
    assert (dst / "now").exists()


def test_add_rejects_bad_specification(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        with pytest.raises(ActionError, match="unknown action kind"):
            queue.add({"kind": "teleport"})
        with pytest.raises(ActionError, match="'destination'"):
            queue.add({"kind": "copy_file", "source": "a"})


def test_add_all_rejected_adds_nothing(src, dst, queue_dir, tmp_path):
    batch = [
        {"kind": "copy_file", "source": str(src / "plain.txt"), "destination": "a"},
        {"kind": "copy_tree", "source": str(src), "destination": str(dst / "t")},
        {"kind": "mkdir", "path": str(dst / "new")},
        {"kind": "sync", "source": str(tmp_path / "missing"), "destination": "m"},
    ]
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        with pytest.raises(BatchError) as raised:
            queue.add_all(batch)
        length = queue.status()["length"]
    error = raised.value

    assert error.index == 3
    assert isinstance(error.error, ActionError)
    assert error.error.value == str(tmp_path / "missing")
    assert "action 4 of the batch" in str(error)
    assert "no action of the batch was added" in str(error)
    assert length == 0
    assert read_state(queue_dir).actions == {}


def test_add_all_adds_every_action(src, dst, queue_dir):
    tree = {"kind": "copy_tree", "source": str(src), "destination": str(dst / "t")}
    batch = [
        tree,
        {"kind": "copy_file", "source": str(src / "plain.txt"), "destination": "a"},
        tree,
    ]
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        ids = queue.add_all(batch)
        again = queue.add_all(batch)
        summary = queue.run()

    assert ids[0] == ids[2]
    assert again == ids
    assert summary.failed == 0
    assert (dst / "a").read_bytes() == (src / "plain.txt").read_bytes()
    assert read_tree(dst / "t") == read_tree(src)


def test_reopen_with_other_source_rejected(src, dst, queue_dir, tmp_path):
    StorageQueue(str(src), str(dst), name=str(queue_dir)).close()
    with pytest.raises(ActionError, match="created with the source"):
        StorageQueue(str(tmp_path), str(dst), name=str(queue_dir))


def test_memory_to_local(tmp_path, queue_dir):
    memory = fsspec.filesystem("memory")
    memory.store.clear()
    memory.pipe({"/mem/a.txt": b"alpha", "/mem/sub/b.txt": b"beta"})
    target = tmp_path / "out"
    with StorageQueue("memory://", str(target), name=str(queue_dir)) as queue:
        queue.copy_tree("/mem", str(target))
        summary = queue.run()
    assert summary.copied == 2
    assert (target / "sub" / "b.txt").read_bytes() == b"beta"


def test_local_to_memory_twice(src, queue_dir):
    memory = fsspec.filesystem("memory")
    memory.store.clear()
    with StorageQueue(str(src), "memory://", name=str(queue_dir)) as queue:
        queue.sync(str(src), "/backup")
        first = queue.run()
        queue.sync(str(src), "/backup")
        second = queue.run()
    assert first.copied == len(NAMES)
    assert second.copied == 0
    assert (
        memory.cat("/backup/nested/deeper/file.dat")
        == (src / "nested/deeper/file.dat").read_bytes()
    )


def test_secret_options_never_written(tmp_path, queue_dir):
    options = {"key": "AKIA-SECRET-1", "secret": "s3cr3t-value", "global_store": True}
    with StorageQueue(
        "credmem://",
        "credmem://",
        name=str(queue_dir),
        destination_options={"token": "tok-SECRET-2"},
        source_options=options,
    ):
        pass
    for path in queue_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (b"AKIA-SECRET-1", b"s3cr3t-value", b"tok-SECRET-2"):
                assert secret not in data, path


def test_queue_directory_private(src, dst, queue_dir):
    StorageQueue(str(src), str(dst), name=str(queue_dir)).close()
    assert queue_dir.stat().st_mode & 0o077 == 0


HOLDER = textwrap.dedent(
    """
    import sys, time
    from journalq import StorageQueue
    queue = StorageQueue(sys.argv[1], sys.argv[2], name=sys.argv[3])
    print("ready", flush=True)
    sys.stdin.readline()
    queue.run()
    queue.close()
    """
)


def test_add_while_another_process_holds_queue(src, dst, queue_dir):
    StorageQueue(str(src), str(dst), name=str(queue_dir)).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(src), str(dst), str(queue_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with StorageQueue(name=str(queue_dir)) as queue:
            assert queue.handoff
            queue.copy_file(str(src / "plain.txt"), str(dst / "handed.txt"))
            with pytest.raises(QueueLockedError) as raised:
                queue.run()
            assert raised.value.pid == holder.pid
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.wait(timeout=60) == 0
    finally:
        holder.kill()
    assert (dst / "handed.txt").read_bytes() == (src / "plain.txt").read_bytes()
    state = read_state(queue_dir)
    assert state.status_counts()["completed"] == 1


def test_crash_during_expansion_expands_again(src, dst, queue_dir):
    script = textwrap.dedent(
        """
        import sys
        from journalq import StorageQueue, queue
        queue.EXPANSION_CHUNK = 3
        q = StorageQueue(sys.argv[1], sys.argv[2], name=sys.argv[3])
        q.copy_tree(sys.argv[1], sys.argv[2])
        """
    )
    env = dict(os.environ, JOURNALQ_CRASH_AT="queue.expansion_chunk:2")
    result = subprocess.run(
        [sys.executable, "-c", script, str(src), str(dst), str(queue_dir)],
        env=env,
        check=False,
    )
    assert result.returncode == -9
    with StorageQueue(name=str(queue_dir)) as queue:
        summary = queue.run()
        ids = [a.id for a in queue.get_actions()]
    assert len(ids) == len(set(ids))
    assert summary.failed == 0
    assert read_tree(dst) == read_tree(src)


def test_crashed_attempts_resume(src, dst, queue_dir):
    script = textwrap.dedent(
        """
        import sys
        from journalq import StorageQueue
        q = StorageQueue(sys.argv[1], sys.argv[2], name=sys.argv[3], parallelism=1)
        q.copy_tree(sys.argv[1], sys.argv[2])
        q.run()
        """
    )
    env = dict(os.environ, JOURNALQ_CRASH_AT="transfer.before_rename:3")
    result = subprocess.run(
        [sys.executable, "-c", script, str(src), str(dst), str(queue_dir)],
        env=env,
        check=False,
    )
    assert result.returncode == -9
    started = time.monotonic()
    with StorageQueue(name=str(queue_dir)) as queue:
        summary = queue.run()
    assert time.monotonic() - started < 30
    assert summary.failed == 0
    assert read_tree(dst) == read_tree(src)
    assert not list(dst.rglob(".*.jq-*.tmp"))


def test_read_only_open_takes_no_lock(src, dst, queue_dir):
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as owner:
        owner.copy_file(str(src / "plain.txt"), str(dst / "a"))
        with StorageQueue(name=str(queue_dir), read_only=True) as reader:
            assert reader.status()["waiting"] == 1
            with pytest.raises(QueueError, match="read-only"):
                reader.copy_file(str(src / "plain.txt"), str(dst / "b"))
        owner.run()
    assert StorageQueue(name=str(queue_dir), read_only=True).status()["completed"] == 1


def test_compare_policy_kept_by_queue(src, dst, queue_dir):
    StorageQueue(str(src), str(dst), name=str(queue_dir), compare="size").close()
    with StorageQueue(name=str(queue_dir)) as queue:
        assert str(queue.policy) == "size"
    with StorageQueue(name=str(queue_dir), compare="always") as queue:
        assert str(queue.policy) == "always"


def test_directory_symlink_not_followed(src, dst, queue_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not part of the tree")
    (src / "up").symlink_to("..")
    (src / "away").symlink_to(outside)
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_tree(str(src), str(dst))
        summary = queue.run()
    assert summary.failed == 0
    assert not (dst / "up").exists()
    assert not (dst / "away").exists()
    assert read_tree(dst) == read_tree(src)


def test_file_symlink_copied_as_file(src, dst, queue_dir):
    (src / "link.txt").symlink_to(src / "plain.txt")
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_tree(str(src), str(dst))
        queue.run()
    assert not (dst / "link.txt").is_symlink()
    assert (dst / "link.txt").read_bytes() == (src / "plain.txt").read_bytes()


def test_queue_inside_destination_rejected(src, dst):
    dst.mkdir()
    with StorageQueue(str(src), str(dst), name=str(dst / ".queue")) as queue:
        with pytest.raises(ActionError, match="contains the queue directory"):
            queue.sync(str(src), str(dst), delete=True)
        with pytest.raises(ActionError, match="contains the queue directory"):
            queue.delete("destination", str(dst), recursive=True)
    assert (dst / ".queue" / "FORMAT").exists()


def test_queue_inside_source_rejected(src, dst):
    with StorageQueue(str(src), str(dst), name=str(src / ".queue")) as queue:
        with pytest.raises(ActionError, match="contains the queue directory"):
            queue.copy_tree(str(src), str(dst))


CANCELER = textwrap.dedent(
    """
    import sys
    from journalq import StorageQueue
    with StorageQueue(name=sys.argv[1]) as queue:
        assert queue.handoff
        print(queue.cancel(sys.argv[2]))
    """
)


def test_handed_off_cancel_reaches_running_queue(src, dst, queue_dir):
    fifo = src / "slow.fifo"
    os.mkfifo(fifo)
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_file(str(fifo), str(dst / "slow.fifo"))
        doomed = queue.copy_file(str(src / "plain.txt"), str(dst / "doomed.txt"))
        kept = queue.copy_file(str(src / "plain.txt"), str(dst / "kept.txt"))
        results = []
        runner = threading.Thread(target=lambda: results.append(queue.run()))
        runner.start()
        canceled = subprocess.run(
            [sys.executable, "-c", CANCELER, str(queue_dir), doomed],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        # Opening the FIFO for writing and closing it lets the blocked copy
        # read an empty file and the run go on to the other two actions.
        with open(fifo, "wb"):
            pass
        runner.join(timeout=60)
        assert doomed in canceled.stdout
        assert queue.get_action(doomed).status == "canceled"
        assert queue.get_action(kept).status == "completed"
    assert not (dst / "doomed.txt").exists()
    assert (dst / "kept.txt").exists()


def test_sync_delete_spares_other_queue(src, dst, queue_dir):
    dst.mkdir()
    other = dst / "other-queue"
    StorageQueue(str(src), str(dst / "x"), name=str(other)).close()
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.sync(str(src), str(dst), delete=True)
        summary = queue.run()
    assert summary.failed == 0
    assert (other / "FORMAT").exists()
    assert StorageQueue(name=str(other), read_only=True).status()["length"] == 0


def test_queue_inside_source_not_copied(src, dst, queue_dir):
    StorageQueue(str(src), str(dst), name=str(src / "nested-queue")).close()
    with StorageQueue(str(src), str(dst), name=str(queue_dir)) as queue:
        queue.copy_tree(str(src), str(dst))
        queue.run()
    assert not (dst / "nested-queue").exists()


def test_reopen_needs_secret_options_again(
    tmp_path: Path, memory_fs: fsspec.AbstractFileSystem
) -> None:
    memory_fs.pipe_file("/src/a.txt", b"a")
    options = {"token": "not-for-the-journal"}
    with StorageQueue(
        "credmem://src", "credmem://dst", tmp_path / "q", source_options=options
    ) as queue:
        queue.copy_file("a.txt", "a.txt")

    with pytest.raises(ActionError, match="--source-option token="):
        StorageQueue(name=tmp_path / "q")
    with StorageQueue(name=tmp_path / "q", read_only=True) as report:
        assert report.status()["waiting"] == 1
    with StorageQueue(name=tmp_path / "q", source_options=options) as queue:
        summary = queue.run()

    assert summary.copied == 1
    journal = b"".join(
        path.read_bytes() for path in (tmp_path / "q").rglob("*") if path.is_file()
    )
    assert b"not-for-the-journal" not in journal
