"""Tests for journalq.compare: stat, the digest cache and ``decide``."""

from __future__ import annotations

import os
import time

import pytest
import xxhash
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from journalq import compare
from journalq.compare import Decision, FileInfo, Policy, decide
from journalq.errors import ActionError
from journalq.records import Digested, Identity, Service

SECOND = 1_000_000_000


# Policy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("checksum", Policy.CHECKSUM),
        ("size", Policy.SIZE),
        ("size+mtime", Policy.SIZE_MTIME),
        ("always", Policy.ALWAYS),
    ],
)
def test_policy_parse_valid(text, policy):
    assert Policy.parse(text) is policy


def test_policy_parse_invalid_lists_choices():
    with pytest.raises(ActionError) as info:
        Policy.parse("mtime")
    assert info.value.value == "mtime"
    assert "expected one of: checksum, size, size+mtime, always" in str(info.value)


def test_policy_default_first():
    assert next(iter(Policy)) is Policy.CHECKSUM


# stat ------------------------------------------------------------------------


def test_stat_local_file(tmp_path, local_fs):
    path = tmp_path / "file.txt"
    path.write_bytes(b"12345")
    os.utime(path, ns=(SECOND, 1_700_000_000_123_456_789))

    info = compare.stat(local_fs, str(path))
    result = path.stat()
    assert info == FileInfo(
        size=5,
        mtime_ns=1_700_000_000_123_456_789,
        ctime_ns=result.st_ctime_ns,
        inode=result.st_ino,
    )


def test_stat_local_file_url(tmp_path, local_fs):
    path = tmp_path / "file.txt"
    path.write_bytes(b"12")
    assert compare.stat(local_fs, f"file://{path}").size == 2


def test_stat_local_missing(tmp_path, local_fs):
    assert compare.stat(local_fs, str(tmp_path / "missing")) is None


def test_stat_local_directory_raises(tmp_path, local_fs):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        compare.stat(local_fs, str(tmp_path))


def test_stat_local_follows_symlink(tmp_path, local_fs):
    target = tmp_path / "target"
    target.write_bytes(b"abc")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert compare.stat(local_fs, str(link)).size == 3


def test_stat_local_dangling_link_raises(tmp_path, local_fs):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="symbolic link") as info:
        compare.stat(local_fs, str(link))
    assert info.value.filename == str(link)


def test_stat_memory(memory_fs):
    before = time.time_ns()
    memory_fs.pipe_file("/dir/file", b"abcd")
    info = compare.stat(memory_fs, "memory://dir/file")
    assert info.size == 4
    assert before - SECOND < info.mtime_ns < time.time_ns() + SECOND


def test_stat_memory_missing_and_directory(memory_fs):
    memory_fs.pipe_file("/dir/file", b"abcd")
    assert compare.stat(memory_fs, "/dir/other") is None
    with pytest.raises(IsADirectoryError):
        compare.stat(memory_fs, "/dir")


def test_stat_generic_reads_info(tmp_path, local_fs):
    """DirFileSystem is neither local nor memory, so the info() path runs."""
    (tmp_path / "file").write_bytes(b"xyz")
    os.utime(tmp_path / "file", ns=(SECOND, 1_600_000_000 * SECOND))
    fs = DirFileSystem(path=str(tmp_path), fs=local_fs)

    info = compare.stat(fs, "file")
    assert info.size == 3
    # info() reports the mtime as float seconds, so allow rounding.
    assert abs(info.mtime_ns - 1_600_000_000 * SECOND) < 1000
    assert compare.stat(fs, "missing") is None
    (tmp_path / "sub").mkdir()
    with pytest.raises(IsADirectoryError):
        compare.stat(fs, "sub")


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"mtime": 1.5}, 1_500_000_000),
        ({"LastModified": "2024-01-02T03:04:05Z"}, 1_704_164_645 * SECOND),
        ({"updated": "2024-01-02T03:04:05.250000+00:00"}, 1_704_164_645_250_000_000),
        ({"name": "no time"}, None),
    ],
)
def test_mtime_from_info_keys(info, expected):
    assert compare.mtime_from_info(info) == expected


