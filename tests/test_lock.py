"""Tests of the queue lock with real processes, threads and lock files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from journalq.errors import QueueError, QueueLockedError
from journalq.lock import (
    HOLDER_NAME,
    LOCK_NAME,
    MOUNTINFO_PATH,
    QueueLock,
    _redact_argv,
    break_lock,
    filesystem_type,
    read_holder,
)

# A child that takes the lock, reports it on stdout and waits for stdin to
# close (or for SIGKILL).
HOLDER_SCRIPT = """
import sys
from journalq.lock import QueueLock
lock = QueueLock(sys.argv[1], allow_network_fs=True, mountinfo=sys.argv[2])
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
"""

# A child that tries the lock once and prints what happened as JSON.
CONTENDER_SCRIPT = """
import json, sys, time
from journalq.errors import QueueLockedError
from journalq.lock import QueueLock
lock = QueueLock(sys.argv[1], allow_network_fs=True, mountinfo=sys.argv[2])
start = time.perf_counter()
try:
    lock.acquire()
except QueueLockedError as error:
    print(json.dumps({
        "elapsed": time.perf_counter() - start,
        "pid": error.pid,
        "host": error.host,
        "since": error.since,
        "same_process": error.same_process,
    }))
else:
    print(json.dumps({"acquired": True}))
