"""Trees and S3 objects of the cluster tests, written and read back."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import fsspec
from servers import HOST

#: Scheduler options of the test clusters. A scheduler serves HTTP (health
#: and metrics) even without a dashboard, by default on port 8787; port 0
#: on 127.0.0.1 lets two clusters run at once and keeps it off the network.
SCHEDULER_OPTIONS = {"dashboard_address": f"{HOST}:0"}


def s3(options: dict[str, str]) -> fsspec.AbstractFileSystem:
    """This process's S3 filesystem, with nothing cached from before."""
    fs = fsspec.filesystem("s3", **options)
    fs.invalidate_cache()
    return fs


def s3_tree(options: dict[str, str], root: str) -> dict[str, bytes]:
    """Return every object under ``root`` as relative path -> content."""
    fs = s3(options)
    found = fs.find(root)
    contents = fs.cat(found) if found else {}
    return {path[len(root) + 1 :]: data for path, data in contents.items()}


def make_tree(root: Path, count: int, largest: int, seed: int) -> dict[str, bytes]:
    """Write ``count`` files of up to ``largest`` bytes in five folders.

    Their mtime is an hour back, old enough for the journal's digest
    cache, which trusts no file changed within the same second.
    """
    rng = random.Random(seed)
    mtime_ns = time.time_ns() - 3600 * 10**9
    files: dict[str, bytes] = {}
    for index in range(count):
        name = f"d{index % 5}/f{index:04d}.bin"
        data = rng.randbytes(rng.randrange(largest + 1))
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(mtime_ns, mtime_ns))
        files[name] = data
    return files


def files_containing(root: Path, secret: str) -> list[str]:
    """Return the files under ``root`` whose bytes contain ``secret``."""
    needle = secret.encode()
    return [
        os.fspath(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and needle in path.read_bytes()
    ]
