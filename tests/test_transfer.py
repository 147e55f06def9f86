"""Tests for journalq.transfer: sinks, copies, temporary files and syncs."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import unicodedata
from pathlib import Path

import fsspec
import pytest
import xxhash
from fsspec.callbacks import Callback
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.memory import MemoryFileSystem
from hypothesis import given, settings
from hypothesis import strategies as st

from journalq import compare, durable, retry, transfer
from journalq.transfer import CopyInterrupted, copy_file, open_sink

ACTION_ID = "0123456789abcdef0123456789abcdef"
CHUNK = 64 * 1024

NFC_NAME = unicodedata.normalize("NFC", "café résumé")
NFD_NAME = unicodedata.normalize("NFD", "café résumé")
AWKWARD_NAMES = [
    "with space.txt",
    "  leading spaces",
    "trailing space ",
    "plus+percent%hash#question?",
    "amp&dollar$at@colon:tilde~semi;",
    "quote'double\"back`tick",
    "[brackets]{braces}(parens)",
    "日本語のファイル.txt",
    "emoji 📦.bin",
    NFC_NAME,
    NFD_NAME,
    "-starts-with-dash",
    ".hidden",
]


class RecordingCallback(Callback):
    """An fsspec callback that keeps every size and update it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.updates: list[int] = []

    def set_size(self, size):
        self.sizes.append(size)
        super().set_size(size)

    def relative_update(self, inc=1):
        self.updates.append(inc)
        super().relative_update(inc)