def test_register_stat_takes_precedence(memory_fs):
    class TaggedMemoryFileSystem(MemoryFileSystem):
        pass

    def tagged_stat(fs, path):
        return FileInfo(size=1, mtime_ns=2, etag="tag")

    compare.register_stat(TaggedMemoryFileSystem, tagged_stat)
    try:
        info = compare.stat(TaggedMemoryFileSystem(), "/anything")
    finally:
        del compare._stat_functions[TaggedMemoryFileSystem]
    assert info == FileInfo(size=1, mtime_ns=2, etag="tag")


# decide ----------------------------------------------------------------------


class Digests:
    """Digest callables that count their calls."""

    def __init__(self, source: str, destination: str) -> None:
        self.values = {"source": source, "destination": destination}
        self.calls: list[str] = []

    def source(self) -> str:
        self.calls.append("source")
        return self.values["source"]

    def destination(self) -> str:
        self.calls.append("destination")
        return self.values["destination"]


SOURCE = FileInfo(size=10, mtime_ns=100 * SECOND)
SAME_DIGEST = ("xxh128:aa", "xxh128:aa")
OTHER_DIGEST = ("xxh128:aa", "xxh128:bb")

# (policy, destination, digests, identical, method, digest calls)
DECIDE_TABLE = [
    (Policy.CHECKSUM, None, SAME_DIGEST, False, "missing", []),
    (Policy.SIZE, None, SAME_DIGEST, False, "missing", []),
    (Policy.SIZE_MTIME, None, SAME_DIGEST, False, "missing", []),
    (Policy.ALWAYS, None, SAME_DIGEST, False, "missing", []),
    (Policy.ALWAYS, SOURCE, SAME_DIGEST, False, "always", []),
    (Policy.CHECKSUM, FileInfo(11, 100 * SECOND), SAME_DIGEST, False, "size", []),
    (Policy.SIZE, FileInfo(11, 100 * SECOND), SAME_DIGEST, False, "size", []),
    (Policy.SIZE_MTIME, FileInfo(9, 100 * SECOND), SAME_DIGEST, False, "size", []),
    (Policy.SIZE, FileInfo(10, 5 * SECOND), OTHER_DIGEST, True, "size", []),
    (Policy.SIZE_MTIME, SOURCE, OTHER_DIGEST, True, "size+mtime", []),
    (
        Policy.SIZE_MTIME,
        FileInfo(10, 100 * SECOND - SECOND + 1),
        OTHER_DIGEST,
        True,
        "size+mtime",
        [],
    ),
    (
        Policy.SIZE_MTIME,
        FileInfo(10, 100 * SECOND + SECOND),
        SAME_DIGEST,
        False,
        "size+mtime",
        [],
    ),
    (Policy.SIZE_MTIME, FileInfo(10, None), SAME_DIGEST, False, "size+mtime", []),
    (
        Policy.CHECKSUM,
        FileInfo(10, 1),
        SAME_DIGEST,
        True,
        "xxh128",
        ["source", "destination"],
    ),
    (
        Policy.CHECKSUM,
        SOURCE,
        OTHER_DIGEST,
        False,
        "xxh128",
        ["source", "destination"],
    ),
]


@pytest.mark.parametrize(
    ("policy", "destination", "digests", "identical", "method", "calls"),
    DECIDE_TABLE,
)
def test_decide_table(policy, destination, digests, identical, method, calls):
    counter = Digests(*digests)
    decision = decide(
        policy,
        SOURCE,
        destination,
        source_digest=counter.source,
        destination_digest=counter.destination,
    )
    assert decision.identical is identical
    assert decision.method == method
    assert counter.calls == calls


def test_decide_checksum_records_identities():
    destination = FileInfo(size=10, mtime_ns=7, etag="etag-1")
    decision = decide(
        Policy.CHECKSUM,
        SOURCE,
        destination,
        source_digest=lambda: "xxh128:aa",
        destination_digest=lambda: "xxh128:aa",
    )
    assert decision == Decision(
        identical=True,
        method="xxh128",
        source=Identity(size=10, mtime_ns=100 * SECOND, digest="xxh128:aa"),
        destination=Identity(size=10, mtime_ns=7, digest="xxh128:aa", etag="etag-1"),
    )


