"""Tests of the inbox with real files, concurrent posting processes and kills."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from durable_helpers import RecordingOps

from journalq import durable, inbox
from journalq.errors import QueueError
from journalq.inbox import INBOX_DIR, REJECTED_DIR, pending, post, remove

# A child that posts COUNT payloads "<pid>:<i>" after reading a line on stdin.
POSTER_SCRIPT = """
import os, sys
from journalq.inbox import post
queue, count = sys.argv[1], int(sys.argv[2])
sys.stdin.readline()
for i in range(count):
    post(queue, f"{os.getpid()}:{i}".encode())
"""

# A child that posts one payload, for JOURNALQ_CRASH_AT to kill.
CRASHING_POSTER_SCRIPT = """
import sys
from journalq.inbox import post
post(sys.argv[1], b"never acknowledged")
"""


@pytest.fixture
def queue(tmp_path: Path) -> Path:
    directory = tmp_path / "queue"
    directory.mkdir()
    return directory


def inbox_names(queue: Path) -> list[str]:
    return sorted(os.listdir(queue / INBOX_DIR))


def test_post_then_pending(queue: Path) -> None:
    payloads = [b"first", b"", b"third" * 1000]
    names = [post(queue, payload) for payload in payloads]

    requests = pending(queue)

    assert requests == list(zip(names, payloads, strict=True))
    assert names == sorted(names)
    assert inbox_names(queue) == names


def test_pending_without_inbox(queue: Path) -> None:
    assert pending(queue) == []


def test_post_to_missing_queue(tmp_path: Path) -> None:
    with pytest.raises(QueueError, match="does not exist"):
        post(tmp_path / "missing", b"request")


def test_names_sort_in_posting_order(queue: Path) -> None:
    names = [post(queue, str(i).encode()) for i in range(50)]

    assert [payload for _, payload in pending(queue)] == [
        str(i).encode() for i in range(50)
    ]
    assert names == sorted(names)
    assert len(set(names)) == 50


def test_concurrent_posters_all_delivered(queue: Path) -> None:
    posters, count = 4, 25
    children = [
        subprocess.Popen(
            [sys.executable, "-c", POSTER_SCRIPT, str(queue), str(count)],
            stdin=subprocess.PIPE,
            text=True,
        )
        for _ in range(posters)
    ]
    for child in children:
        child.stdin.write("go\n")
        child.stdin.close()
    for child in children:
        assert child.wait(timeout=60) == 0

    requests = pending(queue)
    by_poster: dict[int, list[int]] = {}
    for _, payload in requests:
        pid, index = payload.decode().split(":")
        by_poster.setdefault(int(pid), []).append(int(index))

    assert len(requests) == posters * count
    assert sorted(by_poster) == sorted(child.pid for child in children)
    for indexes in by_poster.values():
        assert indexes == list(range(count))


def test_remove_is_durable_and_idempotent(queue: Path) -> None:
    first = post(queue, b"one")
    second = post(queue, b"two")

    remove(queue, [first])
    remove(queue, [first])

    assert pending(queue) == [(second, b"two")]
    assert inbox_names(queue) == [second]


def test_remove_rejects_other_names(queue: Path) -> None:
    post(queue, b"one")

    with pytest.raises(ValueError, match="not the name"):
        remove(queue, ["../FORMAT"])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: data[: len(data) // 2], "does not match the file size"),
        (lambda data: data[:-1], "does not match the file size"),
        (lambda data: data[:20] + b"X" + data[21:], "checksum mismatch"),
        (lambda data: b"XXXX" + data[4:], "invalid magic"),
        (lambda data: data + b"\0", "does not match the file size"),
        (lambda data: b"", "shorter than the minimum"),
    ],
    ids=["torn", "cut footer", "flipped byte", "magic", "appended", "empty"],
)
def test_damaged_request_rejected(
    queue: Path, caplog: pytest.LogCaptureFixture, damage, reason: str
) -> None:
    before = post(queue, b"before")
    damaged = post(queue, b"a request that gets damaged")
    after = post(queue, b"after")
    path = queue / INBOX_DIR / damaged
    original = path.read_bytes()
    path.write_bytes(damage(original))

    with caplog.at_level(logging.WARNING, logger="journalq.inbox"):
        requests = pending(queue)

    assert requests == [(before, b"before"), (after, b"after")]
    assert (queue / INBOX_DIR / REJECTED_DIR / damaged).read_bytes() == damage(original)
    assert not path.exists()
    assert damaged in caplog.text
    assert reason in caplog.text


def test_every_byte_flip_rejected(queue: Path) -> None:
    name = post(queue, b"payload to damage")
    path = queue / INBOX_DIR / name
    rejected = queue / INBOX_DIR / REJECTED_DIR / name
    original = path.read_bytes()

    for offset in range(len(original)):
        damaged = bytearray(original)
        damaged[offset] ^= 0xFF
        path.write_bytes(damaged)

        assert pending(queue) == [], f"flip at byte {offset}"
        assert rejected.read_bytes() == damaged
        os.unlink(rejected)


def test_newer_version_rejected(queue: Path) -> None:
    name = post(queue, b"from a newer journalq")
    path = queue / INBOX_DIR / name
    data = bytearray(path.read_bytes())
    data[4] = inbox.FORMAT_VERSION + 1
    path.write_bytes(data)

    assert pending(queue) == []
    assert (queue / INBOX_DIR / REJECTED_DIR / name).exists()


def test_foreign_file_rejected(queue: Path) -> None:
    post(queue, b"real")
    (queue / INBOX_DIR / "notes.txt").write_text("not a request")

    assert [payload for _, payload in pending(queue)] == [b"real"]
    assert (queue / INBOX_DIR / REJECTED_DIR / "notes.txt").exists()


def test_crash_before_rename_leaves_nothing(queue: Path) -> None:
    environment = dict(os.environ, JOURNALQ_CRASH_AT="inbox.before_rename")
    acknowledged = post(queue, b"acknowledged")

    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_POSTER_SCRIPT, str(queue)], env=environment
    )
    child.wait(timeout=30)
    leftovers = [name for name in inbox_names(queue) if name.endswith(".tmp")]

    assert child.returncode == -signal.SIGKILL
    assert len(leftovers) == 1
    assert f"-{child.pid:010d}-" in leftovers[0]
    assert pending(queue) == [(acknowledged, b"acknowledged")]
    # The poster is dead, so its temporary can never become a request.
    assert inbox_names(queue) == [acknowledged]


def test_live_poster_temporary_kept(queue: Path) -> None:
    name = post(queue, b"done")
    in_progress = f"{'1' * 20}-{os.getpid():010d}-0123abcd.req.tmp"
    (queue / INBOX_DIR / in_progress).write_bytes(b"half written")

    assert pending(queue) == [(name, b"done")]
    assert (queue / INBOX_DIR / in_progress).exists()


def test_post_syncs_before_and_after_rename(
    queue: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (queue / INBOX_DIR).mkdir()
    recording = RecordingOps()
    monkeypatch.setattr(durable, "ops", recording)

    name = post(queue, b"request")

    assert recording.steps == [
        "fsync_dir queue",
        "fsync",
        f"replace {name}.tmp {name}",
        f"fsync_dir {INBOX_DIR}",
    ]


def test_modules_import_no_fsspec_or_filelock() -> None:
    code = (
        "import sys, journalq.inbox, journalq.snapshot; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fsspec', 'filelock')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    assert result.stdout.strip() == "[]"