class RecordingOps(durable.FileOps):
    """The real file operations, with the name of each call recorded."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def fsync(self, fd):
        self.calls.append("fsync")
        super().fsync(fd)

    def fsync_dir(self, path):
        self.calls.append("fsync_dir")
        super().fsync_dir(path)

    def replace(self, source, target):
        self.calls.append("replace")
        super().replace(source, target)


@pytest.fixture
def recording_ops(monkeypatch):
    ops = RecordingOps()
    monkeypatch.setattr(durable, "ops", ops)
    return ops


def copy_local(local_fs, source: Path, destination: Path, **options):
    """Copy ``source`` to ``destination`` with its mtime, as the executor does."""
    info = compare.stat(local_fs, str(source))
    with open_sink(local_fs, str(destination), action_id=ACTION_ID, attempt=1) as sink:
        result = copy_file(local_fs, str(source), sink, **options)
        sink.commit(info.mtime_ns)
    return result


def leftovers(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if ".jq-" in name)


# temp_path ---------------------------------------------------------------------


def test_temp_path_format():
    path = transfer.temp_path("/dst/dir/file.txt", ACTION_ID, 3)
    assert path == "/dst/dir/.file.txt.jq-01234567-3.tmp"


def test_temp_path_relative_and_bare():
    assert transfer.temp_path("file", ACTION_ID, 1) == ".file.jq-01234567-1.tmp"
    assert transfer.temp_path("a/b", "short", 2) == "a/.b.jq-short-2.tmp"


def test_temp_path_with_nonce():
    path = transfer.temp_path("/dst/file.txt", ACTION_ID, 1, "a1b2c3d4e5f6")
    assert path == "/dst/.file.txt.jq-01234567-1-a1b2c3d4e5f6.tmp"


def test_new_nonces_differ():
    nonces = {transfer.new_nonce() for _ in range(1000)}
    assert len(nonces) == 1000
    assert all(len(nonce) == 12 for nonce in nonces)


def test_temp_path_long_name_fits_name_max():
    name = "é" * 127  # 254 bytes in UTF-8
    path = transfer.temp_path(f"/d/{name}", ACTION_ID, 12)
    temporary = path.rpartition("/")[2]
    assert len(os.fsencode(temporary)) <= transfer.NAME_MAX
    assert temporary.endswith(".jq-01234567-12.tmp")
    assert name.startswith(temporary[1 : -len(".jq-01234567-12.tmp")])


def test_long_name_temp_swept(tmp_path, local_fs):
    name = "x" * 250
    destination = tmp_path / name
    temporary = Path(transfer.temp_path(str(destination), ACTION_ID, 1))
    temporary.write_bytes(b"partial")

    assert transfer.sweep_temporaries(local_fs, str(destination), ACTION_ID) == 1
    assert not temporary.exists()


# Local sink ----------------------------------------------------------------------


def test_local_copy_replaces_and_sets_mtime(tmp_path, local_fs):
    source = tmp_path / "source.bin"
    source.write_bytes(b"new content")
    os.utime(source, ns=(1, 1_234_567_890_123_456_789))
    destination = tmp_path / "destination.bin"
    destination.write_bytes(b"old")

    result = copy_local(local_fs, source, destination)

    assert destination.read_bytes() == b"new content"
    assert destination.stat().st_mtime_ns == 1_234_567_890_123_456_789
    assert result == transfer.CopyResult(
        bytes=11, digest=f"xxh128:{xxhash.xxh128(b'new content').hexdigest()}"
    )
    assert leftovers(tmp_path) == []


def test_local_sink_creates_parents(tmp_path, local_fs):
    destination = tmp_path / "a" / "b" / "c" / "file"
    with open_sink(local_fs, str(destination), action_id=ACTION_ID, attempt=1) as sink:
        sink.write(b"data")
        sink.commit(None)
    assert destination.read_bytes() == b"data"


def test_local_sink_file_url(tmp_path, local_fs):
    destination = tmp_path / "url target"
    url = f"file://{destination}"
    with open_sink(local_fs, url, action_id=ACTION_ID, attempt=1) as sink:
        sink.write(b"data")
        sink.commit()
    assert destination.read_bytes() == b"data"


def test_local_sink_invisible_until_commit(tmp_path, local_fs):
    destination = tmp_path / "file"
    destination.write_bytes(b"old")
    sink = open_sink(local_fs, str(destination), action_id=ACTION_ID, attempt=4)
    sink.write(b"new new new")

    assert destination.read_bytes() == b"old"
    assert leftovers(tmp_path) == [".file.jq-01234567-4.tmp"]
    sink.commit()
    assert destination.read_bytes() == b"new new new"
    assert leftovers(tmp_path) == []


def test_local_sink_abort_keeps_old(tmp_path, local_fs):
    destination = tmp_path / "file"
    destination.write_bytes(b"old")
    sink = open_sink(local_fs, str(destination), action_id=ACTION_ID, attempt=1)
    sink.write(b"new")
    sink.abort()
    sink.abort()

    assert destination.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_sink_context_aborts_on_error(tmp_path, local_fs):
    destination = tmp_path / "file"
    destination.write_bytes(b"old")

    def write_and_fail() -> None:
        path = str(destination)
        with open_sink(local_fs, path, action_id=ACTION_ID, attempt=1) as sink:
            sink.write(b"new")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_and_fail()
    assert destination.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_sink_context_without_commit_aborts(tmp_path, local_fs):
    destination = tmp_path / "file"
    with open_sink(local_fs, str(destination), action_id=ACTION_ID, attempt=1) as sink:
        sink.write(b"never committed")
    assert not destination.exists()
    assert leftovers(tmp_path) == []


def test_local_sink_rejects_use_after_commit(tmp_path, local_fs):
    sink = open_sink(local_fs, str(tmp_path / "f"), action_id=ACTION_ID, attempt=1)
    sink.commit()
    with pytest.raises(ValueError, match="already committed or aborted"):
        sink.write(b"late")
    with pytest.raises(ValueError, match="already committed or aborted"):
        sink.commit()


def test_local_sink_replaces_stale_temporary(tmp_path, local_fs):
    destination = tmp_path / "file"
    stale = tmp_path / os.path.basename(
        transfer.temp_path(str(destination), ACTION_ID, 1)
    )
    stale.write_bytes(b"left by a killed process")
    sink = open_sink(local_fs, str(destination), action_id=ACTION_ID, attempt=1)
    sink.write(b"fresh")
    sink.commit()
    assert destination.read_bytes() == b"fresh"
    assert not stale.exists()


def test_local_commit_failure_keeps_old(tmp_path, local_fs):
    destination = tmp_path / "target"
    destination.mkdir()
    (destination / "inside").write_bytes(b"keep")
    sink = open_sink(local_fs, str(destination), action_id=ACTION_ID, attempt=1)
    sink.write(b"file content")

    # Renaming a file over a non-empty directory fails.
    with pytest.raises(IsADirectoryError):
        sink.commit()
    assert (destination / "inside").read_bytes() == b"keep"
    assert leftovers(tmp_path) == []


def test_local_sink_fsync_steps(tmp_path, local_fs, recording_ops):
    with open_sink(
        local_fs, str(tmp_path / "f"), action_id=ACTION_ID, attempt=1
    ) as sink:
        sink.write(b"data")
        sink.commit()
    assert recording_ops.calls == ["fsync", "replace", "fsync_dir"]


def test_local_sink_new_parent_synced(tmp_path, local_fs, recording_ops):
    path = tmp_path / "new" / "f"
    with open_sink(local_fs, str(path), action_id=ACTION_ID, attempt=1) as sink:
        sink.commit()
    assert recording_ops.calls == ["fsync_dir", "fsync", "replace", "fsync_dir"]


def test_local_sink_without_fsync(tmp_path, local_fs, recording_ops):
    path = tmp_path / "new" / "f"
    sink = open_sink(local_fs, str(path), action_id=ACTION_ID, attempt=1, fsync=False)
    sink.write(b"data")
    sink.commit()
    assert recording_ops.calls == ["replace"]
    assert path.read_bytes() == b"data"


# Copy contents -------------------------------------------------------------------


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_local_copy_awkward_names(tmp_path, local_fs, name):
    (tmp_path / "src").mkdir()
    source = tmp_path / "src" / name
    source.write_bytes(name.encode())
    destination = tmp_path / "dst" / name

    copy_local(local_fs, source, destination)

    assert destination.read_bytes() == name.encode()
    assert transfer.sweep_temporaries(local_fs, str(destination), ACTION_ID) == 0


def test_nfc_nfd_names_stay_distinct(tmp_path, local_fs):
    assert NFC_NAME != NFD_NAME
    source = tmp_path / "src"
    source.mkdir()
    (source / NFC_NAME).write_bytes(b"composed")
    (source / NFD_NAME).write_bytes(b"decomposed")

    for name in (NFC_NAME, NFD_NAME):
        copy_local(local_fs, source / name, tmp_path / "dst" / name)

    names = sorted(os.listdir(os.fsencode(tmp_path / "dst")))
    assert names == sorted([os.fsencode(NFC_NAME), os.fsencode(NFD_NAME)])
    assert (tmp_path / "dst" / NFC_NAME).read_bytes() == b"composed"
    assert (tmp_path / "dst" / NFD_NAME).read_bytes() == b"decomposed"


def test_memory_copy_awkward_names(local_fs, memory_fs, tmp_path):
    for name in AWKWARD_NAMES:
        (tmp_path / name).write_bytes(name.encode())
        path = f"/dst/{name}"
        with open_sink(memory_fs, path, action_id=ACTION_ID, attempt=1) as sink:
            copy_file(local_fs, str(tmp_path / name), sink)
            sink.commit()

    for name in AWKWARD_NAMES:
        assert memory_fs.cat_file(f"/dst/{name}") == name.encode()
    assert len(memory_fs.store) == len(AWKWARD_NAMES)


@pytest.mark.parametrize("chunk_size", [1, 7, CHUNK])
def test_local_copy_zero_bytes(tmp_path, local_fs, chunk_size):
    source = tmp_path / "empty"
    source.write_bytes(b"")
    destination = tmp_path / "copy"
    destination.write_bytes(b"old content")
    callback = RecordingCallback()

    result = copy_local(
        local_fs, source, destination, chunk_size=chunk_size, callback=callback
    )

    assert destination.read_bytes() == b""
    assert result.bytes == 0
    assert result.digest == f"xxh128:{xxhash.xxh128(b'').hexdigest()}"
    assert callback.sizes == [0]
    assert sum(callback.updates) == 0


def test_memory_copy_zero_bytes(memory_fs):
    memory_fs.pipe_file("/src/empty", b"")
    with open_sink(memory_fs, "/dst/empty", action_id=ACTION_ID, attempt=1) as sink:
        result = copy_file(memory_fs, "/src/empty", sink)
        sink.commit()
    assert memory_fs.cat_file("/dst/empty") == b""
    assert result.bytes == 0


@pytest.mark.parametrize("algorithm", ["xxh128", "md5", "sha256"])
def test_large_local_copy_digest(tmp_path, local_fs, algorithm):
    data = os.urandom(3 * 1024 * 1024 + 4321)
    source = tmp_path / "large.bin"
    source.write_bytes(data)
    callback = RecordingCallback()

    result = copy_local(
        local_fs, source, tmp_path / "out.bin", algorithm=algorithm, callback=callback
    )

    expected = hashlib.new(algorithm) if algorithm != "xxh128" else xxhash.xxh128()
    expected.update(data)
    assert result.digest == f"{algorithm}:{expected.hexdigest()}"
    assert result.bytes == len(data)
    assert (tmp_path / "out.bin").read_bytes() == data
    assert callback.sizes == [len(data)]
    assert sum(callback.updates) == len(data)
    assert callback.value == len(data)
    assert max(callback.updates) <= transfer.digest.CHUNK


def test_large_memory_copy_digest(memory_fs):
    data = os.urandom(2 * 1024 * 1024 + 17)
    memory_fs.pipe_file("/src/large.bin", data)
    callback = RecordingCallback()

    with open_sink(memory_fs, "/dst/large.bin", action_id=ACTION_ID, attempt=1) as sink:
        result = copy_file(
            memory_fs, "/src/large.bin", sink, chunk_size=CHUNK, callback=callback
        )
        sink.commit(5_000_000_000)

    assert result.digest == f"xxh128:{xxhash.xxh128(data).hexdigest()}"
    assert memory_fs.cat_file("/dst/large.bin") == data
    assert callback.sizes == [len(data)]
    assert sum(callback.updates) == len(data)
    assert len(callback.updates) == -(-len(data) // CHUNK)
    assert compare.stat(memory_fs, "/dst/large.bin").mtime_ns == 5_000_000_000


def test_small_local_file_single_update(tmp_path, local_fs):
    source = tmp_path / "small"
    source.write_bytes(b"x" * 1000)
    callback = RecordingCallback()
    copy_local(local_fs, source, tmp_path / "copy", callback=callback)
    assert callback.updates == [1000]


def test_local_copy_exact_chunk_multiple(tmp_path, local_fs):
    data = os.urandom(4 * 4096)
    source = tmp_path / "source"
    source.write_bytes(data)
    result = copy_local(local_fs, source, tmp_path / "copy", chunk_size=4096)
    assert (tmp_path / "copy").read_bytes() == data
    assert result.bytes == len(data)


@pytest.mark.skipif(not os.path.exists("/proc/version"), reason="needs Linux /proc")
def test_local_copy_size_zero_stat(tmp_path, local_fs):
    """/proc files report size 0 but have content, so the chunk loop runs."""
    expected = Path("/proc/version").read_bytes()
    assert os.stat("/proc/version").st_size == 0

    result = copy_local(local_fs, Path("/proc/version"), tmp_path / "version")
    assert (tmp_path / "version").read_bytes() == expected
    assert result.bytes == len(expected)


def test_local_sink_parent_is_file(tmp_path, local_fs):
    (tmp_path / "plain").write_bytes(b"a file")
    with pytest.raises(NotADirectoryError):
        open_sink(
            local_fs, str(tmp_path / "plain" / "f"), action_id=ACTION_ID, attempt=1
        )
    assert (tmp_path / "plain").read_bytes() == b"a file"


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=3000), chunk_size=st.integers(1, 1024))
def test_local_copy_any_content(data, chunk_size):
    local_fs = fsspec.filesystem("file")
    with tempfile.TemporaryDirectory() as directory:
        source = Path(directory) / "source"
        source.write_bytes(data)
        destination = Path(directory) / "destination"

        result = copy_local(local_fs, source, destination, chunk_size=chunk_size)

        assert destination.read_bytes() == data
        assert result.digest == f"xxh128:{xxhash.xxh128(data).hexdigest()}"


def test_generic_filesystem_copy(tmp_path, local_fs):
    """DirFileSystem is neither local nor memory: the buffered sink runs."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "file").write_bytes(b"generic content")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "file").write_bytes(b"old")
    source_fs = DirFileSystem(path=str(tmp_path / "src"), fs=local_fs)
    destination_fs = DirFileSystem(path=str(tmp_path / "dst"), fs=local_fs)

    sink = open_sink(destination_fs, "sub/file", action_id=ACTION_ID, attempt=1)
    assert type(sink) is transfer.BufferedSink
    with sink:
        result = copy_file(source_fs, "file", sink, chunk_size=4)
        assert not (tmp_path / "dst" / "sub").exists()
        sink.commit()

    assert (tmp_path / "dst" / "sub" / "file").read_bytes() == b"generic content"
    assert result.bytes == 15


