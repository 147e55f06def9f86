"""Destination directories get their source directory's mtime, as ``rsync -a``.

Every test runs the real command in a child process on real local trees
whose directories have old mtimes, set with ``os.utime``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import servers
from cli_helpers import run_journalq, run_journalq_killed_at, write_tree

from journalq.cli.exits import ExitCode

#: The tree of the tests: nested directories, one of them with no file.
FILES = {
    "top.txt": b"top\n",
    "a/one.txt": b"one\n",
    "a/b/two.txt": b"two\n",
    "a/b/c/three.txt": b"three\n",
    "d/four.txt": b"four\n",
}
EMPTY_DIRECTORY = "a/empty"
#: 2001-09-09, with a sub-second part, so a copy in whole seconds shows.
OLD_NS = 1_000_000_000_123_456_789


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """The tree of :data:`FILES`, each directory with its own old mtime."""
    root = write_tree(tmp_path / "src", FILES)
    (root / EMPTY_DIRECTORY).mkdir()
    directories = sorted(directory_mtimes(root), key=lambda p: -p.count("/"))
    for index, relpath in enumerate(directories):
        mtime_ns = OLD_NS + index * 3_600_000_000_000
        os.utime(root / relpath, ns=(mtime_ns, mtime_ns))
    return root


def directory_mtimes(root: Path, field: str = "st_mtime_ns") -> dict[str, int]:
    """Return ``field`` of the stat of every directory under ``root``, and ``root``.

    ``root`` itself is ``"."``. ``field="st_ctime_ns"`` shows which
    directories had their times set, because ``utime`` sets the ctime.
    """
    stamps = {".": getattr(root.stat(), field)}
    for path in root.rglob("*"):
        if path.is_dir():
            stamps[path.relative_to(root).as_posix()] = getattr(path.stat(), field)
    return stamps


def copy_command(source: Path, tmp_path: Path, verb: str = "copy") -> list[str]:
    return [verb, f"{source}/", f"{tmp_path / 'dst'}/", "--queue", str(tmp_path / "q")]


def test_copy_keeps_directory_mtimes(source: Path, tmp_path: Path) -> None:
    result = run_journalq(*copy_command(source, tmp_path))

    assert result.returncode == ExitCode.OK, result.stderr
    assert directory_mtimes(tmp_path / "dst") == directory_mtimes(source)


def test_copy_of_directory_itself(source: Path, tmp_path: Path) -> None:
    """``copy SRC DST`` gives DST/SRC the source's mtime and leaves DST alone."""
    (tmp_path / "dst").mkdir()

    result = run_journalq("copy", str(source), str(tmp_path / "dst"))

    assert result.returncode == ExitCode.OK, result.stderr
    assert directory_mtimes(tmp_path / "dst" / "src") == directory_mtimes(source)
    assert (tmp_path / "dst").stat().st_mtime_ns > max(
        directory_mtimes(source).values()
    )


def test_killed_copy_resumes_mtimes(source: Path, tmp_path: Path) -> None:
    command = copy_command(source, tmp_path)

    killed = run_journalq_killed_at("transfer.after_rename:3", *command)
    copied = sum(1 for path in (tmp_path / "dst").rglob("*") if path.is_file())
    resumed = run_journalq(*command)

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert 0 < copied < len(FILES)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert directory_mtimes(tmp_path / "dst") == directory_mtimes(source)


def test_killed_before_tree_end(source: Path, tmp_path: Path) -> None:
    """Killed with every file copied, the next run only ends the tree."""
    command = copy_command(source, tmp_path)

    killed = run_journalq_killed_at("executor.before_directory_mtimes", *command)
    copied = sum(1 for path in (tmp_path / "dst").rglob("*") if path.is_file())
    before = directory_mtimes(tmp_path / "dst")
    resumed = run_journalq(*command)

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert copied == len(FILES)
    assert before != directory_mtimes(source)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert directory_mtimes(tmp_path / "dst") == directory_mtimes(source)


def test_noop_sync_repairs_one_directory(source: Path, tmp_path: Path) -> None:
    """A sync with no file to copy sets the one changed mtime, and no other."""
    command = copy_command(source, tmp_path, "sync")
    first = run_journalq(*command)
    destination = tmp_path / "dst"
    os.utime(destination / "a" / "b", ns=(OLD_NS, OLD_NS))
    ctimes = directory_mtimes(destination, "st_ctime_ns")

    again = run_journalq(*command)

    assert first.returncode == ExitCode.OK, first.stderr
    assert again.returncode == ExitCode.OK, again.stderr
    assert "copied 0" in again.stderr
    assert directory_mtimes(destination) == directory_mtimes(source)
    changed = {
        relpath
        for relpath, ctime in directory_mtimes(destination, "st_ctime_ns").items()
        if ctime != ctimes[relpath]
    }
    assert changed == {"a/b"}


