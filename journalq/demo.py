"""Interrupt a sync and resume it: ``python -m journalq.demo`` (``make demo``).

Creates ``./demo`` in the current directory (deleting an earlier one): a
sample tree ``demo/source`` of a few thousand small files in nested folders
plus a few larger ones, all with deterministic content. Then it runs

    journalq sync demo/source demo/destination --queue demo/queue

as a child process, stops it with Ctrl-C (SIGINT) once it has copied some
files, shows ``journalq status``, runs the same command again to resume,
shows the status again and checks that the destination is identical to the
source.

The children run with ``JOURNALQ_HOME=demo/home``, so the summaries of
their runs, which journalq keeps beside the named queues, stay in
``./demo`` too, and the demo writes nothing elsewhere.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

__all__ = ["main"]

DEMO_DIR: Final = Path("demo")
SOURCE: Final = DEMO_DIR / "source"
DESTINATION: Final = DEMO_DIR / "destination"
QUEUE: Final = DEMO_DIR / "queue"
#: ``$JOURNALQ_HOME`` of the children: where their run summaries go.
HOME: Final = DEMO_DIR / "home"

#: The sample tree: 3,000 small files of up to 8 KiB in 30 folders, and
#: three files of 4 to 12 MiB, about 36 MiB in all. The first sync takes
#: about 2 s on a 2-core machine, so a Ctrl-C lands in the middle of it.
SMALL_FILES: Final = 3_000
FOLDERS: Final = 30
SMALL_MAX_BYTES: Final = 8 * 1024
LARGE_SIZES_MIB: Final = (4, 8, 12)
SEED: Final = 20_240_601

#: Files the first run copies before the demo presses Ctrl-C.
INTERRUPT_AFTER: Final = 400
#: Seconds between two counts of the destination's files.
POLL_SECONDS: Final = 0.01

SYNC_ARGUMENTS: Final = (
    "sync",
    str(SOURCE),
    str(DESTINATION),
    "--queue",
    str(QUEUE),
)


def make_tree(root: Path) -> int:
    """Write the sample tree under ``root``; return its number of files."""
    rng = random.Random(SEED)
    folders = [
        Path(f"set{index // 10}", f"part{index % 10}") for index in range(FOLDERS)
    ]
    folders[1] = folders[1] / "deeper" / "still deeper"
    for number in range(SMALL_FILES):
        path = root / folders[number % FOLDERS] / f"file-{number:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(SMALL_MAX_BYTES + 1)))
    for mebibytes in LARGE_SIZES_MIB:
        path = root / "large" / f"blob-{mebibytes}MiB.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(mebibytes * 1024 * 1024))
    return SMALL_FILES + len(LARGE_SIZES_MIB)


def _command(arguments: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "journalq", *arguments]


def _environment() -> dict[str, str]:
    return {**os.environ, "JOURNALQ_HOME": str(HOME.resolve())}


def _show(arguments: tuple[str, ...]) -> None:
    print(f"\n$ {shlex.join(['journalq', *arguments])}", flush=True)


def _files(root: Path) -> Iterator[Path]:
    for directory, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".tmp"):
                yield Path(directory, name)


def run_interrupted() -> int:
    """Start the sync, press Ctrl-C once it copied some files; return its exit code."""
    _show(SYNC_ARGUMENTS)
    process = subprocess.Popen(_command(SYNC_ARGUMENTS), env=_environment())
    while process.poll() is None:
        if sum(1 for _ in _files(DESTINATION)) >= INTERRUPT_AFTER:
            print(
                f"[demo] {INTERRUPT_AFTER}+ files are in place: pressing Ctrl-C "
                "(copies already in flight still finish)",
                flush=True,
            )
            process.send_signal(signal.SIGINT)
            break
        time.sleep(POLL_SECONDS)
    code = process.wait()
    print(f"[demo] exit status {code}", flush=True)
    return code


def run(arguments: tuple[str, ...]) -> int:
    """Run ``journalq ARGUMENTS`` in a child process; return its exit code."""
    _show(arguments)
    return subprocess.run(
        _command(arguments), check=False, env=_environment()
    ).returncode


def differences(source: Path, destination: Path) -> list[str]:
    """Return how ``destination`` differs from ``source`` (empty if identical)."""
    expected = {path.relative_to(source) for path in _files(source)}
    found = {path.relative_to(destination) for path in destination.rglob("*")}
    found = {path for path in found if not (destination / path).is_dir()}
    problems = [f"missing: {path}" for path in sorted(expected - found)]
    problems += [f"unexpected: {path}" for path in sorted(found - expected)]
    for path in sorted(expected & found):
        if (source / path).read_bytes() != (destination / path).read_bytes():
            problems.append(f"content differs: {path}")
    return problems


def main() -> int:
    """Run the demo; return 0 when the destination ends identical to the source."""
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    started = time.monotonic()
    count = make_tree(SOURCE)
    print(
        f"[demo] wrote {count} files to {SOURCE} in {time.monotonic() - started:.1f} s"
    )

    code = run_interrupted()
    if code == 0:
        print("[demo] the sync finished before the Ctrl-C reached it")
    run(("status", "--queue", str(QUEUE)))
    print("\n[demo] resuming with the same command", flush=True)
    code = run(SYNC_ARGUMENTS)
    run(("status", "--queue", str(QUEUE)))

    problems = differences(SOURCE, DESTINATION)
    if code != 0 or problems:
        for problem in problems[:20]:
            print(f"[demo] {problem}")
        print(f"[demo] FAILED: exit status {code}, {len(problems)} differences")
        return 1
    print(f"\n[demo] {DESTINATION} and {SOURCE}: identical ({count} files)")
    print(f"[demo] done in {time.monotonic() - started:.1f} s")
    print(f"[demo] it wrote only in {DEMO_DIR}: run summaries are in {HOME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