# Failures and interruptions -------------------------------------------------------


class StopAfter:
    """A ``should_stop`` that turns true after ``calls`` calls."""

    def __init__(self, calls: int) -> None:
        self.remaining = calls

    def __call__(self) -> bool:
        self.remaining -= 1
        return self.remaining < 0


def test_local_interrupt_keeps_old_destination(tmp_path, local_fs):
    source = tmp_path / "source"
    source.write_bytes(os.urandom(10 * 4096))
    destination = tmp_path / "destination"
    destination.write_bytes(b"old content")

    with pytest.raises(CopyInterrupted) as info:
        copy_local(
            local_fs, source, destination, chunk_size=4096, should_stop=StopAfter(3)
        )

    assert info.value.bytes_copied == 3 * 4096
    assert info.value.path == str(source)
    assert "stopped after 12288 bytes" in str(info.value)
    assert destination.read_bytes() == b"old content"
    assert leftovers(tmp_path) == []


def test_local_interrupt_before_first_chunk(tmp_path, local_fs):
    source = tmp_path / "source"
    source.write_bytes(b"small")
    destination = tmp_path / "destination"

    with pytest.raises(CopyInterrupted):
        copy_local(local_fs, source, destination, should_stop=lambda: True)
    assert not destination.exists()
    assert leftovers(tmp_path) == []


