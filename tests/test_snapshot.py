"""Tests of snapshot files: round trip, damage, foreign queues and crashes."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from durable_helpers import RecordingOps

from journalq import StorageQueue, durable, replay, snapshot
from journalq.errors import CorruptionError, FormatVersionError
from journalq.replay import StateImage, decode_state
from journalq.snapshot import (
    FORMAT_VERSION,
    SnapshotInfo,
    load_latest,
    prune,
    snapshot_name,
    write_snapshot,
)

QUEUE_ID = uuid.UUID("6f1c2a4e-0000-4000-8000-000000000001").bytes
OTHER_ID = uuid.UUID("6f1c2a4e-0000-4000-8000-000000000002").bytes

# A child that writes the snapshot at LSN 20, for JOURNALQ_CRASH_AT to kill.
WRITER_SCRIPT = """
import sys
from journalq.snapshot import write_snapshot
write_snapshot(sys.argv[1], bytes.fromhex(sys.argv[2]), 20, b"state at 20")
"""


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "snapshots"


def file_names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_round_trip(directory: Path) -> None:
    payload = bytes(range(256)) * 3
    info = write_snapshot(directory, QUEUE_ID, 41, payload)

    loaded = load_latest(directory, QUEUE_ID)

    assert loaded == (info, payload)
    assert info.name == "snap-0000000000000029.jqs"
    assert info.path == str(directory / info.name)
    assert info.last_lsn == 41
    assert file_names(directory) == [info.name]


def test_empty_payload_round_trip(directory: Path) -> None:
    info = write_snapshot(directory, QUEUE_ID, 0, b"")

    assert load_latest(directory, QUEUE_ID) == (info, b"")


def test_newest_snapshot_wins(directory: Path) -> None:
    write_snapshot(directory, QUEUE_ID, 10, b"ten")
    write_snapshot(directory, QUEUE_ID, 0x100, b"two hundred fifty-six")
    write_snapshot(directory, QUEUE_ID, 0x20, b"thirty-two")

    info, payload = load_latest(directory, QUEUE_ID)

    assert info.last_lsn == 0x100
    assert payload == b"two hundred fifty-six"


def test_missing_directory_loads_nothing(directory: Path) -> None:
    assert load_latest(directory, QUEUE_ID) is None
    assert prune(directory) == []


def test_crc_is_footer_value(directory: Path) -> None:
    info = write_snapshot(directory, QUEUE_ID, 5, b"payload")
    data = Path(info.path).read_bytes()

    assert info.crc == struct.unpack("<I", data[-4:])[0]


def test_every_byte_flip_detected(directory: Path) -> None:
    previous = write_snapshot(directory, QUEUE_ID, 1, b"previous state")
    newest = write_snapshot(directory, QUEUE_ID, 2, b"newest state, to damage")
    original = Path(newest.path).read_bytes()
    version_bytes = range(8, 10)

    for offset in range(len(original)):
        damaged = bytearray(original)
        damaged[offset] ^= 0xFF
        Path(newest.path).write_bytes(damaged)

        if offset in version_bytes:
            # A higher version looks like a newer format, which stops the load.
            with pytest.raises(FormatVersionError):
                load_latest(directory, QUEUE_ID)
            continue
        loaded = load_latest(directory, QUEUE_ID)

        assert loaded == (previous, b"previous state"), f"flip at byte {offset}"
        assert Path(newest.path + ".broken").read_bytes() == damaged
        os.unlink(newest.path + ".broken")


def test_every_truncation_detected(directory: Path) -> None:
    previous = write_snapshot(directory, QUEUE_ID, 1, b"previous state")
    newest = write_snapshot(directory, QUEUE_ID, 2, b"newest state, to cut")
    original = Path(newest.path).read_bytes()

    for length in range(len(original)):
        Path(newest.path).write_bytes(original[:length])

        loaded = load_latest(directory, QUEUE_ID)

        assert loaded == (previous, b"previous state"), f"cut at {length}"
        assert os.path.exists(newest.path + ".broken")
        os.unlink(newest.path + ".broken")


def test_damaged_newest_falls_back(
    directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_snapshot(directory, QUEUE_ID, 3, b"three")
    write_snapshot(directory, QUEUE_ID, 4, b"four")
    newest = write_snapshot(directory, QUEUE_ID, 5, b"five")
    with open(newest.path, "r+b") as file:
        file.seek(-6, os.SEEK_END)
        file.write(b"X")

    with caplog.at_level(logging.WARNING, logger="journalq.snapshot"):
        info, payload = load_latest(directory, QUEUE_ID)

    assert info.last_lsn == 4
    assert payload == b"four"
    assert file_names(directory) == [
        snapshot_name(3),
        snapshot_name(4),
        snapshot_name(5) + ".broken",
    ]
    assert newest.path in caplog.text
    assert "checksum mismatch" in caplog.text


def test_all_damaged_loads_nothing(directory: Path) -> None:
    for lsn in (1, 2):
        info = write_snapshot(directory, QUEUE_ID, lsn, b"state")
        Path(info.path).write_bytes(b"garbage")

    assert load_latest(directory, QUEUE_ID) is None
    assert file_names(directory) == [
        snapshot_name(1) + ".broken",
        snapshot_name(2) + ".broken",
    ]


def test_renamed_snapshot_is_damaged(directory: Path) -> None:
    write_snapshot(directory, QUEUE_ID, 1, b"one")
    info = write_snapshot(directory, QUEUE_ID, 2, b"two")
    os.replace(info.path, directory / snapshot_name(9))

    loaded_info, _ = load_latest(directory, QUEUE_ID)

    assert loaded_info.last_lsn == 1
    assert (directory / (snapshot_name(9) + ".broken")).exists()


def test_foreign_queue_fails_closed(directory: Path) -> None:
    write_snapshot(directory, QUEUE_ID, 1, b"ours")
    foreign = write_snapshot(directory, OTHER_ID, 2, b"theirs")

    with pytest.raises(CorruptionError) as caught:
        load_latest(directory, QUEUE_ID)

    assert caught.value.path == foreign.path
    assert caught.value.offset == 12
    assert OTHER_ID.hex() in str(caught.value)
    assert QUEUE_ID.hex() in str(caught.value)
    assert os.path.exists(foreign.path)


def test_newer_format_fails_closed(directory: Path) -> None:
    info = write_snapshot(directory, QUEUE_ID, 1, b"state")
    data = bytearray(Path(info.path).read_bytes())
    struct.pack_into("<H", data, 8, FORMAT_VERSION + 1)
    struct.pack_into("<I", data, len(data) - 4, snapshot._masked_crc32c(data[:-4]))
    Path(info.path).write_bytes(data)

    with pytest.raises(FormatVersionError) as caught:
        load_latest(directory, QUEUE_ID)

    assert caught.value.found == FORMAT_VERSION + 1
    assert caught.value.path == info.path
    assert os.path.exists(info.path)


def test_masked_crc_matches_leveldb() -> None:
    # CRC32C("123456789") is 0xe3069283. Masking rotates it right by 15 bits
    # and adds 0xa282ead8, modulo 2**32.
    rotated = ((0xE3069283 >> 15) | (0xE3069283 << 17)) & 0xFFFFFFFF

    assert snapshot._masked_crc32c(b"123456789") == (rotated + 0xA282EAD8) % 2**32


def test_leftover_temporary_deleted(directory: Path) -> None:
    info = write_snapshot(directory, QUEUE_ID, 1, b"one")
    (directory / (snapshot_name(2) + ".tmp")).write_bytes(b"half a snapshot")

    assert load_latest(directory, QUEUE_ID) == (info, b"one")
    assert file_names(directory) == [snapshot_name(1)]


@pytest.mark.parametrize(
    ("crash_point", "expected_lsn"),
    [("snapshot.before_replace", 10), ("snapshot.after_replace", 20)],
)
def test_crash_leaves_old_or_new(
    directory: Path, crash_point: str, expected_lsn: int
) -> None:
    write_snapshot(directory, QUEUE_ID, 10, b"state at 10")
    environment = dict(os.environ, JOURNALQ_CRASH_AT=crash_point)

    child = subprocess.run(
        [sys.executable, "-c", WRITER_SCRIPT, str(directory), QUEUE_ID.hex()],
        env=environment,
        capture_output=True,
        timeout=30,
        check=False,
    )
    info, payload = load_latest(directory, QUEUE_ID)

    assert child.returncode == -signal.SIGKILL
    assert info.last_lsn == expected_lsn
    assert payload == f"state at {expected_lsn}".encode()
    assert not [name for name in file_names(directory) if ".broken" in name]
    assert not [name for name in file_names(directory) if name.endswith(".tmp")]


def test_prune_keeps_two(directory: Path) -> None:
    for lsn in (5, 1, 30, 7):
        write_snapshot(directory, QUEUE_ID, lsn, b"state")
    (directory / (snapshot_name(2) + ".broken")).write_bytes(b"kept for study")

    deleted = prune(directory)

    assert deleted == [snapshot_name(1), snapshot_name(5)]
    assert file_names(directory) == [
        snapshot_name(2) + ".broken",
        snapshot_name(7),
        snapshot_name(30),
    ]
    assert prune(directory) == []


def test_prune_rejects_keeping_none(directory: Path) -> None:
    write_snapshot(directory, QUEUE_ID, 1, b"state")

    with pytest.raises(ValueError, match="at least 1"):
        prune(directory, keep=0)


def test_invalid_arguments_rejected(directory: Path) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        write_snapshot(directory, b"short", 1, b"")
    with pytest.raises(ValueError, match="outside"):
        write_snapshot(directory, QUEUE_ID, -1, b"")
    with pytest.raises(ValueError, match="16 bytes"):
        load_latest(directory, b"")


def test_write_syncs_before_and_after_replace(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory.mkdir()
    recording = RecordingOps()
    monkeypatch.setattr(durable, "ops", recording)

    info = write_snapshot(directory, QUEUE_ID, 3, b"state")

    assert isinstance(info, SnapshotInfo)
    assert recording.steps == [
        f"fsync_dir {directory.parent.name}",
        "fsync",
        f"replace {info.name}.tmp {info.name}",
        "fsync_dir snapshots",
    ]


def test_state_image_pieces_match_whole_encoding(tmp_path, monkeypatch):
    """Writing a snapshot in pieces gives the bytes one encoding would."""
    monkeypatch.setattr("journalq.replay._PIECE_ACTIONS", 5)
    source, destination = tmp_path / "src", tmp_path / "dst"
    for index in range(40):
        (source / f"d{index % 3}").mkdir(parents=True, exist_ok=True)
        (source / f"d{index % 3}" / f"f{index}").write_bytes(b"x" * index)
    with StorageQueue(str(source), str(destination), name=str(tmp_path / "q")) as queue:
        queue.copy_tree(str(source), str(destination))
        queue.run()
        queue.state.compact()
        state = queue.state
        image = StateImage(state)
        pieces = list(image.pieces())

    kinds = [type(action) is replay.CompactAction for action in state.actions.values()]
    layout = [len(list(run)) for _, run in itertools.groupby(kinds)]
    if kinds and kinds[0]:
        layout.insert(0, 0)
    whole = replay._encoder.encode(
        replay._StateImage(
            state.created,
            state.last_lsn,
            [a for a in state.actions.values() if type(a) is replay.ActionState],
            state.digests.entries(),
            state.snapshot,
            [a for a in state.actions.values() if type(a) is replay.CompactAction],
            layout,
            state.bytes,
            state.skipped,
            state.digests.compacted,
            state.counts,
            state.identical_when_listed,
            state.part_bytes,
            state.part_copies,
        )
    )
    assert len(pieces) > 4
    assert b"".join(pieces) == whole
    assert image.size == len(whole)
    restored = decode_state(b"".join(pieces))
    assert restored.status_counts() == state.status_counts()


@pytest.mark.parametrize("length", [0, 15, 16, 65_535, 65_536, 70_000])
def test_array_header_matches_msgpack(length):
    items = [None] * length
    encoded = replay._encoder.encode(items)
    assert replay._array_header(length) == encoded[: len(encoded) - length]
