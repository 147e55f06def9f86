"""``journalq add``, ``status``, ``actions``, ``cancel``, ``retry``, ``compact``,
``fsck`` and ``result`` through click's CliRunner."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest
from cli_helpers import SAMPLE, invoke, json_lines, read_tree, write_tree

from journalq.cli.exits import ExitCode


@pytest.fixture
def queue(tmp_path: Path) -> str:
    return str(tmp_path / "q")


def _status(queue: str) -> dict:
    result = invoke("status", "--queue", queue, "--json")
    assert result.exit_code == ExitCode.OK, result.output
    return json_lines(result.stdout)[0]


def test_add_each_kind_then_run(sample: Path, tmp_path: Path, queue: str) -> None:
    out = tmp_path / "out"
    write_tree(out, {"stale.txt": b"old", "stale-dir/x": b"x"})
    commands = [
        ("copy", str(sample / "a.txt"), str(out / "single.txt")),
        ("tree", str(sample / "docs"), str(out / "tree")),
        ("sync", f"{sample}/", str(out / "mirror")),
        ("mkdir", str(out / "made" / "here")),
        ("delete", str(out / "stale.txt")),
        ("delete", str(out / "stale-dir"), "--recursive"),
        ("list", str(sample / "docs")),
    ]
    ids = []
    for arguments in commands:
        added = invoke("add", *arguments, "--queue", queue)
        assert added.exit_code == ExitCode.OK, added.output
        ids.append(added.stdout.strip())

    result = invoke("run", "--queue", queue)

    assert result.exit_code == ExitCode.OK, result.output
    assert (out / "single.txt").read_bytes() == SAMPLE["a.txt"]
    assert (out / "tree" / "deep" / "c.txt").read_bytes() == SAMPLE["docs/deep/c.txt"]
    assert read_tree(out / "mirror") == SAMPLE
    assert (out / "made" / "here").is_dir()
    assert not (out / "stale.txt").exists()
    assert not (out / "stale-dir").exists()
    listing = invoke("result", ids[-1], "--queue", queue, "--json")
    by_prefix = invoke("result", ids[-1][:8], "--queue", queue, "--json")
    names = {os.path.basename(entry["name"]) for entry in json_lines(listing.stdout)}
    assert names == {"b.txt", "deep"}
    assert by_prefix.stdout == listing.stdout


def test_add_prints_one_id(sample: Path, tmp_path: Path, queue: str) -> None:
    result = invoke(
        "add", "copy", str(sample / "a.txt"), str(tmp_path / "o"), "--queue", queue
    )

    assert result.exit_code == ExitCode.OK, result.output
    assert len(result.stdout.split()) == 1
    assert _status(queue)["waiting"] == 1


def test_add_same_request_twice_adds_once(
    sample: Path, tmp_path: Path, queue: str
) -> None:
    arguments = (
        "add",
        "copy",
        str(sample / "a.txt"),
        str(tmp_path / "o"),
        "--queue",
        queue,
    )

    first = invoke(*arguments)
    second = invoke(*arguments)

    assert first.stdout == second.stdout
    assert _status(queue)["length"] == 1


def test_add_on_memory_filesystem(
    memory: fsspec.AbstractFileSystem, queue: str
) -> None:
    memory.pipe("/in/x.txt", b"x")

    added = invoke(
        "add", "copy", "memory://in/x.txt", "memory://out/y.txt", "--queue", queue
    )
    mkdir = invoke("add", "mkdir", "memory://out/empty", "--queue", queue)
    result = invoke("run", "--queue", queue)

    assert added.exit_code == ExitCode.OK, added.output
    assert mkdir.exit_code == ExitCode.OK, mkdir.output
    assert result.exit_code == ExitCode.OK, result.output
    assert memory.cat("/out/y.txt") == b"x"
    assert memory.isdir("/out/empty")


def test_add_without_action_is_usage_error() -> None:
    result = invoke("add")

    assert result.exit_code == ExitCode.USAGE
    assert "--from" in result.stderr


def _batch(tmp_path: Path, lines: list[object]) -> Path:
    path = tmp_path / "actions.jsonl"
    text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    path.write_text("\n".join(text) + "\n")
    return path


def test_add_from_file(sample: Path, tmp_path: Path, queue: str) -> None:
    out = tmp_path / "out"
    batch = _batch(
        tmp_path,
        [
            {
                "kind": "copy_file",
                "source": str(sample / "a.txt"),
                "destination": str(out / "a"),
            },
            "",
            {
                "kind": "copy_tree",
                "source": str(sample / "docs"),
                "destination": str(out / "d"),
            },
            {"kind": "mkdir", "path": str(out / "new")},
        ],
    )

    added = invoke("add", "--from", str(batch), "--queue", queue)
    result = invoke("run", "--queue", queue)

    assert added.exit_code == ExitCode.OK, added.output
    assert len(added.stdout.split()) == 3
    assert result.exit_code == ExitCode.OK, result.output
    assert (out / "a").read_bytes() == SAMPLE["a.txt"]
    assert (out / "d" / "b.txt").read_bytes() == SAMPLE["docs/b.txt"]
    assert (out / "new").is_dir()


def test_add_from_stdin(sample: Path, tmp_path: Path, queue: str) -> None:
    line = {
        "kind": "copy_file",
        "source": str(sample / "a.txt"),
        "destination": str(tmp_path / "a"),
    }

    result = invoke(
        "add", "--from", "-", "--queue", queue, input=json.dumps(line) + "\n"
    )

    assert result.exit_code == ExitCode.OK, result.output
    assert _status(queue)["waiting"] == 1


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({"kind": "move"}, "unknown kind 'move'"),
        ({"kind": "copy_file", "source": "/a"}, "needs the field 'destination'"),
        ({"kind": "mkdir", "path": "/x", "colour": "red"}, "unknown field 'colour'"),
        ({"kind": "delete", "path": "/x", "recursive": "yes"}, "must be a bool"),
        ({"kind": "mkdir", "path": "/x", "service": "both"}, "service 'both'"),
        ({"kind": "mkdir", "path": "memory://x"}, "one destination filesystem"),
    ],
)
def test_add_from_bad_line_adds_nothing(
    sample: Path, tmp_path: Path, queue: str, bad_line: object, message: str
) -> None:
    good = {"kind": "mkdir", "path": str(tmp_path / "made")}
    batch = _batch(tmp_path, [good, good | {"path": str(tmp_path / "other")}, bad_line])

    result = invoke("add", "--from", str(batch), "--queue", queue)

    assert result.exit_code == ExitCode.USAGE
    assert "line 3" in result.stderr
    assert message in result.stderr
    assert "nothing was added" in result.stderr
    assert not (Path(queue) / "FORMAT").exists()


def test_add_from_rejected_action_adds_nothing(
    sample: Path, tmp_path: Path, queue: str
) -> None:
    invoke("add", "mkdir", str(tmp_path / "before"), "--queue", queue)
    batch = _batch(
        tmp_path,
        [
            {
                "kind": "copy_file",
                "source": str(sample / "a.txt"),
                "destination": str(tmp_path / "a"),
            },
            {
                "kind": "sync",
                "source": str(tmp_path / "missing"),
                "destination": str(tmp_path / "m"),
            },
        ],
    )

    result = invoke("add", "--from", str(batch), "--queue", queue)
    status = _status(queue)

    assert result.exit_code == ExitCode.USAGE
    assert "line 2" in result.stderr
    assert str(tmp_path / "missing") in result.stderr
    assert "nothing from the file was added" in result.stderr
    assert result.stdout == ""
    assert status["waiting"] == 1
    assert status["canceled"] == 0
    assert status["length"] == 1


def test_add_from_repeated_line_adds_once(
    sample: Path, tmp_path: Path, queue: str
) -> None:
    """Every line is checked before the first is journaled, and a line that
    repeats an earlier one gets the earlier line's id."""
    sync = {"kind": "sync", "source": str(sample), "destination": str(tmp_path / "m")}
    batch = _batch(
        tmp_path, [sync, {"kind": "mkdir", "path": str(tmp_path / "x")}, sync]
    )

    result = invoke("add", "--from", str(batch), "--queue", queue)
    ids = result.stdout.split()
    status = _status(queue)

    assert result.exit_code == ExitCode.OK, result.output
    assert len(ids) == 3
    assert ids[0] == ids[2]
    assert ids[0] != ids[1]
    # The sync, its 3 mkdirs and a copy per file of the sample, and the
    # mkdir of the second line.
    assert status["length"] == 1 + 3 + len(SAMPLE) + 1