def test_dry_run_leaves_mtimes(source: Path, tmp_path: Path) -> None:
    """The dry run changes no mtime; the real run after it sets them."""
    command = copy_command(source, tmp_path, "sync")
    first = run_journalq(*command)
    destination = tmp_path / "dst"
    (source / "a" / "new.txt").write_bytes(b"new\n")
    os.utime(destination / "d", ns=(OLD_NS, OLD_NS))
    before = directory_mtimes(destination)

    dry = run_journalq(*command, "--dry-run")
    after_dry_run = directory_mtimes(destination)
    real = run_journalq(*command)

    assert first.returncode == ExitCode.OK, first.stderr
    assert dry.returncode == ExitCode.OK, dry.stderr
    assert after_dry_run == before
    assert real.returncode == ExitCode.OK, real.stderr
    assert directory_mtimes(destination) == directory_mtimes(source)


def test_sync_delete_sets_parent_mtime(source: Path, tmp_path: Path) -> None:
    """A directory that ``sync --delete`` removed is left out; its parent is set."""
    destination = write_tree(tmp_path / "dst", {"a/extra/old.txt": b"old\n"})

    result = run_journalq(*copy_command(source, tmp_path, "sync"), "--delete")

    assert result.returncode == ExitCode.OK, result.stderr
    assert not (destination / "a" / "extra").exists()
    assert "could not set the mtime" not in result.stderr
    assert directory_mtimes(destination) == directory_mtimes(source)


def test_unsettable_mtime_is_warning(source: Path, tmp_path: Path) -> None:
    """A directory of another owner, whose mtime only its owner may set.

    Root may set any mtime, so the copy runs without CAP_FOWNER then.
    """
    if os.geteuid() != 0:
        pytest.skip("making a directory of another owner needs root")
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv is missing")
    destination = tmp_path / "dst"
    (destination / "d").mkdir(parents=True)
    os.chown(destination / "d", 65534, 65534)

    result = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-fowner",
            sys.executable,
            "-m",
            "journalq",
            *copy_command(source, tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == ExitCode.OK, result.stderr
    assert "could not set the mtime of 1 of the" in result.stderr
    assert (destination / "d" / "four.txt").read_bytes() == FILES["d/four.txt"]
    expected = directory_mtimes(source)
    got = directory_mtimes(destination)
    assert got.pop("d") != expected.pop("d")
    assert got == expected


def test_sftp_destination_whole_seconds(
    source: Path,
    tmp_path: Path,
    sftp_server: tuple[servers.Server, Path],
    sftp_options: dict[str, Any],
) -> None:
    """SFTP version 3 sets times in whole seconds, which a re-sync accepts.

    The test's sshd serves this machine's disk, so the destination is
    read back directly.
    """
    server, _ = sftp_server
    destination = tmp_path / "dst"
    url = f"sftp://root@{servers.HOST}:{server.port}{destination}/"
    flags: list[str] = []
    for key, value in sftp_options.items():
        flags += ["--destination-option", f"{key}={json.dumps(value)}"]
    command = ["sync", f"{source}/", url, "--queue", str(tmp_path / "q"), *flags]

    first = run_journalq(*command)
    ctimes = directory_mtimes(destination, "st_ctime_ns")
    again = run_journalq(*command)

    assert first.returncode == ExitCode.OK, first.stderr
    expected = {
        relpath: mtime_ns - mtime_ns % 1_000_000_000
        for relpath, mtime_ns in directory_mtimes(source).items()
    }
    assert directory_mtimes(destination) == expected
    assert again.returncode == ExitCode.OK, again.stderr
    assert directory_mtimes(destination, "st_ctime_ns") == ctimes


def test_mtimes_survive_compaction(source: Path, tmp_path: Path) -> None:
    """The mtimes journaled by ``add`` come back from a snapshot for ``run``."""
    queue = str(tmp_path / "q")
    added = run_journalq(
        "add", "copy", f"{source}/", f"{tmp_path / 'dst'}/", "--queue", queue
    )
    compacted = run_journalq("compact", "--queue", queue)
    snapshots = list((tmp_path / "q" / "snapshots").iterdir())
    ran = run_journalq("run", "--queue", queue)

    assert added.returncode == ExitCode.OK, added.stderr
    assert compacted.returncode == ExitCode.OK, compacted.stderr
    assert len(snapshots) == 1
    assert ran.returncode == ExitCode.OK, ran.stderr
    assert directory_mtimes(tmp_path / "dst") == directory_mtimes(source)
