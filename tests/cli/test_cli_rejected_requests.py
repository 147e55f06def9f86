"""A ``copy``, ``sync`` or ``add`` whose request is rejected leaves no new queue.

Without ``--queue`` each command opens a queue named after SRC and DST
(``add``: the queue ``local``), and creates it when it is new. A rejected
request (a missing source, trees that overlap, a file where the
destination tree should be) adds nothing, so the queue
it created is deleted again. A queue that existed before the command is
kept as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_helpers import SAMPLE, invoke, json_lines, queue_files, run_journalq

from journalq.cli.exits import ExitCode

#: The command, with SRC and DST relative to the test's sample tree
#: ``data``, and the error message that the rejection prints.
REJECTED = {
    "copy missing source": (
        ["copy", "missing/", "out/"],
        "source not found; check the path (nothing was added)",
    ),
    "copy destination inside source": (
        ["copy", "data/", "data/docs/copy"],
        "the destination overlaps the source",
    ),
    "copy source inside destination": (
        ["copy", "data/docs/", "data/"],
        "the destination overlaps the source",
    ),
    "copy same tree": (
        ["copy", "data/", "data/"],
        "the destination overlaps the source",
    ),
    "sync missing source": (
        ["sync", "missing", "out"],
        "source directory not found",
    ),
    "sync destination inside source": (
        ["sync", "data", "data/docs"],
        "the destination overlaps the source",
    ),
    "copy tree below a file": (
        ["copy", "data/docs", "data/a.txt/copy"],
        "a.txt is in the way: the destination must be a directory",
    ),
    "copy file below a file": (
        ["copy", "data/docs/b.txt", "data/a.txt/b.txt"],
        "a.txt is in the way: the destination must be a directory",
    ),
    "copy file into a file": (
        ["copy", "data/docs/b.txt", "data/a.txt/"],
        "a.txt is in the way: the destination must be a directory",
    ),
    "copy contents into a file": (
        ["copy", "data/docs/", "data/a.txt"],
        "a.txt is in the way: the destination must be a directory",
    ),
    "sync onto a file": (
        ["sync", "data/docs", "data/a.txt"],
        "a.txt is in the way: the destination must be a directory",
    ),
    "sync below a file": (
        ["sync", "data/docs", "data/a.txt/sub"],
        "a.txt is in the way: the destination must be a directory",
    ),
}


def _status(queue: str) -> dict:
    result = invoke("status", "--queue", queue, "--json")
    assert result.exit_code == ExitCode.OK, result.output
    return json_lines(result.stdout)[0]


def _in(root: Path, command: list[str]) -> list[str]:
    # Path drops a trailing slash, which decides where a copy lands.
    return [
        command[0],
        *(
            str(root / argument) + "/" * argument.endswith("/")
            for argument in command[1:]
        ),
    ]


@pytest.mark.parametrize("case", REJECTED)
def test_rejected_request_leaves_no_queue(
    sample: Path, tmp_path: Path, queue_home: Path, case: str
) -> None:
    command, message = REJECTED[case]

    result = invoke(*_in(tmp_path, command))
    queues = invoke("queues")

    assert result.exit_code == ExitCode.USAGE, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not os.listdir(queue_home / "queues")
    assert queues.exit_code == ExitCode.OK, queues.output
    assert "no queues" in queues.output


@pytest.mark.parametrize("case", REJECTED)
def test_rejected_request_keeps_existing_queue(
    sample: Path, tmp_path: Path, case: str
) -> None:
    queue = str(tmp_path / "q")
    first = invoke("copy", f"{sample}/", str(tmp_path / "first"), "--queue", queue)
    assert first.exit_code == ExitCode.OK, first.output
    before = _status(queue)
    command, message = REJECTED[case]

    result = invoke(*_in(tmp_path, command), "--queue", queue)
    after = _status(queue)

    assert result.exit_code == ExitCode.USAGE, result.output
    assert message in result.stderr
    assert before["completed"] >= len(SAMPLE)
    assert after["completed"] == before["completed"]
    assert after["length"] == before["length"]


def test_rejected_request_keeps_existing_directory(
    sample: Path, tmp_path: Path
) -> None:
    """A --queue directory that existed before, even empty, is not deleted."""
    queue = tmp_path / "empty"
    queue.mkdir()

    result = invoke("copy", str(tmp_path / "missing"), "out", "--queue", str(queue))

    assert result.exit_code == ExitCode.USAGE, result.output
    assert queue.is_dir()


#: ``journalq add`` of a tree whose source is missing, and the error it prints.
REJECTED_ADDS = {
    "copy": "'{missing}': source not found; check the path (nothing was added)",
    "tree": "'{missing}': source directory not found: {missing}; check the path",
    "sync": "'{missing}': source directory not found: {missing}; check the path",
}


def _actions(queue: str) -> list[dict]:
    result = invoke("actions", "--queue", queue, "--json")
    assert result.exit_code == ExitCode.OK, result.output
    return json_lines(result.stdout)


@pytest.mark.parametrize("kind", REJECTED_ADDS)
def test_rejected_add_leaves_no_queue(
    tmp_path: Path, queue_home: Path, kind: str
) -> None:
    missing = str(tmp_path / "missing")
    queue = tmp_path / "q"

    named = run_journalq("add", kind, missing, str(tmp_path / "out"))
    directory = run_journalq(
        "add", kind, missing, str(tmp_path / "out"), "--queue", str(queue)
    )
    queues = invoke("queues")

    for result in (named, directory):
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert REJECTED_ADDS[kind].format(missing=missing) in result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
    assert not (queue_home / "queues" / "local").exists()
    assert not queue.exists()
    assert "no queues" in queues.output


@pytest.mark.parametrize("kind", REJECTED_ADDS)
def test_rejected_add_keeps_existing_queue(
    sample: Path, tmp_path: Path, kind: str
) -> None:
    queue = str(tmp_path / "q")
    first = invoke(
        "add", "copy", f"{sample}/", str(tmp_path / "first"), "--queue", queue
    )
    assert first.exit_code == ExitCode.OK, first.output
    before = (_status(queue), _actions(queue))
    files_before = queue_files(Path(queue))
    missing = str(tmp_path / "missing")

    result = run_journalq("add", kind, missing, str(tmp_path / "out"), "--queue", queue)
    after = (_status(queue), _actions(queue))

    assert result.returncode == ExitCode.USAGE, result.stderr
    assert REJECTED_ADDS[kind].format(missing=missing) in result.stderr
    assert before[0]["waiting"] > len(SAMPLE)
    assert after == before
    assert queue_files(Path(queue)) == files_before


def test_rejected_batch_leaves_no_queue(sample: Path, tmp_path: Path) -> None:
    """A batch whose second line is rejected adds nothing; no queue stays."""
    missing = tmp_path / "missing"
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        json.dumps({"kind": "copy_tree", "source": str(sample), "destination": "o"})
        + "\n"
        + json.dumps({"kind": "copy_tree", "source": str(missing), "destination": "p"})
        + "\n"
    )
    queue = tmp_path / "q"

    result = run_journalq("add", "--from", str(batch), "--queue", str(queue))

    assert result.returncode == ExitCode.USAGE, result.stderr
    assert f"line 2: '{missing}': source directory not found" in result.stderr
    assert "nothing from the file was added" in result.stderr
    assert not queue.exists()


#: A third line of a batch that the checks reject, built from the test's
#: directory, and what the error names: the value, then the reason.
REJECTED_LINES = {
    "missing tree": (
        lambda root: {
            "kind": "copy_tree",
            "source": str(root / "missing"),
            "destination": str(root / "m"),
        },
        lambda root: f"'{root / 'missing'}': source directory not found",
    ),
    "missing source file": (
        lambda root: {
            "kind": "copy_file",
            "source": str(root / "missing.txt"),
            "destination": str(root / "m.txt"),
        },
        lambda root: f"'{root / 'missing.txt'}': source not found; check the path",
    ),
    "destination in source": (
        lambda root: {
            "kind": "copy_tree",
            "source": str(root / "data"),
            "destination": str(root / "data" / "docs" / "copy"),
        },
        lambda root: (
            f"'{root / 'data' / 'docs' / 'copy'}': the destination overlaps the source"
        ),
    ),
    "source in destination": (
        lambda root: {
            "kind": "sync",
            "source": str(root / "data" / "docs"),
            "destination": str(root / "data"),
            "delete": True,
        },
        lambda root: f"'{root / 'data'}': the destination overlaps the source",
    ),
    "sync over max delete": (
        lambda root: {
            "kind": "sync",
            "source": str(root / "data" / "docs"),
            "destination": str(root / "first"),
            "delete": True,
            "max_delete": 0,
        },
        # The 2 files and the tree docs/ (3 directories and 3 files) of
        # the sample are not in docs/.
        lambda root: (
            f"'{root / 'first'}': the sync would delete 8 items, more "
            "than the maximum of 0"
        ),
    ),
    "delete of queue": (
        lambda root: {"kind": "delete", "path": str(root), "recursive": True},
        lambda root: f"'{root}': the destination tree contains the queue directory",
    ),
}


@pytest.mark.parametrize("case", REJECTED_LINES)
def test_rejected_batch_line_adds_nothing(
    sample: Path, tmp_path: Path, case: str
) -> None:
    """A batch into a queue that exists adds nothing when its last line is
    rejected, and leaves every file of the queue as it was."""
    queue = tmp_path / "q"
    first = invoke("copy", f"{sample}/", str(tmp_path / "first"), "--queue", str(queue))
    assert first.exit_code == ExitCode.OK, first.output
    bad_line, expected = REJECTED_LINES[case]
    lines = [
        {
            "kind": "copy_file",
            "source": str(sample / "a.txt"),
            "destination": str(tmp_path / "a"),
        },
        {
            "kind": "copy_tree",
            "source": str(sample),
            "destination": str(tmp_path / "t"),
        },
        bad_line(tmp_path),
    ]
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(json.dumps(line) + "\n" for line in lines))
    before = (_status(str(queue)), _actions(str(queue)))
    files_before = queue_files(queue)

    result = run_journalq("add", "--from", str(batch), "--queue", str(queue))
    after = (_status(str(queue)), _actions(str(queue)))

    assert result.returncode == ExitCode.USAGE, result.stderr
    assert f"{batch}: line 3: {expected(tmp_path)}" in result.stderr
    assert "nothing from the file was added" in result.stderr
    assert "canceled" not in result.stderr
    assert result.stdout == ""
    assert after == before
    assert queue_files(queue) == files_before
