"""A file-operations layer for tests that check the order of durability steps."""

from __future__ import annotations

from pathlib import Path

from journalq import durable


class RecordingOps(durable.FileOps):
    """Real file operations that also record the order of durability steps."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    def fsync(self, fd: int) -> None:
        self.steps.append("fsync")
        super().fsync(fd)

    def replace(self, source: str, target: str) -> None:
        self.steps.append(f"replace {Path(source).name} {Path(target).name}")
        super().replace(source, target)

    def fsync_dir(self, path: str) -> None:
        self.steps.append(f"fsync_dir {Path(path).name}")
        super().fsync_dir(path)
