"""``copy`` and ``sync`` to S3 and GCS: printed URLs and missing buckets.

The stores are the session's moto S3 server and fake-gcs-server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec
import pytest
from cli_helpers import SAMPLE, invoke

from journalq.cli.exits import ExitCode


def _flags(options: dict[str, Any]) -> list[str]:
    flags = []
    for key, value in options.items():
        flags += ["--destination-option", f"{key}={value}"]
    return flags


@pytest.fixture(params=["s3", "gcs"])
def store(request: pytest.FixtureRequest) -> tuple[str, str, dict[str, Any]]:
    """Return the protocol, a new empty bucket and the storage options."""
    protocol = request.param
    if protocol == "s3":
        bucket = request.getfixturevalue("bucket")
        options = request.getfixturevalue("s3_options")
    else:
        bucket = request.getfixturevalue("gcs_bucket")
        options = request.getfixturevalue("gcs_options")
    return protocol, bucket, options


def test_dry_run_prints_destination_urls(
    sample: Path, store: tuple[str, str, dict[str, Any]]
) -> None:
    protocol, bucket, options = store
    target = f"{protocol}://{bucket}/data"

    result = invoke("copy", f"{sample}/", target, "-n", *_flags(options))

    assert result.exit_code == ExitCode.OK, result.output
    assert f"would copy {sample}/a.txt -> {target}/a.txt (6 B)" in result.stdout
    assert len(result.stdout.splitlines()) == len(SAMPLE)
    assert all(f" -> {target}/" in line for line in result.stdout.splitlines())


def test_verbose_run_prints_source_urls(
    tmp_path: Path, store: tuple[str, str, dict[str, Any]]
) -> None:
    protocol, bucket, options = store
    fsspec.filesystem(protocol, **options).pipe(f"{bucket}/in/a.txt", b"alpha")
    flags = [
        flag.replace("--destination-option", "--source-option")
        for flag in _flags(options)
    ]

    result = invoke(
        "copy", f"{protocol}://{bucket}/in/", str(tmp_path / "out"), "-v", *flags
    )

    assert result.exit_code == ExitCode.OK, result.output
    line = f"copied {protocol}://{bucket}/in/a.txt -> {tmp_path}/out/a.txt (5 B)"
    assert line in result.stdout.splitlines()


@pytest.mark.parametrize("dry_run", [[], ["-n"]], ids=["run", "dry-run"])
def test_failure_warning_names_urls(
    sample: Path,
    tmp_path: Path,
    store: tuple[str, str, dict[str, Any]],
    dry_run: list[str],
) -> None:
    protocol, bucket, options = store
    os.symlink(tmp_path / "nowhere", sample / "dangling.txt")
    target = f"{protocol}://{bucket}/data"

    result = invoke("copy", f"{sample}/", target, *dry_run, *_flags(options))

    assert result.exit_code == ExitCode.FAILED, result.output
    warning = (
        f"WARNING journalq.executor: failed copy_file {sample}/dangling.txt -> "
        f"{target}/dangling.txt: "
    )
    assert warning in result.stderr


@pytest.mark.parametrize("dry_run", [[], ["-n"]], ids=["run", "dry-run"])
@pytest.mark.parametrize(
    ("source_kind", "where"),
    [("tree", "/data"), ("tree", ""), ("file", "/data"), ("file", "/")],
    ids=["tree", "tree-to-bucket", "file", "file-into-bucket"],
)
def test_missing_bucket_adds_nothing(
    sample: Path,
    tmp_path: Path,
    store: tuple[str, str, dict[str, Any]],
    source_kind: str,
    where: str,
    dry_run: list[str],
) -> None:
    protocol, _, options = store
    source = f"{sample}/" if source_kind == "tree" else str(sample / "a.txt")
    queue = tmp_path / "q"

    result = invoke(
        "copy", source, f"{protocol}://jq-missing{where}", "--queue", str(queue),
        *dry_run, *_flags(options),
    )  # fmt: skip

    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"the bucket {protocol}://jq-missing does not exist" in result.stderr
    assert "nothing was added" in result.stderr
    assert not queue.exists()


@pytest.mark.parametrize("command", ["copy", "tree", "sync"])
def test_add_to_missing_bucket_rejected(
    sample: Path,
    tmp_path: Path,
    store: tuple[str, str, dict[str, Any]],
    command: str,
) -> None:
    protocol, _, options = store
    source = str(sample / "a.txt") if command == "copy" else str(sample)
    queue = tmp_path / "q"

    result = invoke(
        "add", command, source, f"{protocol}://jq-missing", "--queue", str(queue),
        *_flags(options),
    )  # fmt: skip

    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"the bucket {protocol}://jq-missing does not exist" in result.stderr
    assert not queue.exists()
