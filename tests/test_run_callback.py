"""``StorageQueue.run(callback=...)``: an fsspec Callback fed with a run's bytes."""

from __future__ import annotations

import os
from pathlib import Path

from fsspec.callbacks import Callback
from fsspec.implementations.memory import MemoryFileSystem

from journalq import StorageQueue, digest
from journalq.events import Event, EventType


class RecordingCallback(Callback):
    """Records every call, and makes a recording child per branched file."""

    def __init__(self, name: str = "run") -> None:
        super().__init__()
        self.name = name
        self.sizes: list[int] = []
        self.increments: list[int] = []
        self.children: list[RecordingCallback] = []
        self.closed = False

    def set_size(self, size: int) -> None:
        self.sizes.append(size)
        super().set_size(size)

    def relative_update(self, inc: int = 1) -> None:
        self.increments.append(inc)
        super().relative_update(inc)

    def branched(self, path_1: str, path_2: str, **kwargs: object) -> Callback:
        child = RecordingCallback(f"{path_1} -> {path_2}")
        self.children.append(child)
        return child

    def close(self) -> None:
        self.closed = True


def write_files(root: Path, sizes: dict[str, int]) -> dict[str, bytes]:
    contents = {name: os.urandom(size) for name, size in sizes.items()}
    for name, data in contents.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return contents


#: Sizes of the copied files; the largest takes three chunks, so its
#: bytes arrive in several updates.
SIZES = {"a.bin": 10, "d/b.bin": 5000, "d/c.bin": 0, "big.bin": 2 * digest.CHUNK + 7}


def test_callback_local_copy(tmp_path: Path) -> None:
    contents = write_files(tmp_path / "src", SIZES)
    total = sum(SIZES.values())
    callback = RecordingCallback()

    with StorageQueue(tmp_path / "src", tmp_path / "dst", tmp_path / "q") as queue:
        queue.copy_tree("", "")
        summary = queue.run(callback=callback, parallelism=1)

    assert summary.copied == len(SIZES)
    assert callback.sizes == [total]
    assert callback.value == total
    assert all(increment > 0 for increment in callback.increments)
    assert len(callback.increments) > len(SIZES)
    assert not callback.closed
    files = {child.name: child for child in callback.children}
    assert len(callback.children) == len(SIZES)
    for name, data in contents.items():
        child = files[f"{tmp_path / 'src' / name} -> {tmp_path / 'dst' / name}"]
        assert child.sizes == [len(data)]
        assert child.value == len(data)
        assert child.closed


def test_callback_memory_copy_with_skip(
    tmp_path: Path, memory_fs: MemoryFileSystem
) -> None:
    contents = write_files(tmp_path / "src", SIZES)
    # Identical at the destination already: the run skips it.
    memory_fs.pipe_file("/dst/d/b.bin", contents["d/b.bin"])
    total = sum(SIZES.values())
    skipped = SIZES["d/b.bin"]
    callback = RecordingCallback()
    events: list[Event] = []

    with StorageQueue(tmp_path / "src", "memory://dst", tmp_path / "q") as queue:
        for name in SIZES:
            queue.copy_file(name, f"/dst/{name}")
        summary = queue.run(
            callback=callback, on_event=events.append, event_types={"skipped"}
        )

    assert summary.copied == len(SIZES) - 1
    assert summary.skipped == 1
    # A local file added by copy_file has its size recorded, so the total
    # is known from the start and shrinks by the file found identical.
    assert callback.sizes[0] == total
    assert callback.sizes[-1] == total - skipped
    assert callback.value == total - skipped
    assert {memory_fs.cat_file(f"/dst/{name}") for name in SIZES} == set(
        contents.values()
    )
    # The caller's own callback gets only the events it asked for.
    assert [event.type for event in events] == [EventType.SKIPPED]
    copied = [child for child in callback.children if child.value]
    assert sorted(child.value for child in copied) == sorted(
        size for name, size in SIZES.items() if size and name != "d/b.bin"
    )
    assert all(child.closed for child in callback.children)
