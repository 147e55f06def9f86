"""What ``journalq`` imports before it parses: only click and the definitions.

``--help``, ``--version``, ``COMMAND --help`` and shell completion print
from the command definitions alone, so they must not import the queue
engine, fsspec or msgspec, which a command imports when it runs. Each case
runs in a fresh interpreter and lists the modules it imported. How long
that takes is measured outside the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from journalq.cli.commands import ACTION_KINDS, ACTION_STATUSES
from journalq.records import Kind
from journalq.replay import Status

#: Modules that only running a command may import.
HEAVY_MODULES = (
    "fsspec",
    "msgspec",
    "filelock",
    "rich",
    "journalq.backends",
    "journalq.queue",
    "journalq.records",
    "journalq.replay",
    "journalq.store",
    "journalq.executor",
    "journalq.cli.running",
    "journalq.cli.reports",
)

#: Runs the console script's ``main`` with the arguments after ``-c CODE``,
#: then prints every imported module's name to stderr.
_LIST_IMPORTS = (
    "import sys\n"
    "from journalq.cli import main\n"
    "sys.argv[0] = 'journalq'\n"
    "try:\n"
    "    main()\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n"
)

_COMPLETION = {
    "_JOURNALQ_COMPLETE": "bash_complete",
    "COMP_WORDS": "journalq co",
    "COMP_CWORD": "1",
}


def _imported(arguments: list[str], environment: dict[str, str]) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", _LIST_IMPORTS, *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, **environment},
        timeout=60,
        check=True,
    )
    return set(result.stderr.split())


@pytest.mark.parametrize(
    ("arguments", "environment"),
    [
        (["--version"], {}),
        (["--help"], {}),
        (["copy", "--help"], {}),
        (["actions", "--help"], {}),
        ([], _COMPLETION),
    ],
    ids=["version", "help", "copy-help", "actions-help", "completion"],
)
def test_startup_imports_no_engine(
    arguments: list[str], environment: dict[str, str]
) -> None:
    imported = _imported(arguments, environment)

    assert "journalq.cli.commands" in imported
    for module in HEAVY_MODULES:
        assert module not in imported


def test_copy_imports_its_work(tmp_path) -> None:
    """A command that runs imports the engine, the modules checked above."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("a")
    arguments = ["copy", f"{source}/", str(tmp_path / "dst"), "--queue", "q"]

    imported = _imported(arguments, {"JOURNALQ_HOME": str(tmp_path / "home")})

    assert "journalq.cli.running" in imported
    assert "journalq.queue" in imported
    assert "fsspec" in imported
    assert (tmp_path / "dst" / "a.txt").read_text() == "a"


def test_choice_lists_match_enums() -> None:
    assert list(ACTION_KINDS) == [str(kind) for kind in Kind]
    assert list(ACTION_STATUSES) == [str(status) for status in Status]
