"""``journalq copy``, ``sync`` and ``run`` through click's CliRunner."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pytest
from cli_helpers import SAMPLE, invoke, json_lines, read_tree, write_tree

from journalq.cli.exits import ExitCode


def test_copy_contents_with_trailing_slash(sample: Path, tmp_path: Path) -> None:
    result = invoke("copy", f"{sample}/", str(tmp_path / "backup"))

    assert result.exit_code == ExitCode.OK, result.output
    assert read_tree(tmp_path / "backup") == SAMPLE
    assert f"copied {len(SAMPLE)}" in result.stderr


def test_copy_directory_itself_without_slash(sample: Path, tmp_path: Path) -> None:
    result = invoke("copy", str(sample), str(tmp_path / "backup"))

    assert result.exit_code == ExitCode.OK, result.output
    assert read_tree(tmp_path / "backup" / "data") == SAMPLE


def test_copy_file_into_existing_directory(sample: Path, tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()

    result = invoke("copy", str(sample / "a.txt"), str(tmp_path / "inbox"))

    assert result.exit_code == ExitCode.OK, result.output
    assert (tmp_path / "inbox" / "a.txt").read_bytes() == SAMPLE["a.txt"]


def test_copy_file_as_new_name(sample: Path, tmp_path: Path) -> None:
    result = invoke("copy", str(sample / "a.txt"), str(tmp_path / "renamed.txt"))

    assert result.exit_code == ExitCode.OK, result.output
    assert (tmp_path / "renamed.txt").read_bytes() == SAMPLE["a.txt"]


def test_copy_on_memory_filesystem(memory: fsspec.AbstractFileSystem) -> None:
    for relpath, content in SAMPLE.items():
        memory.pipe(f"/source/{relpath}", content)

    result = invoke("copy", "memory://source/", "memory://target")

    assert result.exit_code == ExitCode.OK, result.output
    for relpath, content in SAMPLE.items():
        assert memory.cat(f"/target/{relpath}") == content


def test_copy_from_local_to_memory(
    sample: Path, memory: fsspec.AbstractFileSystem
) -> None:
    result = invoke("copy", f"{sample}/", "memory://target")

    assert result.exit_code == ExitCode.OK, result.output
    assert memory.cat("/target/docs/deep/c.txt") == SAMPLE["docs/deep/c.txt"]


def test_sync_makes_destination_identical(sample: Path, tmp_path: Path) -> None:
    result = invoke("sync", str(sample), str(tmp_path / "mirror"))

    assert result.exit_code == ExitCode.OK, result.output
    assert read_tree(tmp_path / "mirror") == SAMPLE


def test_sync_again_copies_nothing(sample: Path, tmp_path: Path) -> None:
    invoke("sync", str(sample), str(tmp_path / "mirror"))

    result = invoke("sync", str(sample), str(tmp_path / "mirror"), "--json")

    assert result.exit_code == ExitCode.OK, result.output
    summary = json_lines(result.stdout)[-1]
    assert summary["event"] == "summary"
    assert summary["copied"] == 0
    assert summary["bytes"] == 0
    assert summary["skipped"] == len(SAMPLE)


def test_sync_copies_changed_file(sample: Path, tmp_path: Path) -> None:
    invoke("sync", str(sample), str(tmp_path / "mirror"))
    (sample / "docs" / "b.txt").write_bytes(b"changed")

    result = invoke("sync", str(sample), str(tmp_path / "mirror"), "--json")

    summary = json_lines(result.stdout)[-1]
    assert summary["copied"] == 1
    assert (tmp_path / "mirror" / "docs" / "b.txt").read_bytes() == b"changed"


def test_sync_on_memory_filesystem(memory: fsspec.AbstractFileSystem) -> None:
    memory.pipe("/src/one.txt", b"1")
    memory.pipe("/src/sub/two.txt", b"22")

    result = invoke("sync", "memory://src", "memory://dst")

    assert result.exit_code == ExitCode.OK, result.output
    assert memory.cat("/dst/one.txt") == b"1"
    assert memory.cat("/dst/sub/two.txt") == b"22"


def test_sync_delete_removes_extraneous(sample: Path, tmp_path: Path) -> None:
    mirror = write_tree(tmp_path / "mirror", {"old.txt": b"x", "gone/y.txt": b"y"})

    result = invoke("sync", str(sample), str(mirror), "--delete")

    assert result.exit_code == ExitCode.OK, result.output
    assert read_tree(mirror) == SAMPLE
    assert not (mirror / "gone").exists()


def test_sync_max_delete_rejects(sample: Path, tmp_path: Path) -> None:
    mirror = write_tree(tmp_path / "mirror", {"old1": b"", "old2": b""})

    result = invoke("sync", str(sample), str(mirror), "--delete", "--max-delete", "1")

    assert result.exit_code == ExitCode.USAGE
    assert "more than the maximum of 1" in result.stderr
    assert (mirror / "old1").exists()


def test_sync_delete_from_empty_source_needs_force(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    mirror = write_tree(tmp_path / "mirror", {"keep.txt": b"k"})
    arguments = ("sync", str(tmp_path / "empty"), str(mirror), "--delete")

    refused = invoke(*arguments)
    forced = invoke(*arguments, "--force")

    assert refused.exit_code == ExitCode.USAGE
    assert "--force" in refused.stderr
    assert forced.exit_code == ExitCode.OK, forced.output
    assert not (mirror / "keep.txt").exists()


def test_json_events_parse(sample: Path, tmp_path: Path) -> None:
    result = invoke("copy", f"{sample}/", str(tmp_path / "backup"), "--json")

    events = json_lines(result.stdout)
    assert events[-1]["event"] == "summary"
    assert events[-1]["copied"] == len(SAMPLE)
    assert events[-1]["failures"] == []
    completed = [event for event in events if event["event"] == "completed"]
    destinations = {event["destination"] for event in completed}
    assert str(tmp_path / "backup" / "docs" / "deep" / "c.txt") in destinations
    assert {"started", "completed"} <= {event["event"] for event in events}


def test_default_queue_name_is_stable(
    sample: Path, tmp_path: Path, queue_home: Path
) -> None:
    invoke("sync", str(sample), str(tmp_path / "mirror"))
    first = sorted(os.listdir(queue_home / "queues"))
    invoke("sync", str(sample), str(tmp_path / "mirror"))
    invoke("sync", f"{sample}/", str(tmp_path / "mirror"))
    second = sorted(os.listdir(queue_home / "queues"))

    assert len(first) == 1
    assert first[0].startswith("sync-")
    assert second == first


def test_explicit_queue_directory(sample: Path, tmp_path: Path) -> None:
    queue = tmp_path / "myqueue"

    result = invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", str(queue))

    assert result.exit_code == ExitCode.OK, result.output
    assert (queue / "FORMAT").exists()


def test_options_before_command_name(sample: Path, tmp_path: Path) -> None:
    queue = tmp_path / "q"

    result = invoke(
        "--queue", str(queue), "-v", "copy", f"{sample}/", str(tmp_path / "o")
    )

    assert result.exit_code == ExitCode.OK, result.output
    assert (queue / "FORMAT").exists()
    assert "copied" in result.stdout


def test_verbose_lists_each_file(sample: Path, tmp_path: Path) -> None:
    result = invoke("copy", f"{sample}/", str(tmp_path / "out"), "-v")

    assert result.stdout.count("copied ") == len(SAMPLE)
    assert "INFO" in result.stderr


def test_quiet_prints_nothing_on_success(sample: Path, tmp_path: Path) -> None:
    result = invoke("copy", f"{sample}/", str(tmp_path / "out"), "-q")

    assert result.exit_code == ExitCode.OK
    assert result.output == ""


def test_dry_run_writes_nothing(sample: Path, tmp_path: Path) -> None:
    result = invoke("copy", f"{sample}/", str(tmp_path / "out"), "--dry-run", "--json")

    assert result.exit_code == ExitCode.OK, result.output
    assert not (tmp_path / "out").exists() or read_tree(tmp_path / "out") == {}
    assert json_lines(result.stdout)[-1]["copied"] == len(SAMPLE)
    assert "would copy" in result.stderr


def test_dry_run_leaves_queue_untouched(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "extra.txt").write_bytes(b"keep me")
    queue = str(tmp_path / "q")

    dry = invoke(
        "sync", str(sample), str(out), "--delete", "--dry-run", "--queue", queue
    )
    real = invoke("sync", str(sample), str(out), "--queue", queue)

    assert dry.exit_code == ExitCode.OK, dry.output
    assert real.exit_code == ExitCode.OK, real.output
    assert (out / "extra.txt").read_bytes() == b"keep me"
    assert read_tree(out) == {**SAMPLE, "extra.txt": b"keep me"}


@pytest.fixture
def stale_mirror(sample: Path, tmp_path: Path) -> Path:
    """A mirror of the sample tree that lacks two files and has two extra."""
    return write_tree(
        tmp_path / "mirror",
        {
            **{name: SAMPLE[name] for name in ("a.txt", "empty.bin", "docs/b.txt")},
            "old.txt": b"stale",
            "docs/old.bin": b"stale too",
        },
    )


def test_dry_run_lists_each_file(sample: Path, stale_mirror: Path) -> None:
    before = read_tree(stale_mirror)

    result = invoke("sync", str(sample), str(stale_mirror), "--delete", "-n")

    assert result.exit_code == ExitCode.OK, result.output
    assert sorted(result.stdout.splitlines()) == [
        f"would copy {sample}/docs/deep/c.txt -> {stale_mirror}/docs/deep/c.txt (8 B)",
        f"would copy {sample}/docs/deep/er/d.bin -> {stale_mirror}/docs/deep/er/d.bin "
        "(10.0 KiB)",
        f"would delete {stale_mirror}/docs/old.bin",
        f"would delete {stale_mirror}/old.txt",
    ]
    assert "would copy 2, skipped 3," in result.stderr
    assert read_tree(stale_mirror) == before


def test_dry_run_summary_omits_left(sample: Path, tmp_path: Path) -> None:
    """A dry run runs no action, so the count of those left means nothing."""
    out = tmp_path / "out"
    queue = str(tmp_path / "q")
    synced = invoke("sync", str(sample), str(out), "--queue", queue)
    added = invoke(
        "add", "copy", str(sample / "a.txt"), str(tmp_path / "a"), "--queue", queue
    )

    nothing = invoke("sync", str(sample), str(out), "-n", "--queue", queue)
    waiting = invoke("run", "-n", "--queue", queue)

    assert synced.exit_code == ExitCode.OK, synced.output
    assert added.exit_code == ExitCode.OK, added.output
    assert nothing.exit_code == ExitCode.OK, nothing.output
    assert nothing.stderr.startswith("would copy 0, skipped 5,")
    assert "left" not in nothing.stderr
    assert waiting.stderr.startswith("would copy 1, skipped 0,")
    assert "left" not in waiting.stderr


def test_dry_run_quiet_lists_nothing(sample: Path, stale_mirror: Path) -> None:
    result = invoke("sync", str(sample), str(stale_mirror), "--delete", "-n", "-q")

    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout == ""
    assert result.stderr == ""


def test_dry_run_json_stays_json(sample: Path, stale_mirror: Path) -> None:
    result = invoke("sync", str(sample), str(stale_mirror), "--delete", "-n", "--json")

    assert result.exit_code == ExitCode.OK, result.output
    events = json_lines(result.stdout)
    assert events[0]["event"] == "run"
    assert events[0]["dry_run"] is True
    copies = {
        event["destination"]: event["bytes"]
        for event in events
        if event["event"] == "completed" and event["kind"] == "copy_file"
    }
    assert copies == {
        f"{stale_mirror}/docs/deep/c.txt": 8,
        f"{stale_mirror}/docs/deep/er/d.bin": 10240,
    }
    deletes = [
        event["destination"]
        for event in events
        if event["event"] == "completed" and event["kind"] == "delete"
    ]
    assert sorted(deletes) == [
        f"{stale_mirror}/docs/old.bin",
        f"{stale_mirror}/old.txt",
    ]
    summary = events[-1]
    assert summary["event"] == "summary"
    assert summary["copied"] == 2
    assert summary["bytes"] == 8 + 10240
    assert "would copy 2," in result.stderr


def test_sync_summary_counts_deletions(
    sample: Path, stale_mirror: Path, tmp_path: Path
) -> None:
    queue = str(tmp_path / "q")

    text = invoke("sync", str(sample), str(stale_mirror), "--delete", "--queue", queue)
    (stale_mirror / "old.txt").write_bytes(b"stale again")
    again = invoke(
        "sync", str(sample), str(stale_mirror), "--delete", "--queue", queue, "--json"
    )
    status = json_lines(invoke("status", "--queue", queue, "--json").stdout)[0]

    assert text.exit_code == ExitCode.OK, text.output
    # Two files to delete, and the mkdirs of docs/deep and docs/deep/er.
    assert "copied 2, skipped 3, failed 0, retried 0, deleted 2, " in text.stderr
    assert "2 other actions (mkdir, list)" in text.stderr
    summary = json_lines(again.stdout)[-1]
    assert summary["deleted"] == 1
    assert summary["done"] == 1
    assert status["last_run"]["deleted"] == 1
    assert read_tree(stale_mirror) == SAMPLE


def test_failed_action_exits_one(sample: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "nowhere", sample / "dangling.txt")
    queue = tmp_path / "q"

    result = invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", str(queue))

    assert result.exit_code == ExitCode.FAILED, result.output
    assert "dangling.txt" in result.stderr
    assert "journalq actions --status failed" in result.stderr
    assert read_tree(tmp_path / "out") == SAMPLE


def test_run_resumes_added_actions(sample: Path, tmp_path: Path) -> None:
    queue = str(tmp_path / "q")
    invoke("add", "copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)

    result = invoke("run", "--queue", queue, "--json")
    again = invoke("resume", "--queue", queue, "--json")

    assert result.exit_code == ExitCode.OK, result.output
    assert read_tree(tmp_path / "out") == SAMPLE
    assert json_lines(again.stdout)[-1]["copied"] == 0


def test_run_parallelism_and_compare_options(sample: Path, tmp_path: Path) -> None:
    queue = str(tmp_path / "q")
    invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)
    invoke("add", "copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)

    result = invoke("run", "--queue", queue, "-j", "1", "--compare", "always", "--json")

    summary = json_lines(result.stdout)[-1]
    assert result.exit_code == ExitCode.OK, result.output
    assert summary["copied"] == len(SAMPLE)


def test_missing_source_root(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    queue = str(tmp_path / "q")

    result = invoke("sync", str(missing), str(tmp_path / "out"), "--queue", queue)

    assert result.exit_code == ExitCode.USAGE
    assert str(missing) in result.stderr
    assert "Traceback" not in result.output
    assert not os.path.lexists(queue)


def test_missing_copy_source(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.txt"

    result = invoke("copy", str(missing), str(tmp_path / "out.txt"))

    assert result.exit_code == ExitCode.USAGE
    assert f"{str(missing)!r}: source not found" in result.stderr


def test_overlapping_source_and_destination(sample: Path, tmp_path: Path) -> None:
    queue = str(tmp_path / "q")
    inside = sample / "docs" / "copy"

    result = invoke("sync", str(sample), str(inside), "--queue", queue)

    assert result.exit_code == ExitCode.USAGE
    assert str(inside) in result.stderr
    assert "overlaps" in result.stderr
    assert not os.path.lexists(queue)


def test_unknown_compare_is_usage_error(sample: Path, tmp_path: Path) -> None:
    result = invoke("copy", f"{sample}/", str(tmp_path / "o"), "--compare", "md5sum")

    assert result.exit_code == ExitCode.USAGE
    assert "'md5sum'" in result.stderr
    assert "checksum" in result.stderr


def test_other_filesystem_for_existing_queue(
    sample: Path, tmp_path: Path, memory: fsspec.AbstractFileSystem
) -> None:
    queue = str(tmp_path / "q")
    invoke("copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)

    result = invoke("copy", f"{sample}/", "memory://out", "--queue", queue)

    assert result.exit_code == ExitCode.USAGE
    assert "memory://" in result.stderr
    assert "--queue" in result.stderr


def test_run_without_queue_is_usage_error(tmp_path: Path) -> None:
    result = invoke("run", "--queue", str(tmp_path / "none"))

    assert result.exit_code == ExitCode.USAGE
    assert "not found" in result.stderr
    assert str(tmp_path / "none") in result.stderr


def test_usage_error_exits_two() -> None:
    result = invoke("copy", "only-one-argument")

    assert result.exit_code == ExitCode.USAGE
    assert "Missing argument" in result.stderr


def test_queue_inside_tree_leaves_nothing(sample: Path, tmp_path: Path) -> None:
    inside = sample / "q"

    result = invoke("sync", str(sample), str(tmp_path / "out"), "--queue", str(inside))

    assert result.exit_code == ExitCode.USAGE, result.output
    assert "contains the queue directory" in result.stderr
    assert not inside.exists()


def test_copy_to_named_remote(
    sample: Path,
    tmp_path: Path,
    memory: fsspec.AbstractFileSystem,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remotes = tmp_path / "remotes.toml"
    remotes.write_text('[scratch]\nprotocol = "memory"\nroot = "store"\n')
    monkeypatch.setenv("JOURNALQ_CONFIG", str(remotes))

    sent = invoke("copy", f"{sample}/", "scratch:backup/")
    back = invoke("copy", "scratch:/backup/a.txt", str(tmp_path / "back.txt"))
    unknown = invoke("copy", f"{sample}/", "nowhere:backup")

    assert sent.exit_code == ExitCode.OK, sent.output
    assert memory.cat("/store/backup/docs/deep/c.txt") == SAMPLE["docs/deep/c.txt"]
    assert back.exit_code == ExitCode.OK, back.output
    assert (tmp_path / "back.txt").read_bytes() == SAMPLE["a.txt"]
    assert unknown.exit_code == ExitCode.USAGE
    assert "no remote named 'nowhere'" in unknown.stderr


def test_part_threshold_option_copies_in_parts(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(data)
    queue = tmp_path / "q"

    result = invoke(
        "copy",
        f"{tmp_path / 'src'}/",
        f"{tmp_path / 'dst'}/",
        "--queue",
        str(queue),
        "--part-threshold",
        "1M",
    )

    assert result.exit_code == ExitCode.OK, result.output
    assert (tmp_path / "dst" / "big.bin").read_bytes() == data
    shown = invoke("show", _copy_id(queue), "--queue", str(queue))
    assert "planned 1 parts of 16.0 MiB" in shown.output
    assert "part 1 written: 3.0 MiB at offset 0" in shown.output


def _copy_id(queue: Path) -> str:
    listed = invoke("actions", "--queue", str(queue), "--kind", "copy_file", "--json")
    return json_lines(listed.stdout)[0]["id"]


@pytest.mark.parametrize("value", ["abc", "0", "12Q"])
def test_part_threshold_rejects_bad_size(tmp_path: Path, value: str) -> None:
    result = invoke(
        "copy", str(tmp_path), str(tmp_path / "x"), "--part-threshold", value
    )

    assert result.exit_code == ExitCode.USAGE
    assert repr(value) in result.output