def test_status_counts(sample: Path, tmp_path: Path, queue: str) -> None:
    invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)

    plain = invoke("status", "--queue", queue)
    counts = _status(queue)

    assert plain.exit_code == ExitCode.OK, plain.output
    assert plain.stdout.startswith(f"queue        {queue}\n")
    length = counts["length"]
    assert re.search(rf"^completed +{length}$", plain.stdout, re.MULTILINE)
    assert re.search(rf"^total +{length}$", plain.stdout, re.MULTILINE)
    assert counts["queue"] == queue
    assert counts["running"] is None
    assert counts["completed"] == counts["length"]
    assert counts["failed"] == 0
    assert counts["bytes"] == sum(len(content) for content in SAMPLE.values())


def test_status_of_missing_queue(tmp_path: Path) -> None:
    result = invoke("status", "--queue", str(tmp_path / "none"))

    assert result.exit_code == ExitCode.USAGE
    assert "not found" in result.stderr


def test_actions_filter_and_json(sample: Path, tmp_path: Path, queue: str) -> None:
    os.symlink(tmp_path / "nowhere", sample / "dangling.txt")
    invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)

    failed = invoke("actions", "--status", "failed", "--queue", queue, "--json")
    plain = invoke("actions", "--queue", queue)

    rows = json_lines(failed.stdout)
    files = [row for row in rows if row["kind"] == "copy_file"]
    assert len(files) == 1
    assert files[0]["source"].endswith("dangling.txt")
    assert "FileNotFoundError" in files[0]["error"]
    copied = [
        line for line in plain.stdout.splitlines() if "completed  copy_file" in line
    ]
    assert len(copied) == len(SAMPLE)


