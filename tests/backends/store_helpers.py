"""The area of a backend test on one backend: :class:`Store`.

It lives outside ``conftest.py`` so that test modules can import it by a
name that stays unique when pytest collects several test directories,
each with a ``conftest`` of its own.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

import fsspec


@dataclass
class Store:
    """One backend's area of a test: a root path, its URL and options."""

    name: str
    fs: fsspec.AbstractFileSystem
    root: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)

    def path(self, relpath: str = "") -> str:
        """Return the path of ``relpath`` under the root on :attr:`fs`."""
        return posixpath.join(self.root, relpath) if relpath else self.root

    def write(self, relpath: str, data: bytes) -> None:
        """Write ``data`` to the file ``relpath``, with its parents."""
        path = self.path(relpath)
        parent = posixpath.dirname(path)
        if self.name in ("local", "sftp", "memory"):
            self.fs.makedirs(parent, exist_ok=True)
        self.fs.pipe_file(path, data)

    def write_tree(self, relpath: str, files: dict[str, bytes]) -> None:
        """Write every file of ``files`` (relative path -> content)."""
        for name, data in files.items():
            self.write(posixpath.join(relpath, name), data)

    def read(self, relpath: str) -> bytes:
        return self.fs.cat_file(self.path(relpath))

    def tree(self, relpath: str = "") -> dict[str, bytes]:
        """Return every file under ``relpath`` as relative path -> content."""
        top = self.path(relpath).rstrip("/")
        self.fs.invalidate_cache()
        if not self.fs.exists(top):
            return {}
        found = self.fs.find(top, detail=True)
        return {
            path[len(top) + 1 :]: self.fs.cat_file(path)
            for path, info in found.items()
            if info["type"] == "file" and not path.endswith("/")
        }
