"""``journalq status``, ``actions``, ``show`` and ``queues`` as tables and JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from cli_helpers import SAMPLE, invoke, journalq_process, json_lines
from fsspec import AbstractFileSystem
from stalled_helpers import kill, wait_for_temporary

from journalq import StorageQueue
from journalq.cli.exits import ExitCode
from journalq.cli.fitting import fit_pair, share_width, unique_prefix_length
from journalq.cli.output import (
    format_bytes,
    format_elapsed,
    location_url,
    shorten_path,
)
from journalq.records import Started


@pytest.fixture
def queue(tmp_path: Path) -> str:
    return str(tmp_path / "q")


@pytest.fixture
def failed_copy(sample: Path, tmp_path: Path, queue: str) -> str:
    """A copy of the sample tree with one dangling link, so one file failed."""
    os.symlink(tmp_path / "nowhere", sample / "dangling.txt")
    result = invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)
    assert result.exit_code == ExitCode.FAILED, result.output
    return queue


def _row(text: str, label: str) -> str:
    found = re.search(rf"^{re.escape(label)} +(.*)$", text, re.MULTILINE)
    assert found is not None, text
    return found.group(1)


def test_status_table_after_failed_run(failed_copy: str) -> None:
    result = invoke("status", "--queue", failed_copy)

    assert result.exit_code == ExitCode.OK, result.output
    assert _row(result.stdout, "failed") == "2"
    assert _row(result.stdout, "running") == "no"
    assert "last run: ended" in result.stdout
    assert f"copied {len(SAMPLE)}, skipped 0, failed 1" in result.stdout
    assert f"journalq retry --queue {failed_copy}" in result.stdout
    assert "to resume" not in result.stdout


def test_status_counts_add_up(sample: Path, tmp_path: Path, queue: str) -> None:
    """Files a listing found identical are in ``skipped`` but have no action."""
    out = tmp_path / "out"
    # The second sync compares sizes, so its listing skips every file.
    for compare in ("checksum", "size"):
        synced = invoke(
            "sync", str(sample), str(out), "--queue", queue, "--compare", compare
        )
        assert synced.exit_code == ExitCode.OK, synced.output
    single = invoke("copy", str(sample / "a.txt"), str(out / "a.txt"), "--queue", queue)
    assert single.exit_code == ExitCode.OK, single.output

    status = json_lines(invoke("status", "--queue", queue, "--json").stdout)[0]
    text = invoke("status", "--queue", queue).stdout

    statuses = ("waiting", "inprogress", "completed", "failed", "canceled")
    # Two trees, the first sync's 3 mkdirs and files, and the single copy.
    assert status["length"] == 2 + 3 + len(SAMPLE) + 1
    assert sum(status[name] for name in statuses) == status["length"]
    assert status["identical_when_listed"] == len(SAMPLE)
    assert status["skipped"] == len(SAMPLE) + 1
    assert _row(text, "total") == str(status["length"])
    assert "skipped as identical" not in text
    assert (
        f"skipped: {len(SAMPLE) + 1} ({len(SAMPLE)} identical when listed, 1 when run)"
    ) in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_summary_tells_files_identical_when_listed(
    sample: Path, tmp_path: Path, queue: str
) -> None:
    """A re-sync's summary names the skips that came from the listing."""
    out = tmp_path / "out"
    first = invoke("sync", str(sample), str(out), "--queue", queue)
    assert first.exit_code == ExitCode.OK, first.output
    assert "(identical when listed)" not in first.output
    # Sizes are compared, so the listing finds every file identical.
    again = ("sync", str(sample), str(out), "--queue", queue, "--compare", "size")
    text = invoke(*again)
    assert text.exit_code == ExitCode.OK, text.output
    assert f"skipped {len(SAMPLE)} (identical when listed)" in text.output
    summary = json_lines(invoke(*again, "--json").stdout)[-1]
    assert summary["event"] == "summary"
    assert summary["skipped"] == summary["identical_when_listed"] == len(SAMPLE)