def test_memory_interrupt_leaves_nothing(memory_fs):
    memory_fs.pipe_file("/src/file", os.urandom(5 * 1024))
    memory_fs.pipe_file("/dst/file", b"old content")

    def copy_until_stopped() -> None:
        with open_sink(memory_fs, "/dst/file", action_id=ACTION_ID, attempt=1) as sink:
            copy_file(
                memory_fs, "/src/file", sink, chunk_size=1024, should_stop=StopAfter(2)
            )
            sink.commit()

    with pytest.raises(CopyInterrupted):
        copy_until_stopped()

    assert memory_fs.cat_file("/dst/file") == b"old content"
    assert sorted(memory_fs.store) == ["/dst/file", "/src/file"]


def test_memory_sink_invisible_until_commit(memory_fs):
    sink = open_sink(memory_fs, "/dst/new", action_id=ACTION_ID, attempt=1)
    sink.write(b"content")
    assert not memory_fs.exists("/dst/new")
    sink.commit()
    assert memory_fs.cat_file("/dst/new") == b"content"


def test_copy_interrupted_is_transient_and_pickles():
    import pickle

    error = CopyInterrupted("/src/a", 10)
    assert retry.classify(error) == "transient"
    restored = pickle.loads(pickle.dumps(error))
    assert restored.bytes_copied == 10
    assert str(restored) == str(error)