def test_actions_bad_status_is_usage_error(queue: str) -> None:
    result = invoke("actions", "--status", "done", "--queue", queue)

    assert result.exit_code == ExitCode.USAGE
    assert "'done'" in result.stderr


def test_retry_then_run_after_fixing(sample: Path, tmp_path: Path, queue: str) -> None:
    link = sample / "dangling.txt"
    os.symlink(tmp_path / "later.txt", link)
    invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)
    (tmp_path / "later.txt").write_bytes(b"now it exists")

    retried = invoke("retry", "--queue", queue)
    result = invoke("run", "--queue", queue)

    assert retried.exit_code == ExitCode.OK, retried.output
    assert "1 failed action waits again" in retried.stdout
    assert result.exit_code == ExitCode.OK, result.output
    assert (tmp_path / "out" / "dangling.txt").read_bytes() == b"now it exists"


def test_cancel_drops_gone_source(sample: Path, tmp_path: Path, queue: str) -> None:
    """A file deleted at the source fails until its action is dropped."""
    link = sample / "dangling.txt"
    os.symlink(tmp_path / "never.txt", link)
    first = invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)
    link.unlink()
    invoke("retry", "--queue", queue)
    again = invoke("run", "--queue", queue)
    hint = re.search(r"`(journalq cancel [0-9a-f]{16} --queue \S+)`", again.stderr)
    assert hint is not None, again.stderr

    dropped = invoke(*shlex.split(hint[1])[1:])
    final = invoke("run", "--queue", queue)
    status = _status(queue)

    assert first.exit_code == ExitCode.FAILED
    # One failed file: the line names it, so it can be pasted as it is.
    assert re.search(
        rf"drop one: journalq cancel [0-9a-f]{{16}} --queue {re.escape(queue)}\n",
        first.stderr,
    )
    assert again.exit_code == ExitCode.FAILED
    assert "source file not found" in again.stderr
    assert dropped.stdout.strip() == "canceled 1 action"
    assert final.exit_code == ExitCode.OK, final.output
    assert status["failed"] == 0
    assert status["waiting"] == 0
    assert "to see the failures" not in status["next"]
    assert read_tree(tmp_path / "out") == read_tree(sample)


