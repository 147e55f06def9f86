"""Reading a local tree back, for tests that compare two trees."""

from __future__ import annotations

from pathlib import Path


def read_tree(root: Path) -> dict[str, bytes]:
    """Return the content of every file under ``root``, by relative path."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file()
    }


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write ``files``, by path relative to ``root``, and return ``root``."""
    for relpath, content in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root