def test_recovered_action_shows_no_error(failed_copy: str, tmp_path: Path) -> None:
    """A completed action keeps its earlier failure as last_error only."""
    (tmp_path / "nowhere").write_bytes(b"here now")
    retried = invoke("retry", "--queue", failed_copy)
    resumed = invoke("run", "--queue", failed_copy)

    actions = json_lines(invoke("actions", "--queue", failed_copy, "--json").stdout)
    table = invoke("actions", "--queue", failed_copy).stdout
    recovered = [action for action in actions if action["last_error"]]
    (file,) = [action for action in recovered if action["kind"] == "copy_file"]
    shown = invoke("show", file["id"], "--queue", failed_copy).stdout

    assert retried.exit_code == ExitCode.OK, retried.output
    assert resumed.exit_code == ExitCode.OK, resumed.output
    # The file and the tree that failed with it.
    assert len(recovered) == 2
    assert all(action["status"] == "completed" for action in recovered)
    assert all(action["error"] is None for action in actions)
    assert "FileNotFoundError" in file["last_error"]
    assert "ERROR" not in table
    assert file["last_error"] in _row(shown, "earlier attempt failed")
    assert "last error" not in shown


def test_status_json_has_last_run(failed_copy: str) -> None:
    result = invoke("status", "--queue", failed_copy, "--json")

    status = json_lines(result.stdout)[0]
    assert status["failed"] == 2
    assert status["last_run"]["copied"] == len(SAMPLE)
    assert status["last_run"]["failed"] == 1
    assert status["last_run"]["interrupted"] is False
    assert status["last_run"]["rate"] >= 0
    assert "to retry them" in status["next"]


def test_status_reads_older_last_run(
    sample: Path, tmp_path: Path, queue: str, queue_home: Path
) -> None:
    """A last-run file written before `deleted` was kept still loads."""
    invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)
    (summary_file,) = (queue_home / "runs").iterdir()
    older = json.loads(summary_file.read_bytes())
    del older["deleted"]
    summary_file.write_text(json.dumps(older))

    result = invoke("status", "--queue", queue, "--json")

    last_run = json_lines(result.stdout)[0]["last_run"]
    assert last_run["deleted"] == 0
    assert last_run["copied"] == len(SAMPLE)


def test_status_after_killed_run(sample: Path, tmp_path: Path, queue: str) -> None:
    """A run SIGKILLed mid-copy saves no summary, and status reports that it died.

    The killed run copies a FIFO that no process writes, so its copy is in
    progress when the kill lands.
    """
    out = tmp_path / "out"
    first = invoke("copy", f"{sample}/", str(out), "--queue", queue)
    assert first.exit_code == ExitCode.OK, first.output
    fifo = tmp_path / "stalled"
    os.mkfifo(fifo)
    added = invoke("add", "copy", str(fifo), str(out / "stalled"), "--queue", queue)
    assert added.exit_code == ExitCode.OK, added.output
    process = journalq_process(
        *("run", "--queue", queue, "-j", "1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_temporary(out, queue, process)
    while_running = invoke("status", "--queue", queue)
    kill(process)

    text = invoke("status", "--queue", queue).stdout
    status = json_lines(invoke("status", "--queue", queue, "--json").stdout)[0]

    assert "died" not in while_running.stdout
    assert _row(while_running.stdout, "running").startswith("yes, by pid")
    assert _row(text, "running") == "no"
    lines = text.splitlines()
    died = lines.index(
        "last run: died mid-run (killed or crashed) with 1 action in progress"
    )
    assert lines[died + 1].startswith("run before it: ended ")
    assert lines[died + 2].startswith(f"  copied {len(SAMPLE)}, skipped 0,")
    assert "last run: ended" not in text
    assert _row(text, "to resume:") == f"journalq run --queue {queue}"
    assert status["died_mid_run"] is True
    assert status["inprogress"] == 1
    assert status["last_run"]["copied"] == len(SAMPLE)


def test_status_of_finished_run(sample: Path, tmp_path: Path, queue: str) -> None:
    """A run that ended is the last run, its duration in seconds."""
    invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)

    text = invoke("status", "--queue", queue).stdout
    status = json_lines(invoke("status", "--queue", queue, "--json").stdout)[0]

    assert status["died_mid_run"] is False
    assert "died" not in text
    assert "run before it" not in text
    # The sample copies in well under a minute.
    ended = _row(text, "last run:")
    assert re.fullmatch(r"ended \S+ \S+ after \d+\.\d s", ended), ended


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0.0 s"),
        (0.4, "0.4 s"),
        (12.34, "12.3 s"),
        (59.94, "59.9 s"),
        (59.96, "0:01:00"),
        (3725, "1:02:05"),
    ],
)
def test_format_elapsed(seconds: float, shown: str) -> None:
    assert format_elapsed(seconds) == shown


