"""The commands that messages suggest: each names the queue it is about.

Without ``--queue`` a command opens the queue named ``local``, so a hint
that leaves it out fails when it is followed. Each test runs the command
a message suggests, as a user would paste it.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from cli_helpers import invoke, json_lines

from journalq import StorageQueue
from journalq.cli.exits import ExitCode
from journalq.errors import ActionError
from journalq.journal.format import HEADER_SIZE

#: A command in backquotes, as messages quote the commands they suggest.
QUOTED_COMMAND = re.compile(r"`(journalq [^`]+)`")


def _follow(command: str) -> list[dict]:
    """Run a suggested ``journalq ...`` command with ``--json``; return its lines."""
    words = shlex.split(command)
    assert words[0] == "journalq"
    assert "--queue" in words
    result = invoke(*words[1:], "--json")
    assert result.exit_code == ExitCode.OK, result.output
    return json_lines(result.stdout)


@pytest.fixture
def failed_tree(tmp_path: Path) -> tuple[str, str]:
    """Copy a tree with three dangling links; return the queue and the stderr."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "ok.txt").write_bytes(b"ok")
    for name in ("a", "b", "c"):
        os.symlink(tmp_path / "nowhere" / name, source / name)
    queue = str(tmp_path / "q")
    result = invoke("copy", f"{source}/", str(tmp_path / "out"), "--queue", queue)
    assert result.exit_code == ExitCode.FAILED, result.output
    return queue, result.stderr


def test_summary_counts_failed_tree(failed_tree: tuple[str, str]) -> None:
    _, stderr = failed_tree
    lines = stderr.splitlines()

    (listing,) = [line for line in lines if line.startswith("list them: ")]
    listed = _follow(listing.removeprefix("list them: "))

    assert "failed 3," in stderr
    assert "3 actions failed, and so did the tree that holds them:" in lines
    assert len(listed) == 3 + 1
    assert sum(1 for action in listed if action["kind"] == "copy_tree") == 1


def test_heading_counts_items_in_tree(tmp_path: Path) -> None:
    """A failed file added alone is not counted among the tree's items."""
    source = tmp_path / "src"
    source.mkdir()
    os.symlink(tmp_path / "nowhere", source / "dangling")
    lone = tmp_path / "lone.txt"
    lone.write_bytes(b"lone")
    queue = str(tmp_path / "q")
    invoke("add", "copy", f"{source}/", str(tmp_path / "out"), "--queue", queue)
    invoke("add", "copy", str(lone), str(tmp_path / "out2") + "/", "--queue", queue)
    lone.unlink()

    result = invoke("run", "--queue", queue)

    assert result.exit_code == ExitCode.FAILED, result.output
    heading = "2 actions failed, and so did the tree that holds 1 of them:"
    assert heading in result.stderr.splitlines()


def test_status_names_only_failed_item(tmp_path: Path) -> None:
    lone = tmp_path / "lone.txt"
    lone.write_bytes(b"lone")
    queue = str(tmp_path / "q")
    added = invoke(
        "add", "copy", str(lone), str(tmp_path / "out") + "/", "--queue", queue
    )
    lone.unlink()
    invoke("run", "--queue", queue)

    status = invoke("status", "--queue", queue)

    canceled = invoke("cancel", "--all", "--queue", queue)

    (action_id,) = added.stdout.split()
    assert f"journalq cancel {action_id} --queue" in status.stdout
    assert "so 1 failed action stays: cancel it by ID" in canceled.stdout


def test_tree_error_names_queue(failed_tree: tuple[str, str]) -> None:
    queue, _ = failed_tree
    (tree,) = _follow(f"journalq actions --kind copy_tree --queue {queue}")

    suggested = QUOTED_COMMAND.search(tree["error"])
    assert suggested is not None, tree["error"]
    listed = _follow(suggested[1])

    assert tree["error"].startswith("ChildrenFailed: 3 of 4 items failed; see ")
    assert {action["status"] for action in listed} == {"failed"}
    assert len(listed) == 4


def test_unknown_id_names_queue(failed_tree: tuple[str, str]) -> None:
    queue, _ = failed_tree

    result = invoke("show", "zzzz", "--queue", queue)
    suggested = QUOTED_COMMAND.search(result.stderr)
    assert suggested is not None, result.stderr

    assert result.exit_code == ExitCode.USAGE
    assert len(_follow(suggested[1])) == 5


@pytest.mark.parametrize("method", ["get_action", "cancel"])
def test_library_unknown_id_names_queue(tmp_path: Path, method: str) -> None:
    directory = tmp_path / "my queue"
    with StorageQueue(str(tmp_path), str(tmp_path), name=str(directory)) as queue:
        with pytest.raises(ActionError) as raised:
            getattr(queue, method)("zzzz")

    assert f"`journalq actions --queue {shlex.quote(str(directory))}`" in str(
        raised.value
    )


def test_unreadable_queue_drop_names_it(failed_tree: tuple[str, str]) -> None:
    """A byte flipped in a sealed journal segment makes the queue unreadable."""
    queue, _ = failed_tree
    segment = min((Path(queue) / "journal").iterdir())
    data = bytearray(segment.read_bytes())
    data[HEADER_SIZE + 30] ^= 0x01
    segment.write_bytes(bytes(data))

    rejected = invoke("drop", queue)
    # The first command in the message is the corruption's own (fsck).
    suggested = QUOTED_COMMAND.findall(rejected.stderr)[-1]
    dropped = invoke(*shlex.split(suggested)[1:])

    assert rejected.exit_code == ExitCode.UNUSABLE, rejected.output
    assert "the queue cannot be read" in rejected.stderr
    assert suggested == f"journalq drop --force {queue}"
    assert dropped.exit_code == ExitCode.OK, dropped.output
    assert not Path(queue).exists()


def test_rerun_counts_earlier_failures(tmp_path: Path) -> None:
    """Failures of other actions in the queue are counted apart in the hint.

    A sync run again replaces its failed tree (the first run's tree and
    link become canceled), so the earlier failures here are those of a
    copy of another file that is missing.
    """
    source = tmp_path / "src"
    source.mkdir()
    (source / "ok.txt").write_bytes(b"ok")
    os.symlink(tmp_path / "nowhere", source / "link")
    queue = str(tmp_path / "q")
    command = ("sync", str(source), str(tmp_path / "out"), "--queue", queue)

    first = invoke(*command)
    lost = tmp_path / "lost.txt"
    lost.write_bytes(b"soon gone")
    added = invoke("add", "copy", str(lost), str(tmp_path / "out2"), "--queue", queue)
    lost.unlink()
    failing = invoke("run", "--queue", queue)
    second = invoke(*command)
    lines = second.stderr.splitlines()
    (listing,) = [line for line in lines if line.startswith("list them and 1 more: ")]

    assert first.exit_code == ExitCode.FAILED, first.output
    assert added.exit_code == ExitCode.OK, added.output
    assert failing.exit_code == ExitCode.FAILED, failing.output
    assert second.exit_code == ExitCode.FAILED, second.output
    assert "1 action failed, and so did the tree that holds it:" in lines
    # The new tree and its link, and the copy of the missing file.
    assert len(_follow(listing.removeprefix("list them and 1 more: "))) == 1 + 1 + 1
