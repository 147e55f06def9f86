"""Behaviour that users of rclone, s5cmd, aws-cli and fsspec reported broken.

Each test is one such report, run against journalq with real files, real
``journalq`` processes and real servers on 127.0.0.1 (moto for S3, sshd for
SFTP). Reports that other test files already cover:

* a tree copied twice never nests, without a crash:
  ``tests/test_queue.py::test_rerun_of_tree_never_nests``;
* a same-size file with other content is copied in checksum mode:
  ``tests/test_queue.py::test_same_size_different_content_is_copied`` and
  ``tests/backends/test_backend_matrix.py::test_same_size_other_content_copied``
  (with a kept mtime it is still skipped: the strict xfail
  ``tests/test_adversarial.py::test_checksum_sees_change_with_kept_mtime``);
* a dangling symlink is one failed item:
  ``tests/test_queue.py::test_dangling_symlink_fails_alone`` and, for the
  exit status, ``tests/cli/test_cli_transfers.py::test_failed_action_exits_one``;
* zero-byte files between every pair of backends:
  ``tests/backends/test_backend_matrix.py`` (``empty.bin``), and markers
  read as directories: ``tests/backends/test_backend_rules.py``;
* a sync with nothing to copy exits 0:
  ``tests/cli/test_cli_transfers.py::test_sync_again_copies_nothing``;
* an SFTP destination, whose mtimes have whole seconds, under checksum:
  ``test_copy_tree_then_nothing_to_copy[local->sftp]`` in the matrix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import fsspec
import pytest
from survival_helpers import write_tree
from tree_helpers import read_tree

from journalq import ActionError, StorageQueue
from journalq.events import Event, EventType
from journalq.records import Kind

KILLED = -9
FAILED = 1
#: Bytes over the S3 part size (8 MiB), so that the upload is multipart and
#: has sent parts before it fails.
MULTIPART_BYTES = 9 * 1024 * 1024
#: An mtime with a fraction of a second: 2023-11-14 22:13:20.700000000 UTC.
FRACTIONAL_MTIME_NS = 1_700_000_000_700_000_000
TREE = {
    "a.txt": b"alpha",
    "empty.bin": b"",
    "d/b.txt": b"bravo" * 40,
    "d/deep/c.txt": b"charlie",
    **{f"many/f{index:02d}.txt": b"%d" % index * 300 for index in range(24)},
}


def _journalq(
    *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "journalq", *arguments],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(result.stdout.splitlines()[-1])


# Nesting after a crash ---------------------------------------------------------


@pytest.mark.parametrize(("slash", "inside"), [("", "src/"), ("/", "")])
def test_copy_after_crash_never_nests(tmp_path, slash, inside):
    """``copy src dst`` lands in dst/src, ``copy src/ dst`` in dst, every time."""
    source = write_tree(tmp_path / "src", TREE)
    destination = tmp_path / "dst"
    command = ("copy", f"{source}{slash}", str(destination), "--queue")
    queue = str(tmp_path / "queue")

    crashed = _journalq(
        *command, queue, env={"JOURNALQ_CRASH_AT": "transfer.before_rename:5"}
    )
    resumed = _journalq(*command, queue)
    again = _journalq(*command, str(tmp_path / "another-queue"))

    assert crashed.returncode == KILLED, crashed.stderr
    assert resumed.returncode == 0, resumed.stderr
    assert again.returncode == 0, again.stderr
    expected = {f"{inside}{relpath}": data for relpath, data in TREE.items()}
    assert read_tree(destination) == expected


# Glob sources --------------------------------------------------------------------


GLOBBED = {"a.txt": b"a", ".hidden": b"h", "sub/x.txt": b"x", "sub/y/z.txt": b"z"}


def _s3_source(s3_options: dict[str, Any], bucket: str) -> str:
    fs = fsspec.filesystem("s3", **s3_options)
    for relpath, data in GLOBBED.items():
        fs.pipe_file(f"{bucket}/dir/{relpath}", data)
    return f"s3://{bucket}"


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_glob_source_lands_in_destination(tmp_path, request, backend):
    if backend == "local":
        write_tree(tmp_path / "top" / "dir", GLOBBED)
        root = str(tmp_path / "top")
        options: dict[str, Any] = {}
    else:
        options = request.getfixturevalue("s3_options")
        root = _s3_source(options, request.getfixturevalue("bucket"))
    destination = tmp_path / "dst"

    with StorageQueue(
        root, str(destination), name=tmp_path / "queue", source_options=options
    ) as queue:
        ids = queue.copy_glob(f"{root}/dir/*", f"{destination}/")
        again = queue.copy_glob(f"{root}/dir/*", str(destination))
        kinds = [queue.get_action(action_id).kind for action_id in ids]
        summary = queue.run()
        only_text = queue.copy_glob(f"{root}/dir/*.txt", str(destination / "text"))
        with pytest.raises(ActionError, match="no file or directory matches"):
            queue.copy_glob(f"{root}/dir/*.none", str(destination))
        with pytest.raises(ActionError, match="last component only"):
            queue.copy_glob(f"{root}/*/x.txt", str(destination))
        with pytest.raises(ActionError, match="last component only"):
            queue.copy_glob(f"{root}/dir/**", str(destination))
        queue.run()

    assert summary.failures == []
    assert read_tree(destination) == {**GLOBBED, "text/a.txt": b"a"}
    assert again == ids
    assert kinds == [str(Kind.COPY_FILE), str(Kind.COPY_FILE), str(Kind.COPY_TREE)]
    assert len(only_text) == 1
    assert read_tree(destination / "text") == {"a.txt": b"a"}


def test_cli_glob_source(tmp_path):
    source = write_tree(tmp_path / "dir", GLOBBED)
    destination = tmp_path / "dst"

    result = _journalq(
        "copy", f"{source}/*", f"{destination}/", "--queue", str(tmp_path / "q")
    )

    assert result.returncode == 0, result.stderr
    assert read_tree(destination) == GLOBBED


# Zero-byte files and directory markers on S3 -------------------------------------


def test_zero_byte_files_not_markers(tmp_path, s3_options, bucket):
    files = {"empty.bin": b"", "sub/zero": b"", "sub/one": b"1"}
    source = write_tree(tmp_path / "src", files)
    (source / "hollow").mkdir()
    back = tmp_path / "back"
    options = {**s3_options, "directory_markers": True}
    remote = f"s3://{bucket}/out"

    def copy(origin: str, target: str, name: str) -> Any:
        # The local side takes none of the S3 options.
        with StorageQueue(
            origin,
            target,
            name=tmp_path / name,
            source_options=options if origin.startswith("s3://") else None,
            destination_options=options if target.startswith("s3://") else None,
        ) as queue:
            queue.copy_tree(origin, target)
            return queue.run()

    up = copy(str(source), remote, "up")
    down = copy(remote, str(back), "down")
    up_again = copy(str(source), remote, "up")
    down_again = copy(remote, str(back), "down")

    fs = fsspec.filesystem("s3", **s3_options)
    fs.invalidate_cache()
    keys = {
        info["Key"].removeprefix(f"{bucket}/out/"): info["size"]
        for info in fs.find(f"{bucket}/out", detail=True).values()
    }
    assert up.failures == []
    markers = {"hollow/": 0, "sub/": 0}
    assert keys == {"empty.bin": 0, "sub/zero": 0, "sub/one": 1, **markers}
    assert down.failures == []
    assert read_tree(back) == files
    assert (back / "hollow").is_dir()
    assert (back / "empty.bin").is_file()
    assert (back / "sub" / "zero").is_file()
    assert up_again.copied == 0
    assert down_again.copied == 0


# Whole-second mtimes at the destination -------------------------------------------


@pytest.mark.parametrize("compare", ["size+mtime", "checksum"])
def test_whole_second_mtimes_not_copied_again(
    tmp_path, sftp_server, sftp_options, compare
):
    """SFTP version 3, which OpenSSH serves, keeps mtimes in whole seconds."""
    server, _ = sftp_server
    files = {relpath: TREE[relpath] for relpath in ("a.txt", "empty.bin", "d/b.txt")}
    source = write_tree(tmp_path / "src", files)
    for path in source.rglob("*"):
        os.utime(path, ns=(FRACTIONAL_MTIME_NS, FRACTIONAL_MTIME_NS))
    remote = tmp_path / "sftp"
    remote.mkdir()
    url = f"ssh://root@127.0.0.1:{server.port}{remote}"

    summaries = []
    for _ in range(2):
        with StorageQueue(
            str(source),
            url,
            name=tmp_path / "queue",
            compare=compare,
            destination_options=sftp_options,
        ) as queue:
            queue.sync(str(source), url)
            summaries.append(queue.run())

    mtime_ns = (remote / "a.txt").stat().st_mtime_ns
    assert mtime_ns == FRACTIONAL_MTIME_NS // 10**9 * 10**9
    assert read_tree(remote) == files
    first, second = summaries
    assert first.copied == len(files)
    assert second.failures == []
    assert second.copied == 0
    assert second.bytes == 0


# A failed verification keeps the old destination --------------------------------


def _growing(path: Path):
    """Return an event handler that appends to ``path`` during its first copy."""
    grown: list[bool] = []

    def on_event(event: Event) -> None:
        if event.type is EventType.PROGRESS and not grown:
            grown.append(True)
            with open(path, "ab") as file:
                file.write(b"appended during the copy")

    return on_event


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_failed_verification_keeps_old_file(tmp_path, request, backend):
    """The byte count is verified before the commit, so the old file stays.

    The source grows while it is copied, so fewer bytes were listed than
    read, and the only attempt fails. On S3 the file is large enough that
    parts of a multipart upload were sent before the check.
    """
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(MULTIPART_BYTES))
    old = b"the old version, which must stay"
    options: dict[str, Any] = {}
    if backend == "local":
        target = tmp_path / "dst" / "big.bin"
        write_tree(target.parent, {"big.bin": old})
        url = str(target)
    else:
        options = request.getfixturevalue("s3_options")
        bucket = request.getfixturevalue("bucket")
        fs = fsspec.filesystem("s3", **options)
        fs.pipe_file(f"{bucket}/big.bin", old)
        url = f"s3://{bucket}/big.bin"

    with StorageQueue(
        str(tmp_path),
        url,
        name=tmp_path / "queue",
        max_attempts=1,
        destination_options=options,
    ) as queue:
        queue.copy_file(str(source), url)
        summary = queue.run(on_event=_growing(source))

    assert summary.failed == 1
    assert "changed during the copy" in (summary.failures[0].error or "")
    if backend == "local":
        assert target.read_bytes() == old
        assert sorted(path.name for path in target.parent.iterdir()) == ["big.bin"]
    else:
        fs.invalidate_cache()
        assert fs.cat_file(f"{bucket}/big.bin") == old
        uploads = fs.call_s3("list_multipart_uploads", Bucket=bucket)
        assert uploads.get("Uploads", []) == []


# A sync with nothing to do ------------------------------------------------------


def test_sync_with_nothing_to_do_exits_zero(tmp_path):
    source = write_tree(tmp_path / "src", TREE)
    destination = tmp_path / "dst"
    command = ("sync", str(source), str(destination), "--delete", "--json")

    first = _journalq(*command, "--queue", str(tmp_path / "queue"))
    second = _journalq(*command, "--queue", str(tmp_path / "queue"))
    fresh = _journalq(*command, "--queue", str(tmp_path / "fresh-queue"))

    assert first.returncode == 0, first.stderr
    for result in (second, fresh):
        assert result.returncode == 0, result.stderr
        summary = _summary(result)
        assert summary["copied"] == 0
        assert summary["failed"] == 0
        assert summary["bytes"] == 0
    assert read_tree(destination) == TREE