class FailingFile:
    def __init__(self, data: bytes, fail_at: int) -> None:
        self.data = data
        self.fail_at = fail_at
        self.position = 0
        self.size = len(data)

    def read(self, count: int) -> bytes:
        if self.position >= self.fail_at:
            raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer")
        chunk = self.data[self.position : self.position + count]
        self.position += len(chunk)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None


class FailingSourceFileSystem(MemoryFileSystem):
    """A source whose reads fail midway, like a dropped network connection.

    No local or memory file fails in the middle of a read on demand, so
    this filesystem replaces a remote source that loses its connection.
    """

    def _open(self, path, mode="rb", **kwargs):
        return FailingFile(b"n" * 10_000, fail_at=4096)


@pytest.mark.parametrize("destination_kind", ["local", "memory"])
def test_source_failure_keeps_old_destination(
    tmp_path, local_fs, memory_fs, destination_kind
):
    if destination_kind == "local":
        destination_fs, destination = local_fs, str(tmp_path / "destination")
        Path(destination).write_bytes(b"old content")
    else:
        destination_fs, destination = memory_fs, "/dst/destination"
        memory_fs.pipe_file(destination, b"old content")
    source_fs = FailingSourceFileSystem()

    sink = open_sink(destination_fs, destination, action_id=ACTION_ID, attempt=1)
    with pytest.raises(ConnectionResetError):
        copy_file(source_fs, "/anything", sink, chunk_size=1024)

    assert destination_fs.cat_file(destination) == b"old content"
    assert leftovers(tmp_path) == []
    assert sink.committed is False


