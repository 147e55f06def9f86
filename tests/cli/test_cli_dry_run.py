"""``--dry-run``: the failures it predicts and what it prints about them.

A dry run of ``copy`` or ``sync`` plans in a temporary queue that is
deleted before the command ends, so nothing it prints may name that queue.
The dry runs that need an unreadable directory are in
test_cli_unprivileged.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from cli_helpers import invoke, json_lines

from journalq.cli.exits import ExitCode

TEMPORARY_QUEUE = "journalq-dry-run-"


def _with_dangling_link(sample: Path, tmp_path: Path) -> Path:
    """Add to the sample tree a symbolic link whose target does not exist."""
    os.symlink(tmp_path / "nowhere.txt", sample / "dangling.txt")
    return sample / "dangling.txt"


def test_dry_run_lists_failure_inline(sample: Path, tmp_path: Path) -> None:
    link = _with_dangling_link(sample, tmp_path)

    result = invoke("sync", str(sample), str(tmp_path / "out"), "-n")

    assert result.exit_code == ExitCode.FAILED, result.output
    lines = result.stderr.splitlines()
    heading = lines.index("1 action would fail, and so would the tree that holds it:")
    reason = lines[heading + 1]
    assert reason.startswith("  FileNotFoundError: ")
    assert f"symbolic link {link} points to" in reason
    assert TEMPORARY_QUEUE not in result.stderr
    assert "journalq actions" not in result.stderr
    assert "journalq retry" not in result.stderr


def test_dry_run_errors_match_real_run(sample: Path, tmp_path: Path) -> None:
    _with_dangling_link(sample, tmp_path)
    out = str(tmp_path / "out")

    dry = invoke("copy", f"{sample}/", out, "-n")
    real = invoke("copy", f"{sample}/", out)

    def errors(stderr: str) -> list[str]:
        # The advice after the error differs: a dry run's queue is gone
        # when it ends, so it names no command to drop the action.
        lines = [line for line in stderr.splitlines() if line.startswith("  ")]
        return [line.split("; restore")[0] for line in lines]

    assert dry.exit_code == real.exit_code == ExitCode.FAILED
    assert errors(dry.stderr) == errors(real.stderr)
    assert len(errors(real.stderr)) == 1


def test_dry_run_json_lists_failures(sample: Path, tmp_path: Path) -> None:
    link = _with_dangling_link(sample, tmp_path)

    result = invoke("copy", f"{sample}/", str(tmp_path / "out"), "-n", "--json")

    summary = json_lines(result.stdout)[-1]
    assert summary["failed"] == 1
    (failure,) = summary["failures"]
    assert failure["source"] == str(link)
    assert failure["status"] == "failed"
    assert failure["error"].startswith("FileNotFoundError: ")


def test_dry_run_verbose_hides_temporary_queue(sample: Path, tmp_path: Path) -> None:
    verbose = invoke("sync", str(sample), str(tmp_path / "out"), "-n", "-v")
    debug = invoke("sync", str(sample), str(tmp_path / "out"), "-n", "-vv")

    assert verbose.exit_code == ExitCode.OK, verbose.output
    assert TEMPORARY_QUEUE not in verbose.stderr
    assert "INFO journalq.executor: dry run ended: would copy 5," in verbose.stderr
    about_queue = [
        line for line in debug.stderr.splitlines() if TEMPORARY_QUEUE in line
    ]
    assert any("locked queue" in line for line in about_queue)
    assert all(line.startswith("DEBUG ") for line in about_queue)


def test_dry_run_of_queue_names_no_hint(sample: Path, tmp_path: Path) -> None:
    """``run -n`` on a real queue journals nothing for ``actions`` to list."""
    _with_dangling_link(sample, tmp_path)
    queue = str(tmp_path / "q")
    added = invoke("add", "copy", f"{sample}/", str(tmp_path / "out"), "--queue", queue)

    result = invoke("run", "-n", "--queue", queue)
    listed = invoke("actions", "--status", "failed", "--queue", queue, "--json")

    assert added.exit_code == ExitCode.OK, added.output
    assert result.exit_code == ExitCode.FAILED, result.output
    assert "1 action would fail, and so would the tree that holds it:" in result.stderr
    assert "journalq actions" not in result.stderr
    assert listed.stdout == ""


def test_dry_run_counts_listed_skips(sample: Path, tmp_path: Path) -> None:
    """Files that the listing finds identical count as skipped, as in a real run."""
    out = str(tmp_path / "out")
    assert invoke("sync", f"{sample}/", out).exit_code == ExitCode.OK

    dry = json_lines(
        invoke("sync", f"{sample}/", out, "--compare", "size", "-n", "--json").stdout
    )
    real = json_lines(
        invoke("sync", f"{sample}/", out, "--compare", "size", "--json").stdout
    )

    files = sum(1 for path in sample.rglob("*") if path.is_file())
    assert dry[-1]["skipped"] == files
    assert dry[-1]["identical_when_listed"] == files
    assert dry[-1]["copied"] == 0
    assert real[-1]["skipped"] == files
