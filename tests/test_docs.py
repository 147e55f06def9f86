"""The documentation agrees with the code: generated pages, schemas and
links. tests/test_examples.py runs the demo and the examples."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import msgspec
import pytest

from journalq import records
from journalq.cli.reference import reference
from journalq.events import Event, EventType, RunSummary

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: A Markdown link target: ``[text](target)``.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_cli_reference_is_current() -> None:
    """docs/cli.md is what `python -m journalq.cli.reference` writes."""
    written = (DOCS / "cli.md").read_text(encoding="utf-8")

    assert written == reference(), (
        "docs/cli.md is out of date; run "
        "`python -m journalq.cli.reference > docs/cli.md`"
    )


def test_cli_reference_names_alias_once() -> None:
    """`run` and `resume` are one command, which the help of `run` states."""
    section = reference().partition("## `journalq run`")[2].partition("\n## ")[0]

    assert section.count("`journalq resume`") == 1
    assert "\n\n\n" not in section


def _record_types() -> list[type[msgspec.Struct]]:
    return list(typing.get_args(records.Record))


@pytest.mark.parametrize("record", _record_types(), ids=lambda cls: cls.__name__)
def test_journal_format_lists_record(record: type[msgspec.Struct]) -> None:
    text = (DOCS / "journal-format.md").read_text(encoding="utf-8")
    tag = record.__struct_config__.tag
    row = re.search(rf"^\| {tag} \| `{record.__name__}` \| (.*) \|$", text, re.M)

    assert row is not None, f"no row for tag {tag} ({record.__name__})"
    documented = re.findall(r"`(\w+)`", row.group(1))
    assert documented == list(record.__struct_fields__)


def test_json_reference_names_event_fields() -> None:
    text = (DOCS / "json.md").read_text(encoding="utf-8")
    event = Event(EventType.STARTED, "id", "copy_file")

    for field in event.to_dict():
        assert f"| `{field}` |" in text, field
    for field in RunSummary().to_dict():
        assert f"| `{field}` |" in text, field
    for kind in EventType:
        assert f"`{kind}`" in text, kind


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda path: path.name)
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")

    for target in LINK.findall(text):
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        path = (page.parent / target.partition("#")[0]).resolve()
        assert path.exists(), f"{page.name} links to {target}, which is missing"
