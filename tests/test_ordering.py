"""The order in which a run executes actions that touch the same paths.

Top-level actions whose paths overlap must run in the order they were
added, and the deletes of a sync that clear the way for a directory or a
file must run before the mkdir or copy that needs the path. The races run
on the memory filesystem with 4 threads, many times in one test, because a
wrong order shows up only in some runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from journalq import StorageQueue
from journalq.plan import rounds
from journalq.records import ActionAdded, Kind, Service

#: Runs of a race in one test, each with :data:`PAIRS` pairs of actions on
#: separate paths and :data:`OLD_FILES` files to delete per path. Without
#: the ordering, the mkdir test lost 32 to 35 of its 40 directories, and the
#: tree test failed copies in its first run (three runs on a 2-core VM).
REPETITIONS = 10
PAIRS = 4
OLD_FILES = 200


def old_files(roots: list[str]) -> dict[str, bytes]:
    """Return :data:`OLD_FILES` files under each root, to be deleted.

    Deleting that many takes a thread long enough that the other threads
    run meanwhile, which a single file did not.
    """
    return {
        f"{root}/old{number}.txt": b"old"
        for root in roots
        for number in range(OLD_FILES)
    }


def added(
    action_id: str,
    kind: Kind,
    *,
    source: str | None = None,
    destination: str | None = None,
    service: Service | None = None,
) -> ActionAdded:
    return ActionAdded(
        action_id,
        kind,
        "",
        source=source,
        destination=destination,
        service=service,
    )


def at_destination(action_id: str, kind: Kind, path: str) -> ActionAdded:
    return added(action_id, kind, destination=path, service=Service.DESTINATION)


def test_rounds_order_overlapping_paths():
    actions = [
        at_destination("delete-work", Kind.DELETE, "/dst/work"),
        at_destination("mkdir-work", Kind.MKDIR, "/dst/work"),
        at_destination("mkdir-other", Kind.MKDIR, "/dst/other"),
        at_destination("mkdir-inside", Kind.MKDIR, "/dst/work/inner"),
        at_destination("delete-root", Kind.DELETE, "/dst"),
    ]
    placed = rounds(actions, shared=False)
    assert placed["delete-work"] == 0
    assert placed["mkdir-work"] == 1
    assert placed["mkdir-other"] == 0
    assert placed["mkdir-inside"] == 2
    assert placed["delete-root"] == 3


def test_rounds_share_reads():
    actions = [
        added("copy-one", Kind.COPY_FILE, source="/src/a", destination="/dst/one"),
        added("copy-two", Kind.COPY_FILE, source="/src/a", destination="/dst/two"),
        added("list", Kind.LIST, source="/src", service=Service.SOURCE),
        at_destination("list-dst", Kind.LIST, "/dst"),
    ]
    placed = rounds(actions, shared=False)
    assert placed["copy-one"] == 0
    assert placed["copy-two"] == 0
    assert placed["list"] == 0
    assert placed["list-dst"] == 1


def test_rounds_separate_services():
    actions = [
        added("delete", Kind.DELETE, source="/data", service=Service.SOURCE),
        added("copy", Kind.COPY_FILE, source="/src/a", destination="/data/a"),
    ]
    assert rounds(actions, shared=False)["copy"] == 0
    assert rounds(actions, shared=True)["copy"] == 1


def test_rounds_order_object_store_paths():
    actions = [
        at_destination("delete", Kind.DELETE, "bucket/prefix"),
        at_destination("mkdir", Kind.MKDIR, "bucket/prefix/sub"),
        at_destination("other-bucket", Kind.MKDIR, "bucket2/prefix"),
    ]
    placed = rounds(actions, shared=False)
    assert placed["mkdir"] == 1
    assert placed["other-bucket"] == 0


def count_lost(
    memory_fs: MemoryFileSystem,
    tmp_path: Path,
    add: Callable[[StorageQueue, str], object],
    expected: list[str],
) -> int:
    """Race a delete of each of :data:`PAIRS` paths against ``add`` of it.

    Returns how many paths, over :data:`REPETITIONS` runs, miss one of the
    ``expected`` names afterwards or still contain an old file.
    """
    roots = [f"/dst/work{pair}" for pair in range(PAIRS)]
    lost = 0
    for repetition in range(REPETITIONS):
        memory_fs.pipe(old_files(roots))
        queue_dir = tmp_path / f"queue-{repetition}"
        with StorageQueue(
            "memory://src", "memory://dst", name=str(queue_dir), parallelism=4
        ) as queue:
            for root in roots:
                queue.delete("destination", root, recursive=True)
                add(queue, root)
            summary = queue.run()
        assert summary.failed == 0
        for root in roots:
            complete = all(memory_fs.exists(f"{root}/{name}") for name in expected)
            if not complete or memory_fs.exists(f"{root}/old0.txt"):
                lost += 1
        memory_fs.rm("/dst", recursive=True)
    return lost


def test_delete_mkdir_order_on_memory(memory_fs: MemoryFileSystem, tmp_path):
    def mkdir(queue: StorageQueue, root: str) -> None:
        queue.mkdir("destination", root)

    assert count_lost(memory_fs, tmp_path, mkdir, [""]) == 0


def test_delete_tree_order_on_memory(memory_fs: MemoryFileSystem, tmp_path):
    memory_fs.pipe({"/src/tree/a.txt": b"a", "/src/tree/sub/b.txt": b"b"})

    def copy_tree(queue: StorageQueue, root: str) -> None:
        queue.copy_tree("/src/tree", root)

    expected = ["a.txt", "sub/b.txt"]
    assert count_lost(memory_fs, tmp_path, copy_tree, expected) == 0


@pytest.mark.parametrize("parallelism", [1, 4])
def test_unrelated_actions_all_run(tmp_path: Path, parallelism: int):
    destination = tmp_path / "dst"
    (destination / "old").mkdir(parents=True)
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_bytes(b"a")
    with StorageQueue(
        str(source), str(destination), name=str(tmp_path / "queue"), parallelism=4
    ) as queue:
        queue.delete("destination", str(destination / "old"), recursive=True)
        queue.mkdir("destination", str(destination / "new"))
        queue.copy_file(str(source / "a.txt"), str(destination / "new" / "a.txt"))
        summary = queue.run(parallelism=parallelism)
    assert summary.failed == 0
    assert not (destination / "old").exists()
    assert (destination / "new" / "a.txt").read_bytes() == b"a"
