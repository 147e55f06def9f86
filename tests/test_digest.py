"""Tests for journalq.digest: streaming hashers and whole-file digests."""

from __future__ import annotations

import hashlib
import os

import crc32c
import fsspec
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from journalq import digest


def reference_digests(data: bytes) -> dict[str, str]:
    return {
        "xxh128": xxhash.xxh128(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "crc32c": f"{crc32c.crc32c(data):08x}",
    }


def test_algorithms_cover_documented_names():
    assert digest.ALGORITHMS == ("crc32c", "md5", "sha256", "xxh128")
    assert digest.DEFAULT_ALGORITHM == "xxh128"


@pytest.mark.parametrize("algorithm", digest.ALGORITHMS)
def test_hasher_matches_reference(algorithm):
    hasher = digest.new_hasher(algorithm)
    hasher.update(b"ab")
    hasher.update(memoryview(b"c"))

    expected = reference_digests(b"abc")[algorithm]
    assert hasher.hexdigest() == expected
    assert hasher.digest_string() == f"{algorithm}:{expected}"


def test_crc32c_known_value_big_endian():
    hasher = digest.new_hasher("crc32c")
    hasher.update(b"abc")
    assert hasher.hexdigest() == "364b3fb7"


def test_new_hasher_default_is_xxh128():
    assert digest.new_hasher().algorithm == "xxh128"


def test_unknown_algorithm_lists_valid_names():
    with pytest.raises(ValueError, match="unknown digest algorithm 'sha1'") as info:
        digest.new_hasher("sha1")
    assert "crc32c, md5, sha256, xxh128" in str(info.value)


@given(data=st.binary(max_size=4096), cuts=st.lists(st.integers(0, 4096)))
def test_hasher_streaming_equals_one_shot(data, cuts):
    hasher = digest.new_hasher("xxh128")
    start = 0
    for cut in sorted(cut for cut in cuts if cut <= len(data)):
        hasher.update(data[start:cut])
        start = cut
    hasher.update(data[start:])
    assert hasher.hexdigest() == xxhash.xxh128(data).hexdigest()


def test_split_digest_parts():
    assert digest.split_digest("xxh128:00ff") == ("xxh128", "00ff")


@pytest.mark.parametrize("text", ["", "xxh128", ":00ff", "xxh128:"])
def test_split_digest_rejects_malformed(text):
    with pytest.raises(ValueError, match="expected '<algorithm>:<hex>'"):
        digest.split_digest(text)


@pytest.mark.parametrize("algorithm", digest.ALGORITHMS)
def test_hash_file_local_large(tmp_path, algorithm):
    data = os.urandom(3 * digest.CHUNK + 12345)
    path = tmp_path / "large.bin"
    path.write_bytes(data)

    result = digest.hash_file(fsspec.filesystem("file"), str(path), algorithm)
    assert result == f"{algorithm}:{reference_digests(data)[algorithm]}"


def test_hash_file_local_small_chunks(tmp_path):
    data = os.urandom(1000)
    path = tmp_path / "small.bin"
    path.write_bytes(data)

    result = digest.hash_file(fsspec.filesystem("file"), str(path), chunk_size=7)
    assert result == f"xxh128:{xxhash.xxh128(data).hexdigest()}"


def test_hash_file_local_zero_bytes(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")

    result = digest.hash_file(fsspec.filesystem("file"), str(path))
    assert result == f"xxh128:{xxhash.xxh128(b'').hexdigest()}"


def test_hash_file_accepts_file_url(tmp_path):
    path = tmp_path / "with url"
    path.write_bytes(b"content")

    result = digest.hash_file(fsspec.filesystem("file"), f"file://{path}", "md5")
    assert result == f"md5:{hashlib.md5(b'content').hexdigest()}"


def test_hash_file_memory(memory_fs):
    data = os.urandom(2 * digest.CHUNK + 1)
    memory_fs.pipe_file("/data/file.bin", data)

    result = digest.hash_file(memory_fs, "memory://data/file.bin", "sha256")
    assert result == f"sha256:{hashlib.sha256(data).hexdigest()}"


def test_hash_file_memory_zero_bytes(memory_fs):
    memory_fs.pipe_file("/empty", b"")
    result = digest.hash_file(memory_fs, "/empty", "crc32c")
    assert result == "crc32c:00000000"


def test_hash_file_missing_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        digest.hash_file(fsspec.filesystem("file"), str(tmp_path / "missing"))


def test_hash_file_dangling_link_names_link(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")

    with pytest.raises(FileNotFoundError, match="symbolic link") as info:
        digest.hash_file(fsspec.filesystem("file"), str(link))
    assert info.value.filename == str(link)
    assert "gone" in str(info.value)


def test_local_path_strips_prefixes():
    assert digest.local_path("/a/b") == "/a/b"
    assert digest.local_path("relative/b") == "relative/b"
    assert digest.local_path("file:///a/b") == "/a/b"
    assert digest.local_path("local:///a/b") == "/a/b"


# The part-wise digest -------------------------------------------------------

MIB = 1024 * 1024


def reference_partwise(data: bytes, piece: int) -> str:
    """The part-wise digest spelled out: xxh128 over the pieces' digests."""
    combined = xxhash.xxh128()
    for start in range(0, len(data), piece):
        combined.update(xxhash.xxh128(data[start : start + piece]).digest())
    return combined.hexdigest()


@given(
    data=st.binary(max_size=200),
    piece=st.integers(1, 64),
    cuts=st.lists(st.integers(0, 200)),
)
def test_partwise_streaming_equals_pieces(data, piece, cuts):
    """Any split of the stream gives the digest of the pieces, in order."""
    state = digest._Partwise(piece)
    start = 0
    for cut in sorted(cuts):
        state.update(data[start:cut])
        start = max(start, cut)
    state.update(data[start:])

    assert state.hexdigest() == reference_partwise(data, piece)
    # Reading the digest does not end the stream.
    state.update(b"more")
    assert state.hexdigest() == reference_partwise(data + b"more", piece)


def test_combine_parts_equals_streamed_file(monkeypatch):
    monkeypatch.setattr(digest, "PART_SIZE", MIB)
    data = os.urandom(3 * MIB + 5)
    algorithm = digest.default_algorithm(len(data))
    checksums = [
        f"xxh128:{xxhash.xxh128(data[start : start + MIB]).hexdigest()}"
        for start in range(0, len(data), MIB)
    ]
    hasher = digest.new_hasher(algorithm)
    hasher.update(data)

    assert algorithm == "xxh128p1"
    assert digest.combine_parts(checksums, MIB) == hasher.digest_string()
    assert hasher.hexdigest() == reference_partwise(data, MIB)


def test_one_part_is_plain_xxh128(monkeypatch):
    """A file that fits in one part has the part's digest, plain xxh128."""
    monkeypatch.setattr(digest, "PART_SIZE", MIB)
    data = os.urandom(MIB)
    part = f"xxh128:{xxhash.xxh128(data).hexdigest()}"

    assert digest.default_algorithm(len(data)) == "xxh128"
    assert digest.combine_parts([part], MIB) == part


def test_default_algorithm_follows_part_size():
    assert digest.default_algorithm(0) == "xxh128"
    assert digest.default_algorithm(16 * MIB) == "xxh128"
    assert digest.default_algorithm(16 * MIB + 1) == "xxh128p16"
    # 160 GiB need parts of 32 MiB to fit in 10,000 parts.
    assert digest.default_algorithm(160 * 1024 * MIB) == "xxh128p32"


def test_combine_parts_rejects_other_algorithms():
    with pytest.raises(ValueError, match="'md5:aa' is not xxh128"):
        digest.combine_parts(["xxh128:aa", "md5:aa"], MIB)


@pytest.mark.parametrize("name", ["xxh128p", "xxh128p0", "xxh128p016", "xxh128p²"])
def test_malformed_partwise_names_are_unknown(name):
    with pytest.raises(ValueError, match="xxh128p<MiB>"):
        digest.new_hasher(name)
