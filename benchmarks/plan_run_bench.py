"""Scale: plan and run a copy of a generated tree of up to a million files.

Run ``python -m benchmarks.plan_run_bench`` (``--quick`` for 10,000 files
only). For each size it generates a tree of that many 100-byte files in 1,000
folders under ``/dev/shm`` when it exists, else under ``benchmarks/work``.
On tmpfs the tree takes seconds to build rather than the minutes of a
disk, and the disk's noise stays out of the figures. Then, each in a fresh
process timed by the harness:

* copy: ``journalq copy SRC/ DST/ --queue Q -q``, which lists the tree,
  journals an action per file and folder, and copies every file;
* status: ``journalq status --queue Q`` on the finished queue.

The peak RSS is journalq's own (tmpfs pages are not counted in it). The
target applies to 1,000,000 files: the copy under 1 GiB of RSS, and the
status under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from benchmarks.harness import Measurement, describe_exit, run_process

SIZES: Final = (10_000, 100_000, 1_000_000)
QUICK_SIZES: Final = (10_000,)
FOLDERS: Final = 1_000
FILE_BYTES: Final = 100
RSS_TARGET_MIB: Final = 1024
STATUS_TARGET_SECONDS: Final = 2.0
#: 100,000 copies took 51 s on the loaded 2-core development VM, so a
#: million may take ten minutes (an estimate); the margin covers more load.
CHILD_TIMEOUT: Final = 1800.0

PACKAGE_DIR = Path(__file__).resolve().parent
WORK_DIR = PACKAGE_DIR / "work"
JOURNALQ = os.environ.get("BENCH_JOURNALQ") or str(
    Path(sys.executable).parent / "journalq"
)


def scratch_root() -> Path:
    """Return where the trees are generated: tmpfs when there is one."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    return WORK_DIR


def make_tree(root: Path, files: int) -> None:
    """Write ``files`` files of :data:`FILE_BYTES` bytes in :data:`FOLDERS`."""
    data = b"x" * FILE_BYTES
    folders = min(FOLDERS, files)
    for folder in range(folders):
        (root / f"d{folder:04}").mkdir(parents=True)
    for index in range(files):
        path = root / f"d{index % folders:04}" / f"f{index:07}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def measure(files: int, scratch: Path, log: Path) -> list[dict[str, Any]]:
    """Generate the tree, copy it with journalq, read its status; return rows."""
    with tempfile.TemporaryDirectory(dir=scratch, prefix="jq-plan-run-") as temporary:
        root = Path(temporary)
        make_tree(root / "src", files)
        queue = root / "queue"
        copy = _run(
            [
                JOURNALQ,
                "copy",
                f"{root / 'src'}/",
                f"{root / 'dst'}/",
                "--queue",
                str(queue),
                "-q",
            ],
            log,
            f"copy of {files:,} files",
        )
        status = _run([JOURNALQ, "status", "--queue", str(queue)], log, "status")
    rss = copy.max_rss_kib / 1024
    rows = [
        _row(files, "copy: plan and run", copy, f"{files / copy.wall:,.0f} files/s"),
        _row(files, "status", status, ""),
    ]
    if files == SIZES[-1]:
        rows[0]["target"] = (
            f"RSS < {RSS_TARGET_MIB} MiB: {'met' if rss < RSS_TARGET_MIB else 'missed'}"
        )
        met = status.wall < STATUS_TARGET_SECONDS
        rows[1]["target"] = (
            f"< {STATUS_TARGET_SECONDS:g} s: {'met' if met else 'missed'}"
        )
    return rows


def _run(argv: list[str], log: Path, what: str) -> Measurement:
    measurement = run_process(argv, log, CHILD_TIMEOUT)
    if measurement.exit_code != 0:
        raise RuntimeError(
            f"plan-and-run benchmark: {what} failed: "
            f"{describe_exit(measurement, log)}; the output is in {log}"
        )
    return measurement


def _row(files: int, step: str, measured: Measurement, detail: str) -> dict[str, Any]:
    return {
        "files": f"{files:,}",
        "measure": step,
        "seconds": f"{measured.wall:.2f}",
        "CPU s": f"{measured.cpu:.2f}",
        "peak RSS MiB": f"{measured.max_rss_kib / 1024:.0f}",
        "detail": detail,
        "target": "",
    }


def main(quick: bool = False) -> list[dict[str, Any]]:
    """Measure every size; return the rows for the results page."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    log = WORK_DIR / "plan-run.log"
    scratch = scratch_root()
    rows: list[dict[str, Any]] = []
    for files in QUICK_SIZES if quick else SIZES:
        rows += measure(files, scratch, log)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 files only")
    print(json.dumps(main(parser.parse_args().quick), indent=1))