def test_decide_missing_destination_identity_none():
    decision = decide(
        Policy.CHECKSUM,
        SOURCE,
        None,
        source_digest=lambda: "xxh128:aa",
        destination_digest=lambda: "xxh128:aa",
    )
    assert decision.destination is None
    assert decision.source == Identity(size=10, mtime_ns=100 * SECOND)


def test_decide_size_records_no_digest():
    decision = decide(
        Policy.SIZE,
        SOURCE,
        FileInfo(10, 3),
        source_digest=lambda: "xxh128:aa",
        destination_digest=lambda: "xxh128:aa",
    )
    assert decision.source.digest is None
    assert decision.destination == Identity(size=10, mtime_ns=3)


def test_decide_rejects_mixed_algorithms():
    with pytest.raises(ValueError, match="md5 digest with a xxh128 digest"):
        decide(
            Policy.CHECKSUM,
            SOURCE,
            SOURCE,
            source_digest=lambda: "md5:aa",
            destination_digest=lambda: "xxh128:aa",
        )


def test_decide_real_files_checksum(tmp_path, local_fs):
    (tmp_path / "a").write_bytes(b"same content")
    (tmp_path / "b").write_bytes(b"same content")
    (tmp_path / "c").write_bytes(b"diff content")
    cache = compare.MemoryDigestCache()

    def decision_for(name: str) -> Decision:
        def digest_of(path: str):
            info = compare.stat(local_fs, path)
            return lambda: compare.cached_digest(
                local_fs, path, info, cache=cache, service="source"
            )

        source, destination = str(tmp_path / "a"), str(tmp_path / name)
        return decide(
            Policy.CHECKSUM,
            compare.stat(local_fs, source),
            compare.stat(local_fs, destination),
            source_digest=digest_of(source),
            destination_digest=digest_of(destination),
        )

    assert decision_for("b").identical is True
    assert decision_for("c").identical is False


# Digest cache ----------------------------------------------------------------


def test_is_trusted_boundary():
    observed = 1000 * SECOND
    assert compare.is_trusted(observed - compare.MTIME_GUARD_NS, observed)
    assert not compare.is_trusted(observed - compare.MTIME_GUARD_NS + 1, observed)
    assert compare.MTIME_GUARD_NS == 2 * SECOND


def test_memory_cache_stores_old_entry():
    cache = compare.MemoryDigestCache()
    info = FileInfo(10, 5 * SECOND)
    cache.put("source", "/a", info, "xxh128:aa", observed_ns=10 * SECOND)
    assert cache.get("source", "/a", info) == "xxh128:aa"
    assert cache.get("destination", "/a", info) is None
    assert cache.get("source", "/a", FileInfo(11, 5 * SECOND)) is None
    assert cache.get("source", "/a", FileInfo(10, 5 * SECOND + 1)) is None


def test_memory_cache_keys_on_ctime_and_inode():
    cache = compare.MemoryDigestCache()
    info = FileInfo(10, 5 * SECOND, ctime_ns=6 * SECOND, inode=7)
    cache.put("source", "/a", info, "xxh128:aa", observed_ns=10 * SECOND)
    assert cache.get("source", "/a", info) == "xxh128:aa"
    changed = FileInfo(10, 5 * SECOND, ctime_ns=8 * SECOND, inode=7)
    assert cache.get("source", "/a", changed) is None
    replaced = FileInfo(10, 5 * SECOND, ctime_ns=6 * SECOND, inode=8)
    assert cache.get("source", "/a", replaced) is None


def test_memory_cache_skips_recent_entry():
    cache = compare.MemoryDigestCache()
    info = FileInfo(10, 9 * SECOND)
    cache.put("source", "/a", info, "xxh128:aa", observed_ns=10 * SECOND)
    assert cache.get("source", "/a", info) is None
    assert len(cache) == 0


def test_memory_cache_ignores_missing_mtime():
    cache = compare.MemoryDigestCache()
    info = FileInfo(10, None)
    cache.put("source", "/a", info, "xxh128:aa", observed_ns=10 * SECOND)
    assert len(cache) == 0
    assert cache.get("source", "/a", info) is None


