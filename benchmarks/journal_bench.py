"""Journal throughput: group-commit appends and replay, with physical references.

Run ``python -m benchmarks.journal_bench`` (``--quick`` for a smaller run).
Every figure is measured in the same run, on the same disk, so the rows
compare with each other:

* append: 4 producer threads append records with ``sync="batch"``: in
  durable appends of 256 records (a tree expansion adding actions), of 64
  records, and one record at a time with every 8th append durable (workers
  writing start and completion records). Reports records/s and syncs.
* replay: :func:`journalq.journal.scan` of the journal the first append
  wrote, ``decode_batch`` of every frame, and a fold that counts records by
  type.
* references: a buffered write of the same frame bytes with one sync at the
  end (the disk's streaming speed for this data), and one fdatasync per
  record for a few thousand records (what appending without group commit
  would cost).

The records are a mix of journalq's ActionAdded, Started and Completed,
about 75 bytes each when encoded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from journalq import records
from journalq.journal import Journal, scan
from journalq.journal import format as fmt

WORK_DIR = Path(__file__).resolve().parent / "work" / "journal"
QUEUE_ID = uuid.UUID("3a5e7c90-1b2d-4f6a-8c0e-9d7b5a3f1e2c").bytes
PRODUCERS = 4
BULK_BATCH = 256
BATCH = 64
DURABLE_EVERY = 8
APPEND_TARGET = 500_000
REPLAY_TARGET = 500_000


def make_records(count: int) -> list[records.Record]:
    """Return ``count`` records cycling through added, started, completed."""
    built: list[records.Record] = []
    for index in range(count):
        action_id = f"{index:032x}"
        kind = index % 3
        if kind == 0:
            built.append(
                records.ActionAdded(
                    action_id=action_id,
                    kind=records.Kind.COPY_FILE,
                    key=action_id[:16],
                    parent="0" * 32,
                    relpath=f"dir{index % 100}/file{index}.bin",
                    size=4096,
                )
            )
        elif kind == 1:
            built.append(records.Started(action_id=action_id, attempt=1))
        else:
            built.append(
                records.Completed(
                    action_id=action_id,
                    attempt=1,
                    outcome=records.Outcome.COPIED,
                    bytes=4096,
                )
            )
    return built


def run_producers(
    journal: Journal, chunks: list[list[records.Record]], durable: Callable[[int], bool]
) -> None:
    """Append ``chunks`` from PRODUCERS threads, round robin.

    ``durable`` gets the number of the append within its thread.
    """

    def produce(worker: int) -> None:
        mine = range(worker, len(chunks), PRODUCERS)
        for number, index in enumerate(mine):
            journal.append(chunks[index], durable=durable(number))

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(PRODUCERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.flush()


def measure_append(
    directory: Path, data: list[records.Record], chunk: int, durable_every: int
) -> dict[str, Any]:
    """Append ``data`` in chunks of ``chunk`` records from 4 threads."""
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    journal = Journal.open(
        directory,
        QUEUE_ID,
        scan(directory, QUEUE_ID),
        encode_batch=records.encode_batch,
    )
    syncs_at_open = journal.syncs
    started = time.perf_counter()
    run_producers(journal, chunks, lambda number: number % durable_every == 0)
    elapsed = time.perf_counter() - started
    syncs = journal.syncs - syncs_at_open
    journal.close()
    durability = (
        "every append durable"
        if durable_every == 1
        else (f"1 in {durable_every} durable")
    )
    unit = "records" if chunk > 1 else "record"
    return _row(
        f"append, {PRODUCERS} threads, {chunk} {unit} per append, {durability}",
        len(data),
        elapsed,
        syncs,
        APPEND_TARGET,
    )


def measure_replay(directory: Path) -> dict[str, Any]:
    """Scan, decode every frame and fold the records into counts by type."""
    started = time.perf_counter()
    result = scan(directory, QUEUE_ID)
    counts: Counter[type] = Counter()
    for frame in result.frames:
        for record in records.decode_batch(frame.payload):
            counts[type(record)] += 1
    elapsed = time.perf_counter() - started
    total = sum(counts.values())
    return _row("replay: scan + decode_batch + fold", total, elapsed, 0, REPLAY_TARGET)


def measure_buffered_write(directory: Path, source: Path, count: int) -> dict[str, Any]:
    """Write the frame bytes of the appended journal with one buffered file."""
    frames = b"".join(
        path.read_bytes()[fmt.HEADER_SIZE :] for path in sorted(source.glob("*.jq"))
    )
    target = directory / "buffered.bin"
    started = time.perf_counter()
    with target.open("wb") as file:
        for offset in range(0, len(frames), 4096):
            file.write(frames[offset : offset + 4096])
        file.flush()
        os.fdatasync(file.fileno())
    elapsed = time.perf_counter() - started
    return _row("reference: buffered write of the same frames", count, elapsed, 1, None)


def measure_sync_per_record(
    directory: Path, data: list[records.Record]
) -> dict[str, Any]:
    """Write one record at a time, each followed by fdatasync."""
    encoded = [records.encode(record) for record in data]
    target = directory / "per-record.bin"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        started = time.perf_counter()
        for item in encoded:
            os.write(fd, item)
            os.fdatasync(fd)
        elapsed = time.perf_counter() - started
    finally:
        os.close(fd)
    return _row(
        "reference: one fdatasync per record", len(data), elapsed, len(data), None
    )


def _row(
    measure: str, count: int, elapsed: float, syncs: int, target: int | None
) -> dict[str, Any]:
    rate = count / elapsed if elapsed > 0 else float("inf")
    verdict = ""
    if target is not None:
        verdict = f">= {target:,}: {'met' if rate >= target else 'missed'}"
    return {
        "measure": measure,
        "records": f"{count:,}",
        "seconds": f"{elapsed:.3f}",
        "records/s": f"{rate:,.0f}",
        "syncs": f"{syncs:,}",
        "target": verdict,
    }


def main(quick: bool = False) -> list[dict[str, Any]]:
    """Run every measurement and return one row per measurement."""
    count = 100_000 if quick else 400_000
    single = 10_000 if quick else 40_000
    per_record = 500 if quick else 3_000
    data = make_records(count)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK_DIR) as temporary:
        root = Path(temporary)
        bulk = root / "bulk" / "journal"
        return [
            measure_append(bulk, data, BULK_BATCH, 1),
            measure_append(root / "batch" / "journal", data, BATCH, 1),
            measure_append(
                root / "single" / "journal", data[:single], 1, DURABLE_EVERY
            ),
            measure_replay(bulk),
            measure_buffered_write(root, bulk, count),
            measure_sync_per_record(root, data[:per_record]),
        ]


def _print_table(rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        cells = [str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)]
        print("  ".join(cells))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 records")
    _print_table(main(quick=parser.parse_args().quick))