def test_cancel_one_and_all(sample: Path, tmp_path: Path, queue: str) -> None:
    first = invoke(
        "add", "copy", str(sample / "a.txt"), str(tmp_path / "1"), "--queue", queue
    )
    invoke("add", "copy", str(sample / "a.txt"), str(tmp_path / "2"), "--queue", queue)
    invoke("add", "copy", str(sample / "a.txt"), str(tmp_path / "3"), "--queue", queue)

    one = invoke("cancel", first.stdout.strip(), "--queue", queue)
    rest = invoke("cancel", "--all", "--queue", queue)
    result = invoke("run", "--queue", queue)

    assert one.stdout.strip() == "canceled 1 action"
    assert rest.stdout.strip() == "canceled 2 actions"
    assert _status(queue)["canceled"] == 3
    assert result.exit_code == ExitCode.OK
    assert not (tmp_path / "1").exists()


def test_cancel_needs_ids_or_all(queue: str) -> None:
    neither = invoke("cancel", "--queue", queue)
    both = invoke("cancel", "abc", "--all", "--queue", queue)

    assert neither.exit_code == ExitCode.USAGE
    assert both.exit_code == ExitCode.USAGE


def test_cancel_unknown_id(sample: Path, tmp_path: Path, queue: str) -> None:
    invoke("add", "mkdir", str(tmp_path / "x"), "--queue", queue)

    result = invoke("cancel", "feedfacefeedface", "--queue", queue)

    assert result.exit_code == ExitCode.USAGE
    assert "feedfacefeedface" in result.stderr


def test_cancel_by_unique_prefix(sample: Path, tmp_path: Path, queue: str) -> None:
    first = invoke(
        "add", "copy", str(sample / "a.txt"), str(tmp_path / "1"), "--queue", queue
    )
    invoke("add", "copy", str(sample / "a.txt"), str(tmp_path / "2"), "--queue", queue)
    first_id = first.stdout.strip()

    result = invoke("cancel", first_id[:8], "--queue", queue)
    actions = json_lines(invoke("actions", "--queue", queue, "--json").stdout)

    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout.strip() == "canceled 1 action"
    statuses = {action["id"]: action["status"] for action in actions}
    assert statuses.pop(first_id) == "canceled"
    assert list(statuses.values()) == ["waiting"]


def test_cancel_says_why_it_left_an_action(
    sample: Path, tmp_path: Path, queue: str
) -> None:
    """A cancel of a completed or canceled action explains why it did nothing."""
    done = invoke(
        "add", "copy", str(sample / "a.txt"), str(tmp_path / "1"), "--queue", queue
    ).stdout.strip()
    invoke("run", "--queue", queue)
    waiting = invoke(
        "add", "copy", str(sample / "a.txt"), str(tmp_path / "2"), "--queue", queue
    ).stdout.strip()
    invoke("cancel", waiting, "--queue", queue)

    result = invoke("cancel", done[:8], waiting, "--queue", queue)

    assert result.exit_code == ExitCode.OK, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "canceled 0 actions"
    assert lines[1].startswith(f"{done}: left as it is, completed; ")
    assert lines[2].startswith(f"{waiting}: canceled before; ")
    assert f"`journalq show {waiting} --queue {queue}`" in lines[2]


