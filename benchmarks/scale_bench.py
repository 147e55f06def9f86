"""Scale: open, replay and report on a queue of a million finished actions.

Run ``python -m benchmarks.scale_bench`` (``--quick`` for 1,000 and 100,000
files only). For 1,000, 10,000, 100,000 and 1,000,000 files it builds,
without copying anything, the journal that a finished copy of a tree of
that many files leaves. That is the queue's ``created`` record, a
copy_tree action, one ``added`` record per folder and per file, and the
tree's ``expanded`` record. Then come, per file, a ``started`` record,
the two ``digested`` cache entries and a ``completed`` record with both
identities, and last the tree's own completion. The records go through
:class:`journalq.store.QueueStore` in expansion chunks, so its snapshots
are taken as a real run takes them.

Every figure comes from a fresh process, timed by the harness, and its
peak RSS is the ``ru_maxrss`` that ``wait4`` reports for it. Linux counts
what the parent had resident until the exec in that figure, so the rows for
1,000 and 10,000 files show the floor (about 37 MiB on the 2-core
development VM):

* open: ``QueueStore.open`` (lock, snapshot, journal tail, writer start)
  and the decoding of the snapshot's actions, which waits for first use;
* read_state: what ``journalq status`` reads, without the lock: the
  counts, for which the actions are not decoded;
* replay: the same records in a journal without snapshots, read with
  :func:`journalq.journal.scan` (which verifies every CRC), decoded and
  folded into a :class:`journalq.replay.QueueState`;
* snapshot: ``encode_state`` and ``decode_state`` of the opened state;
* status: the ``journalq status --queue DIR`` command, start to exit
  (``$BENCH_JOURNALQ`` names another executable, as for the transfers).

The targets apply to 1,000,000 files: open and status under 2 s, open
under 500 MB of RSS, replay at 500,000 records/s or more.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.harness import Measurement, describe_exit, run_process
from benchmarks.transfer_bench import JOURNALQ
from journalq import plan
from journalq.journal import Journal, scan
from journalq.records import (
    ActionAdded,
    Completed,
    Digested,
    Endpoint,
    Expanded,
    Identity,
    Kind,
    Outcome,
    QueueCreated,
    Record,
    Service,
    Started,
    decode_batch,
    encode_batch,
)
from journalq.replay import QueueState, decode_state, encode_state
from journalq.store import JOURNAL_DIR, QueueStore, read_state

WORK_DIR = Path(__file__).resolve().parent / "work" / "scale"
SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 100_000)
#: Files per folder of the generated tree, as in a photo or log archive.
FILES_PER_FOLDER = 1000
#: Records per append: the expansion chunk a real tree listing journals.
CHUNK = 1000
SOURCE_ROOT = "/srv/archive/2024/source-tree"
DESTINATION_ROOT = "/mnt/backup/2024/destination-tree"
#: A plausible wall clock for the records, in nanoseconds since the epoch.
CLOCK_NS = 1_717_000_000_000_000_000
#: The longest one child process may run, in seconds. Building a million
#: files took about 70 seconds on the 2-core development VM.
CHILD_TIMEOUT = 1200.0
OPEN_TARGET_SECONDS = 2.0
OPEN_TARGET_MIB = 500
REPLAY_TARGET = 500_000
TARGET_SIZE = 1_000_000


# Building -------------------------------------------------------------------


def tree_action() -> ActionAdded:
    """Return the copy_tree action whose children the queue holds."""
    key = plan.request_key(Kind.COPY_TREE, SOURCE_ROOT, DESTINATION_ROOT, False)
    return ActionAdded(
        plan.action_id(key, 0),
        Kind.COPY_TREE,
        key,
        source=SOURCE_ROOT,
        destination=DESTINATION_ROOT,
        added_ns=CLOCK_NS,
    )


def relpath(index: int) -> str:
    return f"d{index // FILES_PER_FOLDER:04d}/IMG_{index:07d}.jpg"


def file_size(index: int) -> int:
    """Return a size between 4 KiB and about 5 MiB, varied by ``index``."""
    return 4096 + (index * 2_654_435_761) % 5_000_000


def expansion(tree: ActionAdded, files: int) -> Iterator[Record]:
    """Yield the records of listing the tree: folders, files, expanded."""
    folders = -(-files // FILES_PER_FOLDER)
    for folder in range(folders):
        name = f"d{folder:04d}"
        yield ActionAdded(
            plan.child_id(tree.action_id, Kind.MKDIR, name),
            Kind.MKDIR,
            "",
            service=Service.DESTINATION,
            parent=tree.action_id,
            relpath=name,
        )
    for index in range(files):
        path = relpath(index)
        yield ActionAdded(
            plan.child_id(tree.action_id, Kind.COPY_FILE, path),
            Kind.COPY_FILE,
            "",
            parent=tree.action_id,
            relpath=path,
            size=file_size(index),
        )
    yield Expanded(tree.action_id, folders + files, "5e" * 16)


def execution(tree: ActionAdded, files: int) -> Iterator[Record]:
    """Yield the records of running every child to completion."""
    folders = -(-files // FILES_PER_FOLDER)
    for folder in range(folders):
        action_id = plan.child_id(tree.action_id, Kind.MKDIR, f"d{folder:04d}")
        yield Started(action_id, 1, CLOCK_NS)
        yield Completed(action_id, 1, Outcome.DONE, "mkdir", finished_ns=CLOCK_NS)
    for index in range(files):
        yield from _copy(tree, index)
    yield Completed(tree.action_id, 1, Outcome.DONE, "tree", finished_ns=CLOCK_NS)


def _copy(tree: ActionAdded, index: int) -> Iterator[Record]:
    path = relpath(index)
    action_id = plan.child_id(tree.action_id, Kind.COPY_FILE, path)
    size = file_size(index)
    started = CLOCK_NS + index * 1_000_000
    mtime = CLOCK_NS - 86_400_000_000_000 + index * 7_919
    digest = f"xxh128:{(index * 0x9E3779B97F4A7C15F39CC0605CEDC835) % 2**128:032x}"
    identity = Identity(size, mtime, digest)
    observed = started + 400_000
    yield Started(action_id, 1, started)
    yield Digested(
        Service.SOURCE, f"{SOURCE_ROOT}/{path}", size, mtime, digest, observed
    )
    yield Digested(
        Service.DESTINATION, f"{DESTINATION_ROOT}/{path}", size, mtime, digest, observed
    )
    yield Completed(
        action_id,
        1,
        Outcome.COPIED,
        "xxh128",
        size,
        identity,
        identity,
        finished_ns=started + 900_000,
    )


def history(files: int) -> Iterator[list[Record]]:
    """Yield the whole journal of the finished tree in chunks of CHUNK."""
    tree = tree_action()
    chunk: list[Record] = [tree]
    for stream in (expansion(tree, files), execution(tree, files)):
        for record in stream:
            chunk.append(record)
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _created(queue_id: str) -> QueueCreated:
    return QueueCreated(
        queue_id,
        "scale",
        Endpoint("file:///"),
        Endpoint("file:///"),
        4,
        CLOCK_NS,
        compare="checksum",
    )


def build_queue(directory: Path, files: int) -> dict[str, Any]:
    """Append the history through a QueueStore, which snapshots as it goes."""
    store = QueueStore.open(directory, create=_created, sync="none")
    try:
        for chunk in history(files):
            store.append(chunk, durable=False)
    finally:
        store.close()
    return _sizes(directory)


def build_journal(directory: Path, files: int) -> dict[str, Any]:
    """Append the same history to a bare journal, which never snapshots."""
    journal_dir = directory / JOURNAL_DIR
    queue_id = uuid.uuid4().bytes
    journal = Journal.open(
        journal_dir,
        queue_id,
        scan(journal_dir, queue_id),
        encode_batch=encode_batch,
        sync="none",
    )
    try:
        journal.append([_created(queue_id.hex())], durable=False)
        for chunk in history(files):
            journal.append(chunk, durable=False)
    finally:
        journal.close()
    (directory / "queue_id").write_text(queue_id.hex())
    return _sizes(directory)


def _sizes(directory: Path) -> dict[str, Any]:
    def total(folder: str) -> int:
        path = directory / folder
        return sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else 0

    return {"journal_bytes": total(JOURNAL_DIR), "snapshot_bytes": total("snapshots")}


# Measuring, in the child process --------------------------------------------


def measure_open(directory: Path) -> dict[str, Any]:
    """Open the queue for writing and decode its actions, as a run does."""
    started = time.perf_counter()
    store = QueueStore.open(directory)
    actions = len(store.state.actions)
    seconds = time.perf_counter() - started
    store.close()
    return {"seconds": seconds, "actions": actions}


def measure_read_state(directory: Path) -> dict[str, Any]:
    """Fold the queue without the lock and count it, as ``status`` does."""
    started = time.perf_counter()
    counts = read_state(directory).status_counts()
    return {"seconds": time.perf_counter() - started, "actions": counts["length"]}


def measure_replay(directory: Path) -> dict[str, Any]:
    """Scan (read and verify), decode and fold a journal without snapshots."""
    queue_id = bytes.fromhex((directory / "queue_id").read_text())
    started = time.perf_counter()
    result = scan(directory / JOURNAL_DIR, queue_id)
    scanned = time.perf_counter()
    state = QueueState()
    records = 0
    decoding = 0.0
    for frame in result.frames:
        before = time.perf_counter()
        batch = decode_batch(frame.payload)
        decoding += time.perf_counter() - before
        state.apply_all(batch)
        records += len(batch)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "records": records,
        "scan_seconds": scanned - started,
        "decode_seconds": decoding,
        "fold_seconds": seconds - (scanned - started) - decoding,
        "actions": len(state.actions),
    }


def measure_snapshot(directory: Path) -> dict[str, Any]:
    state = read_state(directory)
    len(state.actions)  # decode the actions before the clock starts
    started = time.perf_counter()
    payload = encode_state(state)
    encoded = time.perf_counter()
    # Reading the actions decodes them, which decode_state defers.
    actions = len(decode_state(payload).actions)
    decoded = time.perf_counter()
    return {
        "encode_seconds": encoded - started,
        "decode_seconds": decoded - encoded,
        "payload_bytes": len(payload),
        "actions": actions,
    }


BUILDERS = {"build-queue": build_queue, "build-journal": build_journal}
MEASURES = {
    "open": measure_open,
    "read_state": measure_read_state,
    "replay": measure_replay,
    "snapshot": measure_snapshot,
}


def run_child(mode: str, directory: Path, output: Path, files: int) -> None:
    """Run one mode in this process and write its figures to ``output``."""
    if mode in BUILDERS:
        figures = BUILDERS[mode](directory, files)
    else:
        figures = MEASURES[mode](directory)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["self_max_rss_kib"] = usage.ru_maxrss
    output.write_text(json.dumps(figures))


# Orchestrating, in the parent process ---------------------------------------


class ScaleRun:
    """The children of one size, each a fresh process."""

    def __init__(self, root: Path, files: int) -> None:
        self.root = root
        self.files = files
        self.queue = root / f"queue-{files}"
        self.journal = root / f"journal-{files}"
        # The log stays when the temporary folder goes, for a failure.
        self.log = WORK_DIR / f"log-{files}.txt"
        self.log.unlink(missing_ok=True)

    def child(self, mode: str, directory: Path) -> tuple[Measurement, dict[str, Any]]:
        output = self.root / f"{mode}-{self.files}.json"
        argv = [
            sys.executable,
            "-m",
            "benchmarks.scale_bench",
            "--child",
            mode,
            str(directory),
            str(output),
            str(self.files),
        ]
        return self._run(mode, argv), json.loads(output.read_text())

    def status(self) -> Measurement:
        argv = [JOURNALQ, "status", "--queue", str(self.queue)]
        return self._run("status", argv)

    def _run(self, step: str, argv: list[str]) -> Measurement:
        measurement = run_process(argv, self.log, CHILD_TIMEOUT)
        if measurement.exit_code != 0:
            raise RuntimeError(
                f"scale benchmark step {step} for {self.files:,} files failed: "
                f"{describe_exit(measurement, self.log)}; the output is in "
                f"{self.log}"
            )
        return measurement

    def rows(self) -> list[dict[str, Any]]:
        built, sizes = self.child("build-queue", self.queue)
        rows = [_build_row(self.files, "build queue (QueueStore)", built, sizes)]
        built, sizes = self.child("build-journal", self.journal)
        rows.append(_build_row(self.files, "build journal", built, sizes))

        measured, figures = self.child("open", self.queue)
        measure = "open: QueueStore.open + actions"
        rows.append(_open_row(self.files, measure, measured, figures))
        measured, figures = self.child("read_state", self.queue)
        measure = "open: read_state + status_counts"
        rows.append(_open_row(self.files, measure, measured, figures))
        measured, figures = self.child("replay", self.journal)
        rows.append(_replay_row(self.files, measured, figures))
        measured, figures = self.child("snapshot", self.queue)
        rows.append(_snapshot_row(self.files, measured, figures))
        rows.append(_status_row(self.files, self.status()))
        return rows


def _row(files: int, measure: str, **cells: Any) -> dict[str, Any]:
    row = {
        "files": f"{files:,}",
        "measure": measure,
        "seconds": "",
        "peak RSS MiB": "",
        "records/s": "",
        "detail": "",
        "target": "",
    }
    row.update(cells)
    return row


def _mib(measurement: Measurement) -> str:
    return f"{measurement.max_rss_kib / 1024:.0f}"


def _build_row(
    files: int, measure: str, measured: Measurement, sizes: dict[str, Any]
) -> dict[str, Any]:
    detail = (
        f"journal {sizes['journal_bytes'] / 2**20:.0f} MiB, "
        f"snapshots {sizes['snapshot_bytes'] / 2**20:.0f} MiB"
    )
    return _row(
        files,
        measure,
        seconds=f"{measured.wall:.1f}",
        **{"peak RSS MiB": _mib(measured), "detail": detail},
    )


def _open_row(
    files: int, measure: str, measured: Measurement, figures: dict[str, Any]
) -> dict[str, Any]:
    seconds = figures["seconds"]
    rss = measured.max_rss_kib / 1024
    target = ""
    if files == TARGET_SIZE:
        met = seconds < OPEN_TARGET_SECONDS and rss < OPEN_TARGET_MIB
        target = f"< {OPEN_TARGET_SECONDS:g} s, < {OPEN_TARGET_MIB} MiB: "
        target += "met" if met else "missed"
    return _row(
        files,
        measure,
        seconds=f"{seconds:.3f}",
        detail=f"{figures['actions']:,} actions; process {measured.wall:.2f} s",
        target=target,
        **{"peak RSS MiB": f"{rss:.0f}"},
    )


def _replay_row(
    files: int, measured: Measurement, figures: dict[str, Any]
) -> dict[str, Any]:
    rate = figures["records"] / figures["seconds"]
    detail = (
        f"{figures['records']:,} records: scan {figures['scan_seconds']:.2f} s, "
        f"decode {figures['decode_seconds']:.2f} s, "
        f"fold {figures['fold_seconds']:.2f} s"
    )
    target = ""
    if files == TARGET_SIZE:
        target = (
            f">= {REPLAY_TARGET:,}/s: {'met' if rate >= REPLAY_TARGET else 'missed'}"
        )
    return _row(
        files,
        "replay: scan + decode + fold",
        seconds=f"{figures['seconds']:.2f}",
        detail=detail,
        target=target,
        **{"peak RSS MiB": _mib(measured), "records/s": f"{rate:,.0f}"},
    )


def _snapshot_row(
    files: int, measured: Measurement, figures: dict[str, Any]
) -> dict[str, Any]:
    detail = (
        f"encode {figures['encode_seconds']:.3f} s, "
        f"decode {figures['decode_seconds']:.3f} s, "
        f"{figures['payload_bytes'] / 2**20:.1f} MiB payload"
    )
    return _row(
        files,
        "snapshot: encode_state + decode_state",
        seconds=f"{figures['encode_seconds'] + figures['decode_seconds']:.3f}",
        detail=detail,
        **{"peak RSS MiB": _mib(measured)},
    )


def _status_row(files: int, measured: Measurement) -> dict[str, Any]:
    target = ""
    if files == TARGET_SIZE:
        met = measured.wall < OPEN_TARGET_SECONDS
        target = f"< {OPEN_TARGET_SECONDS:g} s: {'met' if met else 'missed'}"
    return _row(
        files,
        "journalq status --queue DIR",
        seconds=f"{measured.wall:.3f}",
        detail=f"CPU {measured.cpu:.2f} s",
        target=target,
        **{"peak RSS MiB": _mib(measured)},
    )


def main(quick: bool = False) -> list[dict[str, Any]]:
    """Build each queue size, measure it in fresh processes, return the rows."""
    sizes = QUICK_SIZES if quick else SIZES
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=WORK_DIR) as temporary:
        for files in sizes:
            run = ScaleRun(Path(temporary), files)
            rows += run.rows()
            shutil.rmtree(run.queue)
            shutil.rmtree(run.journal)
    return rows


def render_table(rows: list[dict[str, Any]]) -> str:
    """Render result rows as a Markdown table, for the terminal or a page."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1,000 and 100,000 files only"
    )
    parser.add_argument(
        "--child",
        nargs=4,
        metavar=("MODE", "DIR", "OUTPUT", "FILES"),
        help="run one measurement in this process (used by the benchmark)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    options = _parse_arguments()
    if options.child:
        mode, directory, output, files = options.child
        run_child(mode, Path(directory), Path(output), int(files))
    else:
        print(render_table(main(quick=options.quick)))