def test_dangling_source_link_names_link(tmp_path, local_fs):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "missing-target")
    sink = open_sink(local_fs, str(tmp_path / "out"), action_id=ACTION_ID, attempt=1)

    with pytest.raises(FileNotFoundError, match="symbolic link") as info:
        copy_file(local_fs, str(link), sink)
    assert info.value.filename == str(link)
    assert "missing-target" in str(info.value)
    assert leftovers(tmp_path) == []


def test_directory_source_raises(tmp_path, local_fs):
    (tmp_path / "dir").mkdir()
    sink = open_sink(local_fs, str(tmp_path / "out"), action_id=ACTION_ID, attempt=1)
    with pytest.raises(IsADirectoryError) as info:
        copy_file(local_fs, str(tmp_path / "dir"), sink)
    assert info.value.filename == str(tmp_path / "dir")


def test_source_symlink_to_file_followed(tmp_path, local_fs):
    (tmp_path / "target").write_bytes(b"through link")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    copy_local(local_fs, tmp_path / "link", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"through link"
    assert not (tmp_path / "out").is_symlink()


# Crashes and sweeping -------------------------------------------------------------

CHILD_COPY = textwrap.dedent(
    """
    import sys
    import fsspec
    from journalq import transfer

    fs = fsspec.filesystem("file")
    source, destination, action_id = sys.argv[1:4]
    with transfer.open_sink(fs, destination, action_id=action_id, attempt=2) as sink:
        transfer.copy_file(fs, source, sink)
        sink.commit(None)
    """
)


def run_child_copy(source: Path, destination: Path, crash_at: str):
    environment = {**os.environ, "JOURNALQ_CRASH_AT": crash_at}
    return subprocess.run(
        [sys.executable, "-c", CHILD_COPY, str(source), str(destination), ACTION_ID],
        env=environment,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_crash_before_rename_keeps_old(tmp_path, local_fs):
    source = tmp_path / "source"
    source.write_bytes(b"new content " * 1000)
    destination = tmp_path / "destination"
    destination.write_bytes(b"old content")

    child = run_child_copy(source, destination, "transfer.before_rename")

    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert destination.read_bytes() == b"old content"
    assert leftovers(tmp_path) == [".destination.jq-01234567-2.tmp"]
    assert transfer.sweep_temporaries(local_fs, str(destination), ACTION_ID) == 1
    assert leftovers(tmp_path) == []
    assert destination.read_bytes() == b"old content"


def test_crash_after_rename_has_new(tmp_path):
    source = tmp_path / "source"
    source.write_bytes(b"new content")
    destination = tmp_path / "destination"
    destination.write_bytes(b"old content")

    child = run_child_copy(source, destination, "transfer.after_rename")

    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert destination.read_bytes() == b"new content"
    assert leftovers(tmp_path) == []


def test_sweep_removes_only_this_action(tmp_path, local_fs):
    destination = tmp_path / "file.txt"
    mine = [
        transfer.temp_path(str(destination), ACTION_ID, attempt)
        for attempt in (1, 2, 17)
    ]
    other_action = transfer.temp_path(str(destination), "fedcba9876543210", 1)
    other_file = transfer.temp_path(str(tmp_path / "other.txt"), ACTION_ID, 1)
    unrelated = [tmp_path / ".file.txt.jq-01234567-x.tmp", tmp_path / "file.txt"]
    for path in [*mine, other_action, other_file, *unrelated]:
        Path(path).write_bytes(b"")

    assert transfer.sweep_temporaries(local_fs, str(destination), ACTION_ID) == 3
    remaining = sorted(os.listdir(tmp_path))
    expected = sorted(
        Path(path).name for path in [other_action, other_file, *unrelated]
    )
    assert remaining == expected


def test_sweep_finds_nonce_names_not_parts(tmp_path, local_fs):
    destination = tmp_path / "file.txt"
    handed = [
        transfer.temp_path(str(destination), ACTION_ID, 1, transfer.new_nonce())
        for _ in range(2)
    ]
    # The parts file of a copy in parts stays for the attempt that resumes it.
    parts_file = tmp_path / ".file.txt.jq-01234567-parts.tmp"
    for path in [*handed, parts_file]:
        Path(path).write_bytes(b"")

    assert transfer.sweep_temporaries(local_fs, str(destination), ACTION_ID) == 2
    assert sorted(os.listdir(tmp_path)) == [parts_file.name]


def test_sweep_directory_serves_many_actions(tmp_path, local_fs):
    """One listing removes the temporary files of every action asked for.

    Two of the actions share the first 8 digits of their ids, and one has
    a name long enough that its temporary name is shortened.
    """
    twin = ACTION_ID[:8] + "ffffffffffffffffffffffff"
    long_name = "n" * 250
    targets = [
        (str(tmp_path / "a.txt"), ACTION_ID),
        (str(tmp_path / "b.txt"), twin),
        (str(tmp_path / long_name), "fedcba9876543210"),
    ]
    temporaries = [
        transfer.temp_path(path, action_id, 1) for path, action_id in targets
    ]
    kept = transfer.temp_path(str(tmp_path / "c.txt"), ACTION_ID, 1)
    for path in [*temporaries, kept]:
        Path(path).write_bytes(b"")

    groups = transfer.temporaries_by_directory(local_fs, targets)
    assert list(groups) == [str(tmp_path)]
    removed = transfer.sweep_directory(local_fs, str(tmp_path), groups[str(tmp_path)])

    assert sorted(removed) == sorted(
        (path, action_id)
        for path, (_, action_id) in zip(temporaries, targets, strict=True)
    )
    assert os.listdir(tmp_path) == [Path(kept).name]


def test_sweep_missing_directory(tmp_path, local_fs):
    missing = tmp_path / "no" / "such" / "file"
    assert transfer.sweep_temporaries(local_fs, str(missing), ACTION_ID) == 0


def test_sweep_memory(memory_fs):
    memory_fs.pipe_file(transfer.temp_path("/dst/file", ACTION_ID, 1), b"partial")
    memory_fs.pipe_file("/dst/file", b"keep")
    assert transfer.sweep_temporaries(memory_fs, "/dst/file", ACTION_ID) == 1
    assert sorted(memory_fs.store) == ["/dst/file"]


@pytest.mark.parametrize("name", [NFC_NAME, NFD_NAME, "  lead", "a+b%c#d?e&f"])
def test_sweep_awkward_names(tmp_path, local_fs, name):
    destination = tmp_path / name
    Path(transfer.temp_path(str(destination), ACTION_ID, 1)).write_bytes(b"")
    assert transfer.sweep_temporaries(local_fs, str(destination), ACTION_ID) == 1
    assert leftovers(tmp_path) == []


# sync_filesystem --------------------------------------------------------------------


def test_sync_filesystem_after_unsynced_copies(tmp_path, local_fs):
    for index in range(20):
        path = tmp_path / f"file-{index}"
        with open_sink(
            local_fs, str(path), action_id=ACTION_ID, attempt=1, fsync=False
        ) as sink:
            sink.write(b"x" * index)
            sink.commit()

    transfer.sync_filesystem(str(tmp_path))
    assert len(os.listdir(tmp_path)) == 20


def test_sync_filesystem_missing_path(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("sync(2) takes no path elsewhere")
    with pytest.raises(FileNotFoundError):
        transfer.sync_filesystem(str(tmp_path / "missing"))