def test_entry_without_ctime_misses_local_file():
    """An entry journaled before ctime and inode were cached matches only a
    file that has neither, so a local file is read once more."""
    entry = Digested(Service.SOURCE, "/a", 10, 5 * SECOND, "xxh128:aa", 10 * SECOND)
    assert compare.entry_matches(entry, 10, 5 * SECOND)
    assert not compare.entry_matches(entry, 10, 5 * SECOND, 6 * SECOND, 7)


def write_with_mtime(path, data: bytes, mtime_ns: int) -> None:
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_same_second_change_not_missed(tmp_path, local_fs):
    """A same-size rewrite within one mtime tick is hashed again.

    The file is rewritten with the same size and the mtime set back to the
    old value, which is what a filesystem with 1-2 s timestamps records
    for two writes within one tick.
    """
    path = tmp_path / "file"
    now = time.time_ns()
    write_with_mtime(path, b"first", now)
    cache = compare.MemoryDigestCache()
    info = compare.stat(local_fs, str(path))

    first = compare.cached_digest(local_fs, str(path), info, cache=cache, service="s")
    write_with_mtime(path, b"other", now)
    second = compare.cached_digest(local_fs, str(path), info, cache=cache, service="s")

    assert first == f"xxh128:{xxhash.xxh128(b'first').hexdigest()}"
    assert second == f"xxh128:{xxhash.xxh128(b'other').hexdigest()}"
    assert len(cache) == 0


def test_cache_without_guard_would_miss_change(tmp_path, local_fs):
    """The same rewrite, with the read seen as 10 s after the mtime.

    The guard then trusts the entry, and the stale digest is returned: this
    is the failure the guard prevents for recent files.
    """
    path = tmp_path / "file"
    now = time.time_ns()
    write_with_mtime(path, b"first", now)
    cache = compare.MemoryDigestCache()
    info = compare.stat(local_fs, str(path))

    def later_clock() -> int:
        return now + 10 * SECOND

    first = compare.cached_digest(
        local_fs, str(path), info, cache=cache, service="s", clock=later_clock
    )
    write_with_mtime(path, b"other", now)
    second = compare.cached_digest(
        local_fs, str(path), info, cache=cache, service="s", clock=later_clock
    )
    assert second == first
    assert len(cache) == 1


def test_cached_digest_skips_other_algorithm(tmp_path, local_fs):
    path = tmp_path / "file"
    write_with_mtime(path, b"data", 1_000 * SECOND)
    cache = compare.MemoryDigestCache()
    info = compare.stat(local_fs, str(path))

    xxh = compare.cached_digest(local_fs, str(path), info, cache=cache, service="s")
    md5 = compare.cached_digest(
        local_fs, str(path), info, cache=cache, service="s", algorithm="md5"
    )
    assert xxh.startswith("xxh128:")
    assert md5.startswith("md5:")


def test_cached_digest_reuses_entry(tmp_path, local_fs):
    path = tmp_path / "file"
    write_with_mtime(path, b"data", 1_000 * SECOND)
    cache = compare.MemoryDigestCache()
    info = compare.stat(local_fs, str(path))
    first = compare.cached_digest(local_fs, str(path), info, cache=cache, service="s")

    # Removing the file proves the second call reads only the cache.
    path.unlink()
    second = compare.cached_digest(local_fs, str(path), info, cache=cache, service="s")
    assert second == first


def test_large_local_files_compare_part_wise():
    """The digest a copy in parts computes without reading the file again."""
    size = 64 * 1024 * 1024
    local = compare.FileInfo(size, 1)

    assert compare.choose_algorithm(local, local) == "xxh128p16"


def test_reported_digest_beats_part_wise():
    """A digest the server reports costs nothing; a part-wise one a download."""
    size = 64 * 1024 * 1024
    local = compare.FileInfo(size, 1)
    remote = compare.FileInfo(size, 1, digests=("xxh128:ab",), computable=())

    assert compare.choose_algorithm(local, remote) == "xxh128"