def test_cancel_bad_id_cancels_nothing(
    sample: Path, tmp_path: Path, queue: str
) -> None:
    """A prefix of two ids, or an unknown id next to a good one, cancels nothing."""
    ids = []
    for name in ("1", "2"):
        added = invoke(
            "add", "copy", str(sample / "a.txt"), str(tmp_path / name), "--queue", queue
        )
        assert added.exit_code == ExitCode.OK, added.output
        ids.append(added.stdout.strip())

    ambiguous = invoke("cancel", "", "--queue", queue)
    mixed = invoke("cancel", ids[0], "feedfacefeedface", "--queue", queue)

    assert ambiguous.exit_code == ExitCode.USAGE
    assert "give more of the id" in ambiguous.stderr
    assert mixed.exit_code == ExitCode.USAGE
    assert "'feedfacefeedface': no action with this id" in mixed.stderr
    assert _status(queue)["canceled"] == 0


def test_result_takes_unique_prefix(sample: Path, queue: str) -> None:
    listing = invoke("add", "list", str(sample / "docs"), "--queue", queue)
    invoke("run", "--queue", queue)

    result = invoke("result", listing.stdout.strip()[:12], "--queue", queue)

    assert result.exit_code == ExitCode.OK, result.output
    assert "b.txt" in result.stdout


def _actions(queue: str) -> list[dict]:
    result = invoke("actions", "--queue", queue, "--json")
    assert result.exit_code == ExitCode.OK, result.output
    return json_lines(result.stdout)


def test_compact_keeps_state(sample: Path, tmp_path: Path, queue: str) -> None:
    invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)
    before = _status(queue)

    result = invoke("compact", "--queue", queue)

    assert result.exit_code == ExitCode.OK, result.output
    assert list((Path(queue) / "snapshots").glob("snap-*.jqs"))
    assert _status(queue) == before


def _segments(queue: str) -> list[Path]:
    return sorted((Path(queue) / "journal").glob("*.jq"))


def test_fsck_clean_journal(sample: Path, tmp_path: Path, queue: str) -> None:
    invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)

    result = invoke("fsck", "--queue", queue)

    assert result.exit_code == ExitCode.OK, result.output
    assert "journal ok" in result.stdout


def test_fsck_reports_and_repairs_corruption(
    sample: Path, tmp_path: Path, queue: str
) -> None:
    for name in ("one", "two", "three"):
        invoke("add", "mkdir", str(tmp_path / name), "--queue", queue)
    first = _segments(queue)[0]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))

    status = invoke("status", "--queue", queue)
    check = invoke("fsck", "--queue", queue)
    repair = invoke("fsck", "--truncate-at-corruption", "--queue", queue)
    after = invoke("status", "--queue", queue)

    assert status.exit_code == ExitCode.UNUSABLE
    assert "--truncate-at-corruption" in status.stderr
    assert check.exit_code == ExitCode.UNUSABLE
    assert str(first) in check.stderr
    assert repair.exit_code == ExitCode.OK, repair.output
    assert "backup:" in repair.stdout
    assert after.exit_code == ExitCode.OK, after.output


def test_fsck_of_missing_queue(tmp_path: Path) -> None:
    result = invoke("fsck", "--queue", str(tmp_path / "none"))

    assert result.exit_code == ExitCode.UNUSABLE
    assert "no queue here" in result.stderr


def test_fsck_reports_torn_tail(tmp_path: Path, queue: str) -> None:
    # Only a killed process leaves its last segment unsealed, so that garbage
    # after its last frame is a torn tail rather than corruption.
    killed = subprocess.run(
        [
            *(sys.executable, "-m", "journalq", "add", "mkdir"),
            *(str(tmp_path / "one"), "--queue", queue),
        ],
        env={**os.environ, "JOURNALQ_CRASH_AT": "journal.after_sync:2"},
        capture_output=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    last = _segments(queue)[-1]
    with last.open("ab") as segment:
        segment.write(b"\x5a" * 37)

    check = invoke("fsck", "--queue", queue)
    status = invoke("status", "--queue", queue)

    assert check.exit_code == ExitCode.OK, check.output
    assert f"torn tail: {last}" in check.stdout
    assert "37 bytes" in check.stdout
    assert status.exit_code == ExitCode.OK, status.output
