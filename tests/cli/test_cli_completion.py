"""Shell completion: the scripts, and what a real bash completes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import invoke
from click.testing import CliRunner

from journalq.cli import cli
from journalq.cli.exits import ExitCode


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "_journalq_completion()"),
        ("zsh", "#compdef journalq"),
        ("fish", "complete --no-files --command journalq"),
    ],
)
def test_completion_script_per_shell(shell: str, marker: str) -> None:
    result = invoke("completion", shell)

    assert result.exit_code == ExitCode.OK, result.output
    assert marker in result.stdout
    assert "_JOURNALQ_COMPLETE" in result.stdout


def test_completion_unknown_shell() -> None:
    result = invoke("completion", "tcsh")

    assert result.exit_code == ExitCode.USAGE
    assert "'tcsh'" in result.stderr


def _complete(words: str) -> list[str]:
    """Return click's bash completions for the command line ``words``."""
    parts = words.split(" ")
    result = CliRunner().invoke(
        cli,
        [],
        prog_name="journalq",
        env={
            "_JOURNALQ_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
        },
    )
    assert result.exit_code == 0, result.output
    return [line for line in result.stdout.splitlines() if line]


def test_complete_queue_names(tmp_path: Path) -> None:
    for name in ("nightly", "night-photos", "weekly"):
        added = invoke("add", "mkdir", str(tmp_path / name), "--queue", name)
        assert added.exit_code == ExitCode.OK, added.output

    found = _complete("journalq status --queue nig")

    assert sorted(found) == ["plain,night-photos", "plain,nightly"]


def test_complete_action_ids(tmp_path: Path) -> None:
    added = invoke("add", "mkdir", str(tmp_path / "x"), "--queue", "q1")
    action_id = added.stdout.strip()

    found = _complete(f"journalq show --queue q1 {action_id[:3]}")
    for_cancel = _complete(f"journalq cancel --queue q1 {action_id[:3]}")

    assert found == [f"plain,{action_id}"]
    assert for_cancel == [f"plain,{action_id}"]


def test_complete_paths_left_to_shell() -> None:
    assert _complete("journalq copy ./da") == ["file,./da"]
    assert _complete("journalq status --queue ./q") == ["dir,./q"]
    assert _complete("journalq copy memory://x") == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_loads_script_and_completes(queue_home: Path, tmp_path: Path) -> None:
    invoke("add", "mkdir", str(tmp_path / "n"), "--queue", "nightly")
    script = tmp_path / "journalq.bash"
    script.write_text(invoke("completion", "bash").stdout)
    # The script calls `journalq` by name, so a wrapper on PATH stands for
    # the installed console script.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "journalq"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m journalq "$@"\n')
    wrapper.chmod(0o755)
    # bash calls the function with the command, the word being completed
    # and the word before it.
    session = (
        f"source {script}\n"
        "COMP_WORDS=(journalq run --queue nig)\n"
        "COMP_CWORD=3\n"
        "_journalq_completion journalq nig run\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )

    result = subprocess.run(
        ["bash", "--norc", "--noprofile"],
        input=session,
        env={
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "JOURNALQ_HOME": str(queue_home),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["nightly"]