def test_status_suggests_resume(sample: Path, tmp_path: Path, queue: str) -> None:
    invoke("add", "copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)

    result = invoke("status", "--queue", queue)

    assert _row(result.stdout, "to resume:") == f"journalq run --queue {queue}"
    assert "last run" not in result.stdout


def test_status_without_queue_lists_queues(sample: Path, tmp_path: Path) -> None:
    invoke("sync", str(sample), str(tmp_path / "mirror"))

    result = invoke("status")

    assert result.exit_code == ExitCode.USAGE
    assert "Existing queues: sync-" in result.stderr
    assert "journalq queues" in result.stderr


def test_queues_lists_named_queues(
    sample: Path, tmp_path: Path, queue_home: Path
) -> None:
    invoke("sync", str(sample), str(tmp_path / "mirror"))
    invoke("add", "mkdir", str(tmp_path / "new"), "--queue", "nightly")

    plain = invoke("queues")
    rows = json_lines(invoke("queues", "--json").stdout)
    lines = plain.stdout.splitlines()

    assert plain.exit_code == ExitCode.OK, plain.output
    assert lines[0] == f"queues in {queue_home / 'queues'}:"
    assert re.split(r"  +", lines[1]) == [
        *("NAME", "WAITING", "COMPLETED", "FAILED", "RUNNING", "LAST RUN"),
    ]
    # Each queue's row, then its latest copy or sync on a line of its own.
    assert len(lines) == 6
    assert lines[3] == "  latest: -"
    assert lines[5].startswith("  latest: ")
    assert lines[5].endswith("/mirror")
    assert max(len(line) for line in lines[1:5:2]) <= 80
    names = [row["name"] for row in rows]
    assert names[0] == "nightly"
    assert names[1].startswith("sync-")
    assert rows[0]["queue"] == str(queue_home / "queues" / "nightly")
    assert rows[1]["queue"] == str(queue_home / "queues" / names[1])
    assert rows[0]["waiting"] == 1
    assert rows[0]["last_run"] is None
    assert rows[1]["last_run"] is not None
    assert [row["died_mid_run"] for row in rows] == [False, False]


def test_queues_count_stopped_actions_as_waiting(
    tmp_path: Path, queue_home: Path
) -> None:
    """An action a killed run left in progress waits for the next run."""
    invoke("add", "mkdir", str(tmp_path / "new"), "--queue", "nightly")
    with StorageQueue(name=str(queue_home / "queues" / "nightly")) as queue:
        (action_id,) = queue.state.actions
        store = queue._store
        assert store is not None
        assert store.start(action_id, Started(action_id, 1, time.time_ns()))

    plain = invoke("queues")
    (row,) = json_lines(invoke("queues", "--json").stdout)

    assert (row["waiting"], row["inprogress"]) == (0, 1)
    assert row["died_mid_run"] is True
    cells = re.split(r"  +", plain.stdout.splitlines()[2])
    assert cells[:2] == ["nightly", "1"]
    assert cells[-1] == "died mid-run"


def test_queues_show_what_each_copies(
    sample: Path, tmp_path: Path, memory: object
) -> None:
    deep = tmp_path / "backups" / "of" / "the" / "photos" / "taken" / "in" / "2024"
    invoke("sync", str(sample), str(tmp_path / "mirror"))
    invoke("copy", f"{sample}/", "memory://scratch")
    invoke("copy", str(sample), str(deep))
    invoke("add", "mkdir", str(tmp_path / "new"), "--queue", "nightly")

    plain = invoke("queues")
    rows = {row["name"]: row for row in json_lines(invoke("queues", "--json").stdout)}

    assert plain.exit_code == ExitCode.OK, plain.output
    sync = next(row for name, row in rows.items() if name.startswith("sync-"))
    assert sync["latest_copy"] == {
        "kind": "sync",
        "source": str(sample),
        "destination": str(tmp_path / "mirror"),
    }
    assert sync["source"] == str(sample)
    assert sync["destination"] == str(tmp_path / "mirror")
    copies = [row for name, row in rows.items() if name.startswith("copy-")]
    destinations = {row["destination"] for row in copies}
    assert destinations == {"memory:///scratch", str(deep / "data")}
    assert {row["latest_copy"]["kind"] for row in copies} == {"copy_tree"}
    assert rows["nightly"]["latest_copy"] is None
    assert rows["nightly"]["source"] is None
    assert rows["nightly"]["destination"] is None
    lines = _latest_lines(plain.stdout)
    assert lines["nightly"] == "  latest: -"
    deep_name = next(
        row["name"] for row in copies if row["destination"] != "memory:///scratch"
    )
    # The first line names the folder of the queues, as long as it is.
    assert max(len(line) for line in plain.stdout.splitlines()[1:]) <= 80
    # Both sides of a pair too long for the line are cut by the same rule,
    # each to at most half of what the line leaves.
    half = (80 - len("  latest: ") - len(" -> ")) // 2
    source, _, destination = (
        lines[deep_name].removeprefix("  latest: ").partition(" -> ")
    )
    assert source == "/.../data"
    assert destination.startswith("/.../")
    assert destination.endswith("/in/2024/data")
    assert len(destination) <= half
    assert lines[sync["name"]] == "  latest: " + fit_pair(
        sync["source"], sync["destination"], 80 - len("  latest: ")
    )


def _latest_lines(text: str) -> dict[str, str]:
    """Return the ``latest:`` line of each queue in ``queues`` output, by name."""
    # Each queue's row, then the line of its latest copy or sync.
    queue_lines = text.splitlines()[2:]
    return {
        row.split()[0]: latest
        for row, latest in zip(queue_lines[::2], queue_lines[1::2], strict=True)
    }


def test_queues_latest_whole_when_it_fits(memory: AbstractFileSystem) -> None:
    """A pair that fits 80 columns is shown whole, however long one side is."""
    memory.pipe("/photos/2024/summer-holiday/a.txt", b"alpha")
    copied = invoke("copy", "memory://photos/2024/summer-holiday/", "memory://b/2024")
    assert copied.exit_code == ExitCode.OK, copied.output

    lines = invoke("queues").stdout.splitlines()

    assert lines[3] == (
        "  latest: memory:///photos/2024/summer-holiday -> memory:///b/2024"
    )


def test_queues_latest_follows_copy_rule(sample: Path, tmp_path: Path) -> None:
    """`copy data/ backup` and `copy data backup` show what each records.

    A copy journals the tree-to-tree pair that the trailing-slash rule
    resolved, with no slash, and ``latest:`` prints that pair: the two
    commands differ in the destination.
    """
    into = invoke("copy", f"{sample}/", str(tmp_path / "b"), "--queue", "contents")
    inside = invoke("copy", str(sample), str(tmp_path / "b"), "--queue", "itself")
    assert into.exit_code == ExitCode.OK, into.output
    assert inside.exit_code == ExitCode.OK, inside.output

    rows = {row["name"]: row for row in json_lines(invoke("queues", "--json").stdout)}
    lines = _latest_lines(invoke("queues").stdout)

    assert lines["contents"].endswith("/b")
    assert lines["itself"].endswith("/b/data")
    assert rows["contents"]["latest_copy"]["source"] == str(sample)
    assert rows["contents"]["latest_copy"]["destination"] == str(tmp_path / "b")
    assert rows["itself"]["latest_copy"]["source"] == str(sample)
    assert rows["itself"]["latest_copy"]["destination"] == str(tmp_path / "b" / "data")


def test_queues_latest_skips_canceled(sample: Path, tmp_path: Path) -> None:
    """The queue no longer copies a canceled tree, so the copy before it shows."""
    ran = invoke("copy", f"{sample}/", str(tmp_path / "kept"), "--queue", "q")
    added = invoke(
        "add", "tree", f"{sample}/", str(tmp_path / "dropped"), "--queue", "q"
    )
    canceled = invoke("cancel", "--all", "--queue", "q")
    assert ran.exit_code == ExitCode.OK, ran.output
    assert added.exit_code == canceled.exit_code == ExitCode.OK, canceled.output

    (row,) = json_lines(invoke("queues", "--json").stdout)
    lines = _latest_lines(invoke("queues").stdout)

    assert row["latest_copy"]["destination"] == str(tmp_path / "kept")
    assert lines["q"].endswith("/kept")


def test_queues_latest_all_canceled(sample: Path, tmp_path: Path) -> None:
    invoke("add", "tree", f"{sample}/", str(tmp_path / "older"), "--queue", "q")
    invoke("add", "tree", f"{sample}/", str(tmp_path / "newer"), "--queue", "q")
    assert invoke("cancel", "--all", "--queue", "q").exit_code == ExitCode.OK

    (row,) = json_lines(invoke("queues", "--json").stdout)

    assert row["latest_copy"]["destination"] == str(tmp_path / "newer")


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/srv/data", "/srv/data"),
        ("/home/me/photos", "~/photos"),
        ("/home/me/a/b/c/d/e/photos/2024", "~/.../e/photos/2024"),
        ("/srv/long/way/down/to/photos/2024", "/.../to/photos/2024"),
        ("s3://bucket/one/two/three/four/x.csv", "s3://bucket/.../four/x.csv"),
        ("/srv/" + "x" * 40, "..." + "x" * 17),
    ],
)
def test_shorten_path(path: str, shown: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/me")

    assert shorten_path(path, 20 if "s3" not in path else 26) == shown


@pytest.mark.parametrize(
    ("filesystem", "path", "url"),
    [
        ("file://", "/data/a", "/data/a"),
        ("file:///data", "a/b", "/data/a/b"),
        ("s3://", "bucket/key", "s3://bucket/key"),
        ("s3://bucket/base", "key", "s3://bucket/base/key"),
        ("sftp://me@host:2222", "/srv/x", "sftp://me@host:2222/srv/x"),
        ("sftp://host/srv", "/abs", "sftp://host/abs"),
        ("backup:", "photos", "backup:photos"),
        ("backup:root", "photos", "backup:root/photos"),
        ("file://", "memory://elsewhere", "memory://elsewhere"),
    ],
)
def test_location_url(filesystem: str, path: str, url: str) -> None:
    assert location_url(filesystem, path) == url


def test_actions_table_and_filters(failed_copy: str) -> None:
    table = invoke("actions", "--queue", failed_copy)
    files = invoke("actions", "--kind", "copy_file", "--queue", failed_copy, "--json")
    failed = invoke(
        "actions", "--status", "failed", "--kind", "copy_file", "--queue", failed_copy
    )
    matched = invoke("actions", "--path", "*/docs/*.txt", "--queue", failed_copy)
    limited = invoke("actions", "--limit", "2", "--no-header", "--queue", failed_copy)

    header = table.stdout.splitlines()[0].split()
    assert header == ["ID", "STATUS", "KIND", "ATTEMPTS", "BYTES", "PATH", "ERROR"]
    assert len(json_lines(files.stdout)) == len(SAMPLE) + 1
    failed_rows = failed.stdout.splitlines()[1:]
    assert len(failed_rows) == 1
    assert "dangling.txt" in failed_rows[0]
    assert "FileNotFoundError" in failed_rows[0]
    matched_rows = matched.stdout.splitlines()[1:]
    assert len(matched_rows) == 2
    assert all("/docs/" in row for row in matched_rows)
    assert len(limited.stdout.splitlines()) == 2
    total = len(table.stdout.splitlines()) - 1
    assert f"{total - 2} more actions match; raise --limit" in limited.stderr
    assert "more actions match" not in table.stderr


def test_actions_fit_80_columns(
    failed_copy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fitted: short ids that show accepts, then each action's paths and error."""
    whole = invoke("actions", "--queue", failed_copy)
    actions = json_lines(invoke("actions", "--queue", failed_copy, "--json").stdout)
    monkeypatch.setenv("COLUMNS", "80")

    fitted = invoke("actions", "--queue", failed_copy)
    fitted_json = invoke("actions", "--queue", failed_copy, "--json")
    untrimmed = invoke("actions", "--queue", failed_copy, "--no-trunc")

    assert fitted.exit_code == ExitCode.OK, fitted.output
    assert max(len(line) for line in whole.stdout.splitlines()) > 80
    lines = fitted.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    # The paths of the sample copy under tmp_path are too long for a column.
    assert lines[0].split() == ["ID", "STATUS", "KIND", "ATTEMPTS", "BYTES"]
    rows = [number for number, line in enumerate(lines) if not line.startswith(" ")]
    assert len(rows) == 1 + len(actions)
    for number, action in zip(rows[1:], actions, strict=True):
        cells = lines[number].split()
        assert cells == [
            action["id"][:8],
            action["status"],
            action["kind"],
            str(action["attempts"]),
            *format_bytes(action["bytes"]).split(),
        ]
        path = lines[number + 1]
        assert path.startswith("  /")
        # Each path keeps at least its last name.
        if action["source"] and action["destination"]:
            source, _, destination = path.partition(" -> ")
            assert source.endswith("/" + os.path.basename(action["source"]))
            assert destination.endswith("/" + os.path.basename(action["destination"]))
        else:
            name = os.path.basename(action["source"] or action["destination"])
            assert path.endswith(f"/{name} ({action['service']})")
        if action["error"]:
            assert lines[number + 2].startswith("  error: ")
            assert action["error"].startswith(lines[number + 2][len("  error: ") :])
    details = invoke("show", lines[rows[1]].split()[0], "--queue", failed_copy)
    assert _row(details.stdout, "id") == actions[0]["id"]
    assert fitted_json.stdout == json_lines_text(actions)
    assert untrimmed.stdout == whole.stdout


def json_lines_text(objects: list[dict]) -> str:
    """Return ``objects`` as ``--json`` prints them: one compact object a line."""
    return "".join(json.dumps(item, separators=(",", ":")) + "\n" for item in objects)


def test_actions_fitted_on_one_line(
    tmp_path: Path, queue: str, memory: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths that fit their column stay on the row, with a PATH title."""
    for arguments in (("mkdir", "memory://m/x"), ("delete", "memory://m/old")):
        added = invoke("add", *arguments, "--queue", queue)
        assert added.exit_code == ExitCode.OK, added.output
    monkeypatch.setenv("COLUMNS", "80")

    lines = invoke("actions", "--queue", queue).stdout.splitlines()

    assert len(lines) == 3
    assert lines[0].split() == ["ID", "STATUS", "KIND", "ATTEMPTS", "BYTES", "PATH"]
    assert lines[1].endswith("  /m/x (destination)")
    assert lines[2].endswith("  /m/old (destination)")
    assert [len(line.split()[0]) for line in lines[1:]] == [8, 8]


def test_actions_piped_print_whole(failed_copy: str) -> None:
    """Without a terminal or COLUMNS each action is one line, its id whole."""
    actions = json_lines(invoke("actions", "--queue", failed_copy, "--json").stdout)

    lines = invoke("actions", "--queue", failed_copy).stdout.splitlines()

    assert len(lines) == 1 + len(actions)
    assert [line.split()[0] for line in lines[1:]] == [
        action["id"] for action in actions
    ]
    for line, action in zip(lines[1:], actions, strict=True):
        if action["source"] and action["destination"]:
            assert f"  {action['source']} -> {action['destination']}" in line
        else:
            assert f"  {action['destination']} (destination)" in line


@pytest.mark.parametrize(
    ("ids", "length"),
    [
        ([], 8),
        (["0123456789abcdef"], 8),
        (["0123456789abcdef", "fedcba9876543210"], 8),
        (["0123456789abcdef", "0123456789abffff", "0000000000000000"], 13),
        (["abcdefgh00000000", "abcdefgh11111111"], 9),
    ],
)
def test_unique_prefix_length(ids: list[str], length: int) -> None:
    assert unique_prefix_length(ids) == length


@pytest.mark.parametrize(
    ("lengths", "total", "widths"),
    [
        ([10, 90], 66, [10, 56]),
        ([40, 40], 66, [33, 33]),
        ([40, 28], 66, [38, 28]),
        ([5, 5], 66, [5, 5]),
        ([50, 50], 7, [4, 3]),
        ([10, 10], -5, [0, 0]),
    ],
)
def test_share_width(lengths: list[int], total: int, widths: list[int]) -> None:
    assert share_width(lengths, total) == widths


def test_actions_of_one_tree(sample: Path, tmp_path: Path, queue: str) -> None:
    tree = invoke(
        "add", "tree", str(sample / "docs"), str(tmp_path / "d"), "--queue", queue
    )
    invoke("add", "mkdir", str(tmp_path / "other"), "--queue", queue)

    result = invoke(
        "actions", "--tree", tree.stdout.strip(), "--queue", queue, "--json"
    )
    by_prefix = invoke(
        "actions", "--tree", tree.stdout.strip()[:8], "--queue", queue, "--json"
    )

    rows = json_lines(result.stdout)
    assert {row["id"] for row in rows if row["parent"] is None} == {tree.stdout.strip()}
    assert not any(row["destination"] == str(tmp_path / "other") for row in rows)
    assert len(rows) > 1
    assert json_lines(by_prefix.stdout) == rows


def test_show_failed_file_history(failed_copy: str) -> None:
    rows = json_lines(
        invoke(
            "actions",
            "--status",
            "failed",
            "--kind",
            "copy_file",
            "--queue",
            failed_copy,
            "--json",
        ).stdout
    )
    action_id = rows[0]["id"]

    plain = invoke("show", action_id[:6], "--queue", failed_copy)
    details = json_lines(
        invoke("show", action_id, "--queue", failed_copy, "--json").stdout
    )[0]

    assert plain.exit_code == ExitCode.OK, plain.output
    assert _row(plain.stdout, "id") == action_id
    assert _row(plain.stdout, "status") == "failed"
    assert "FileNotFoundError" in _row(plain.stdout, "last error")
    assert "tree" in plain.stdout
    assert "started attempt 1" in plain.stdout
    assert "attempt 1 failed (failed for good)" in plain.stdout
    assert details["status"] == "failed"
    assert details["tree"]["kind"] == "copy_tree"
    assert details["history_complete"] is True
    texts = [step["text"] for step in details["history"]]
    assert texts[0] == "added (copy_file)"
    assert texts[-1].startswith("attempt 1 failed")
    # A tree's child is journaled without the time it was added.
    assert details["added_ns"] is None
    assert details["history"][0]["time_ns"] is None
    assert all(step["time_ns"] for step in details["history"][1:])


def test_show_skip_names_method(sample: Path, tmp_path: Path, queue: str) -> None:
    target = tmp_path / "a.txt"
    target.write_bytes(SAMPLE["a.txt"])
    # A digest is cached only for a file whose mtime is safely in the past.
    an_hour_ago = time.time() - 3600
    for path in (sample / "a.txt", target):
        os.utime(path, (an_hour_ago, an_hour_ago))
    added = invoke("add", "copy", str(sample / "a.txt"), str(target), "--queue", queue)
    invoke("run", "--queue", queue)

    result = invoke("show", added.stdout.strip(), "--queue", queue)

    assert _row(result.stdout, "outcome") == "skipped, decided by xxh128"
    assert "completed: skipped (by xxh128)" in result.stdout
    assert _row(result.stdout, "source digest").startswith("xxh128:")


def test_show_tree_and_listing(sample: Path, tmp_path: Path, queue: str) -> None:
    tree = invoke("add", "tree", str(sample), str(tmp_path / "t"), "--queue", queue)
    listing = invoke("add", "list", str(sample / "docs"), "--queue", queue)
    invoke("run", "--queue", queue)

    shown_tree = invoke("show", tree.stdout.strip(), "--queue", queue)
    shown_list = invoke("show", listing.stdout.strip(), "--queue", queue)

    assert re.match(r"\d+ completed$", _row(shown_tree.stdout, "by status"))
    assert "listed:" in shown_tree.stdout
    assert _row(shown_list.stdout, "entries").startswith("2 ")
    assert "b.txt" in shown_list.stdout


def test_show_unknown_or_ambiguous_id(sample: Path, tmp_path: Path, queue: str) -> None:
    invoke("add", "tree", str(sample), str(tmp_path / "t"), "--queue", queue)

    unknown = invoke("show", "zzzz", "--queue", queue)
    ambiguous = invoke("show", "", "--queue", queue)

    assert unknown.exit_code == ExitCode.USAGE
    assert "'zzzz': no action with this id" in unknown.stderr
    assert ambiguous.exit_code == ExitCode.USAGE
    assert "give more of the id" in ambiguous.stderr