"""


def start_holder(queue: Path, mountinfo: str | Path = MOUNTINFO_PATH):
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(queue), str(mountinfo)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline() == "locked\n"
    return child


def kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    child.stdin.close()
    child.stdout.close()


def contend(queue: Path, mountinfo: str | Path = MOUNTINFO_PATH) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CONTENDER_SCRIPT, str(queue), str(mountinfo)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(result.stdout)


def nfs_mountinfo(tmp_path: Path, mount_point: Path, fs_type: str = "nfs4") -> Path:
    escaped = str(mount_point).replace("\\", "\\134").replace(" ", "\\040")
    path = tmp_path / "mountinfo"
    path.write_text(
        "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        f"40 22 0:50 / {escaped} rw,relatime shared:7 - {fs_type} "
        "server:/export rw,vers=4.2\n"
    )
    return path


@pytest.fixture
def queue(tmp_path: Path) -> Path:
    directory = tmp_path / "queue"
    directory.mkdir()
    return directory


def test_second_process_gets_holder(queue: Path) -> None:
    with QueueLock(queue):
        outcome = contend(queue)

    assert outcome.get("acquired") is None
    assert outcome["pid"] == os.getpid()
    assert outcome["host"] == socket.gethostname()
    assert datetime.fromisoformat(outcome["since"]).utcoffset().total_seconds() == 0
    assert outcome["same_process"] is False
    assert outcome["elapsed"] < 0.25


def test_killed_holder_frees_lock(queue: Path) -> None:
    child = start_holder(queue)
    with pytest.raises(QueueLockedError) as caught:
        QueueLock(queue).acquire()
    assert caught.value.pid == child.pid

    kill(child)
    lock = QueueLock(queue)
    start = time.perf_counter()
    lock.acquire()
    elapsed = time.perf_counter() - start

    assert elapsed < 0.25
    assert (queue / LOCK_NAME).exists()
    assert lock.holder()["pid"] == os.getpid()
    lock.release()


def test_same_process_second_acquire(queue: Path, tmp_path: Path) -> None:
    first = QueueLock(queue)
    first.acquire()
    alias = tmp_path / "alias"
    alias.symlink_to(queue)
    errors: list[QueueLockedError] = []

    def try_both() -> None:
        for lock in (QueueLock(alias), first):
            try:
                lock.acquire()
            except QueueLockedError as error:
                errors.append(error)

    worker = threading.Thread(target=try_both)
    worker.start()
    worker.join(timeout=10)

    assert not worker.is_alive(), "a second acquire in this process blocked"
    assert len(errors) == 2
    assert all(error.same_process for error in errors)
    assert all(error.path == str(queue) for error in errors)
    first.release()


def test_release_from_another_thread(queue: Path) -> None:
    lock = QueueLock(queue)
    lock.acquire()
    worker = threading.Thread(target=lock.release)
    worker.start()
    worker.join(timeout=10)

    assert not lock.is_held
    assert contend(queue) == {"acquired": True}


def test_release_is_idempotent(queue: Path) -> None:
    lock = QueueLock(queue)
    lock.release()
    lock.acquire()
    lock.release()
    lock.release()

    assert (queue / LOCK_NAME).exists()
    assert read_holder(queue) is None
    lock.acquire()
    assert lock.is_held
    lock.release()


def test_holder_record_fields(queue: Path) -> None:
    with QueueLock(queue) as lock:
        record = lock.holder()
        from_path = read_holder(str(queue) + "/")

    assert record == from_path
    assert record["pid"] == os.getpid()
    assert record["host"] == socket.gethostname()
    assert isinstance(record["version"], str)
    assert isinstance(record["argv"], list)
    age = datetime.now().astimezone() - datetime.fromisoformat(record["since"])
    assert age.total_seconds() < 60


def test_lock_file_private_to_owner(queue: Path) -> None:
    with QueueLock(queue):
        mode = (queue / LOCK_NAME).stat().st_mode & 0o777

    assert mode == 0o600


def test_network_fs_rejected(queue: Path, tmp_path: Path) -> None:
    mountinfo = nfs_mountinfo(tmp_path, queue)

    with pytest.raises(QueueError) as caught:
        QueueLock(queue, mountinfo=mountinfo).acquire()

    assert not isinstance(caught.value, QueueLockedError)
    assert "nfs4" in str(caught.value)
    assert "allow_network_fs=True" in str(caught.value)
    assert not (queue / LOCK_NAME).exists()
    with QueueLock(queue):
        pass


@pytest.mark.parametrize("fs_type", ["nfs", "cifs", "smb3", "fuse.sshfs"])
def test_network_fs_types_rejected(queue: Path, tmp_path: Path, fs_type: str):
    mountinfo = nfs_mountinfo(tmp_path, queue.parent, fs_type)

    with pytest.raises(QueueError, match=fs_type):
        QueueLock(queue, mountinfo=mountinfo).acquire()


def test_network_fs_opt_in_excludes(queue: Path, tmp_path: Path) -> None:
    mountinfo = nfs_mountinfo(tmp_path, queue)
    lock = QueueLock(queue, allow_network_fs=True, mountinfo=mountinfo)
    lock.acquire()

    outcome = contend(queue, mountinfo)
    assert outcome["pid"] == os.getpid()
    assert outcome["host"] == socket.gethostname()
    assert read_holder(queue)["pid"] == os.getpid()

    lock.release()
    assert not (queue / HOLDER_NAME).exists()
    assert (queue / LOCK_NAME).exists()
    assert contend(queue, mountinfo) == {"acquired": True}


def test_network_fs_lock_needs_break(queue: Path, tmp_path: Path) -> None:
    mountinfo = nfs_mountinfo(tmp_path, queue)
    child = start_holder(queue, mountinfo)
    kill(child)

    # The claim lock is fail-closed: the dead holder still holds the queue.
    lock = QueueLock(queue, allow_network_fs=True, mountinfo=mountinfo)
    with pytest.raises(QueueLockedError) as caught:
        lock.acquire()
    assert caught.value.pid == child.pid

    removed = break_lock(queue)
    assert removed
    lock.acquire()
    assert lock.holder()["pid"] == os.getpid()
    lock.release()


def test_filesystem_type_deepest_mount(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 254:0 / / rw - ext4 /dev/vda rw\n"
        "40 22 0:50 / /mnt rw - nfs4 server:/export rw\n"
        "41 40 0:51 / /mnt/local\\040disk rw - xfs /dev/vdb rw\n"
        "42 22 0:52 / /srv rw - tmpfs tmpfs rw\n"
        "43 22 0:53 / /srv rw shared:3 master:2 - cifs //host/share rw\n"
        "not a mountinfo line\n"
    )

    assert filesystem_type("/mnt/data", mountinfo) == "nfs4"
    assert filesystem_type("/mnt/local disk/queue", mountinfo) == "xfs"
    assert filesystem_type("/mnt/localdisk", mountinfo) == "nfs4"
    assert filesystem_type("/srv/queue", mountinfo) == "cifs"
    assert filesystem_type("/home/queue", mountinfo) == "ext4"
    assert filesystem_type("/home", tmp_path / "missing") is None


def test_argv_secrets_redacted() -> None:
    argv = [
        "journalq",
        "add",
        "--password",
        "hunter2",
        "--api-token=abc",
        "sftp://user:pw@host/path",
        "--verbose",
        "plain",
        "--destination-option",
        "secret=S3CR3T",
        "--source-option=aws_secret_access_key=S3CR3T",
        "--source-option",
        "endpoint_url=http://127.0.0.1:9000",
        "ssh://user:p@ss@host/path",
        "--source-option",
        'client_kwargs={"aws_secret_access_key": "S3CR3T", "region_name": "x"}',
        '--destination-option=config_kwargs={"proxies": [{"https": "http://u:S3CR3T@p"}]}',
    ]

    assert _redact_argv(argv) == [
        "journalq",
        "add",
        "--password",
        "***",
        "--api-token=***",
        "sftp://user:***@host/path",
        "--verbose",
        "plain",
        "--destination-option",
        "secret=***",
        "--source-option=aws_secret_access_key=***",
        "--source-option",
        "endpoint_url=http://127.0.0.1:9000",
        "ssh://user:***@host/path",
        "--source-option",
        'client_kwargs={"aws_secret_access_key": "***", "region_name": "x"}',
        '--destination-option=config_kwargs={"proxies": [{"https": "***"}]}',
    ]
