"""Run every benchmark and write the results page.

``python -m benchmarks`` times the transfer scenarios on the full datasets
and writes ``benchmarks/RESULTS.md``. With ``--quick``, or with only some
``--datasets``, the page goes to ``benchmarks/work/RESULTS.md`` instead, so a
smoke run never replaces the published figures, and neither does a run of
fewer than five rounds. The benchmarks of ``MODULE_BENCHES`` run too (the
journal, queue scale, the Dask cluster, resuming inside large files), each
when its module exists and exposes ``main()`` returning a list of rows. A
missing module is skipped with a log line. After the page is rendered,
:mod:`benchmarks.plots` draws its plots into ``plots/`` beside it, unless
matplotlib is missing (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import compileall
import dataclasses
import datetime
import importlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.datasets import FULL, QUICK, DatasetSpec
from benchmarks.harness import Summary, describe_machine, describe_tools, round_ratios
from benchmarks.transfer_bench import (
    RATIOS,
    SCENARIOS,
    STARTUP,
    Ratio,
    Sample,
    Scenario,
    TransferBench,
    TransferResults,
)

logger = logging.getLogger("benchmarks")

PACKAGE_DIR = Path(__file__).resolve().parent
WORK_DIR = PACKAGE_DIR / "work"
PUBLISHED_PAGE = PACKAGE_DIR / "RESULTS.md"
PUBLISHED_ROUNDS = 5
"""Minimum rounds for the published page. With fewer, one noisy round moves
a median of these figures, which vary 2-3x between runs, too far."""
QUICK_ROUNDS = 2
"""Rounds of a ``--quick`` run: enough to exercise the interleaving."""
MODULE_BENCHES = (
    ("Journal", "journal_bench"),
    ("Scale", "scale_bench"),
    ("Planning and running a large tree", "plan_run_bench"),
    ("Cluster", "cluster_bench"),
    ("Resume inside large files", "parts_bench"),
)
"""(page section, module) of each benchmark whose ``main()`` returns rows."""
PLOT_DIR_NAME = "plots"
"""Folder of the page's PNG plots, beside the page."""
COMMAND_VARIABLE = "BENCH_COMMAND"
"""Environment variable naming the command that started this run, such as
``make bench``, for the page. When it is unset, the page names only
``python -m benchmarks`` and its options."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks named on the command line and write the page."""
    options = _parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    specs = tuple(spec for spec in options.sets if spec.key in options.datasets)
    output = options.output or _default_output(options, specs)
    started = datetime.datetime.now(datetime.UTC)
    _compile_journalq()

    transfers = TransferBench(specs, options.rounds, WORK_DIR, options.keep).run()
    sections = [
        (title, name, *_run_module_bench(title, name, options.quick))
        for title, name in MODULE_BENCHES
    ]

    page = render_page(options, started, transfers, sections)
    samples = [dataclasses.asdict(sample) for sample in transfers.samples]
    (WORK_DIR / "samples.json").write_text(json.dumps(samples, indent=1))
    output.parent.mkdir(parents=True, exist_ok=True)
    page += "\n" + "\n".join(_plots_section(output.parent, transfers, sections))
    output.write_text(page)
    logger.info("wrote %s and %s", output, WORK_DIR / "samples.json")
    return 0


def _compile_journalq() -> None:
    """Write journalq's bytecode before any timed run.

    An editable install leaves no ``.pyc`` files, and with
    ``PYTHONDONTWRITEBYTECODE`` set none are ever written, so every timed
    start would compile the whole package again (0.14 s on the 2-core
    development VM), which an installed journalq never pays.
    """
    package = Path(__file__).resolve().parent.parent / "journalq"
    compileall.compile_dir(str(package), quiet=1)


def _parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time journalq side by side with cp, rsync, rclone and fsspec.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="use datasets a tenth of the size or less, for a smoke run",
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        help="interleaved rounds of every scenario (default 5, or 2 with --quick)",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=[spec.key for spec in FULL],
        default=[spec.key for spec in FULL],
        help="datasets to run (default: all)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="results page to write (default: benchmarks/RESULTS.md for a run of "
        "every full dataset in 5 or more rounds, else benchmarks/work/RESULTS.md)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep every destination and log under benchmarks/work/runs/",
    )
    options = parser.parse_args(argv)
    options.sets = QUICK if options.quick else FULL
    if options.rounds is None:
        options.rounds = QUICK_ROUNDS if options.quick else PUBLISHED_ROUNDS
    return options


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid round count {value}: must be >= 1")
    return value


def _default_output(
    options: argparse.Namespace, specs: tuple[DatasetSpec, ...]
) -> Path:
    """Return the published page for a full run, else a page in the work folder."""
    partial = len(specs) < len(FULL) or options.rounds < PUBLISHED_ROUNDS
    if options.quick or partial:
        return WORK_DIR / "RESULTS.md"
    return PUBLISHED_PAGE


def _run_module_bench(
    title: str, name: str, quick: bool
) -> tuple[list[Any], str | None]:
    """Run ``benchmarks.<name>.main()``, returning its rows or the failure."""
    qualified = f"benchmarks.{name}"
    try:
        module = importlib.import_module(qualified)
    except ModuleNotFoundError as exc:
        if exc.name == qualified:
            logger.info("skipping %s: benchmarks/%s.py does not exist", title, name)
            return [], f"benchmarks/{name}.py does not exist yet"
        logger.exception("importing %s failed", qualified)
        return [], f"importing it failed: {exc}"
    except Exception as exc:  # a module in progress may fail in any way
        logger.exception("importing %s failed", qualified)
        return [], f"importing it failed: {type(exc).__name__}: {exc}"

    entry = getattr(module, "main", None)
    if not callable(entry):
        return [], f"benchmarks/{name}.py has no main()"
    keywords = (
        {"quick": quick} if "quick" in inspect.signature(entry).parameters else {}
    )

    # A main() that parses sys.argv must not see this command's options.
    arguments, sys.argv = sys.argv, [sys.argv[0]]
    try:
        rows = entry(**keywords)
    except (Exception, SystemExit) as exc:  # same reason as at the import
        logger.exception("%s.main() failed", qualified)
        return [], f"main() failed: {type(exc).__name__}: {exc}"
    finally:
        sys.argv = arguments
    if rows is None:
        return [], "main() returned None instead of a list of rows"
    return list(rows), None


def render_page(
    options: argparse.Namespace,
    started: datetime.datetime,
    transfers: TransferResults,
    sections: list[tuple[str, str, list[Any], str | None]],
) -> str:
    """Render the results page as Markdown, all but its plots."""
    arguments = " ".join(["python -m benchmarks", *_arguments_as_given(options)])
    command = f"`{arguments}`"
    if made_by := os.environ.get(COMMAND_VARIABLE):
        command = f"`{made_by}`, which ran {command}"
    lines = [
        "# journalq benchmarks",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} UTC with {command}: "
        f"{transfers.rounds} interleaved rounds. How to read these figures: "
        "`benchmarks/README.md`.",
        "",
    ]
    if options.quick:
        lines += ["**Smoke run on the quick datasets: not figures to publish.**", ""]
    lines += _machine_section()
    lines += _commands_section()
    for scenario in SCENARIOS:
        lines += _scenario_section(transfers, scenario)
    lines += _ratio_section(transfers)
    for title, name, rows, failure in sections:
        lines += _rows_section(title, name, rows, failure)
    lines += survival_section()
    if transfers.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in transfers.notes), ""]
    return "\n".join(lines)


def survival_section() -> list[str]:
    """Return the survival figures: the table of ``tests/survival/README.md``.

    Those tests count kills, crash points, power cuts, faults and bad
    inputs; the page repeats their table so the figures sit beside the
    timings.
    """
    readme = PACKAGE_DIR.parent / "tests" / "survival" / "README.md"
    try:
        text = readme.read_text()
    except FileNotFoundError:
        return []
    table: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    if not table:
        return []
    return [
        "## Survival",
        "",
        "What the survival tests in `tests/survival/` do on every `make test`, "
        "and in the soak (`make soak`); details in `tests/survival/README.md`.",
        "",
        *table,
        "",
    ]


def _arguments_as_given(options: argparse.Namespace) -> list[str]:
    arguments = ["--quick"] if options.quick else []
    arguments += ["--rounds", str(options.rounds)]
    if len(options.datasets) < len(FULL):
        arguments += ["--datasets", *options.datasets]
    return arguments


def _machine_section() -> list[str]:
    facts = describe_machine(WORK_DIR) + describe_tools(PACKAGE_DIR.parent)
    return ["## Machine", "", *(f"- {name}: {value}" for name, value in facts), ""]


def _commands_section() -> list[str]:
    lines = [
        "## Commands",
        "",
        "SRC is the dataset (for startup, a folder holding one 4 KiB file), DST "
        "a fresh folder (copy, startup) or a `cp -a` copy of SRC (no-op), QDIR a "
        "fresh queue folder. RUN in a failure reason is the "
        "run's folder under `benchmarks/work/runs/`, kept with `--keep`.",
        "",
        "| scenario | row | command |",
        "|---|---|---|",
    ]
    for scenario in SCENARIOS:
        for contender in scenario.contenders:
            command = _cell(f"`{contender.command()}`")
            lines.append(f"| {scenario.key} | {contender.key} | {command} |")
    return [*lines, ""]


def _scenario_section(results: TransferResults, scenario: Scenario) -> list[str]:
    specs = results.specs
    header = "| row | " + " | ".join(spec.label for spec in specs) + " |"
    rule = "|---|" + "---:|" * len(specs)
    walls = [f"## {scenario.title}", "", "Wall seconds, median (min-max):", ""]
    walls += [header, rule]
    floor = results.rss_floor_kib / 1024
    usage = [
        "",
        "CPU seconds (user + system) and peak RSS, medians. The RSS includes "
        f"what the harness had resident when it started the tool (`true` "
        f"showed {floor:.0f} MiB), because Linux counts it until exec.",
        "",
        header,
        rule,
    ]
    for contender in scenario.contenders:
        wall_cells, usage_cells = [], []
        for spec in specs:
            samples = results.select(scenario.key, spec.key, contender.key)
            wall_cell, usage_cell = _figure_cells(samples, results.rounds)
            wall_cells.append(wall_cell)
            usage_cells.append(usage_cell)
        walls.append(f"| {contender.key} | " + " | ".join(wall_cells) + " |")
        usage.append(f"| {contender.key} | " + " | ".join(usage_cells) + " |")
    return [*walls, *usage, "", *_sample_notes(results, scenario), ""]


def _figure_cells(samples: list[Sample], rounds: int) -> tuple[str, str]:
    measured = [sample.measurement for sample in samples if not sample.failure]
    measurements = [item for item in measured if item is not None]
    failures = [sample.failure for sample in samples if sample.failure]
    if not measurements:
        reason = failures[0] if failures else "not run"
        return _cell(f"not available: {reason}"), "-"

    wall = Summary.of([item.wall for item in measurements])
    cell = f"{wall.median:.3f} ({wall.minimum:.3f}-{wall.maximum:.3f})"
    if wall.count < rounds:
        cell += f", {wall.count} of {rounds} rounds"
    cpu = Summary.of([item.cpu for item in measurements]).median
    rss = Summary.of([item.max_rss_kib / 1024 for item in measurements]).median
    return cell, f"{cpu:.3f} s, {rss:.0f} MiB"


def _sample_notes(results: TransferResults, scenario: Scenario) -> list[str]:
    lines = []
    for sample in results.samples:
        if sample.scenario == scenario.key and sample.note:
            lines.append(
                f"- {sample.contender} ({sample.dataset}), round {sample.round}: "
                f"{sample.note}"
            )
    return lines


def _ratio_section(results: TransferResults) -> list[str]:
    lines = [
        "## Ratios against the targets",
        "",
        "Each ratio divides two wall times of the same round; the median of "
        "those per-round ratios must meet the target.",
        "",
        "| scenario | dataset | ratio | median (min-max) | target | result |",
        "|---|---|---|---:|---|---|",
    ]
    available = {spec.key for spec in results.specs}
    for ratio in RATIOS:
        if ratio.dataset in available:
            lines.append(_ratio_row(results, ratio))
    return [*lines, ""]


def _ratio_row(results: TransferResults, ratio: Ratio) -> str:
    where = (ratio.scenario, ratio.dataset)
    name = f"{ratio.numerator} / {ratio.denominator}"
    numerators = results.walls(*where, ratio.numerator)
    if ratio.less is not None:
        name = f"({ratio.numerator} - {ratio.less} start-up) / {ratio.denominator}"
        starts = results.walls(STARTUP.key, ratio.dataset, ratio.less)
        numerators = {
            index: wall - starts[index]
            for index, wall in numerators.items()
            if index in starts
        }
    values = round_ratios(numerators, results.walls(*where, ratio.denominator))
    prefix = f"| {ratio.scenario} | ({ratio.dataset}) | {name} |"
    if not values:
        reasons = [
            f"{key}: {results.failure(*where, key)}"
            for key in (ratio.numerator, ratio.denominator)
            if results.failure(*where, key)
        ]
        reason = "; ".join(reasons) or "no round with both figures"
        return f"{prefix} {_cell('not available: ' + reason)} | {ratio.target()} | - |"

    summary = Summary.of(values)
    figure = f"{summary.median:.3f} ({summary.minimum:.3f}-{summary.maximum:.3f})"
    if ratio.bound is None:
        result = "informational"
    else:
        result = "pass" if ratio.is_met(summary.median) else "fail"
    return f"{prefix} {figure} | {ratio.target()} | {result} |"


def _rows_section(
    title: str, name: str, rows: list[Any], failure: str | None
) -> list[str]:
    lines = [f"## {title}", ""]
    if failure:
        return [*lines, f"Not available: {failure}.", ""]
    records = [_row_as_dict(row) for row in rows]
    if not records:
        return [*lines, f"Not available: {name}.main() returned no rows.", ""]
    columns = list(records[0])
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for record in records:
        cells = [_cell(str(record.get(column, ""))) for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _row_as_dict(row: Any) -> dict[str, Any]:
    """Convert a mapping, dataclass, Struct or tuple row into a dict."""
    if isinstance(row, dict):
        return row
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    if isinstance(row, msgspec.Struct):
        return msgspec.structs.asdict(row)
    if isinstance(row, Iterable) and not isinstance(row, str):
        return {f"column {index}": value for index, value in enumerate(row, 1)}
    return {"value": row}


def _plots_section(
    page_dir: Path,
    transfers: TransferResults,
    sections: list[tuple[str, str, list[Any], str | None]],
) -> list[str]:
    """Draw the plots into ``page_dir/plots`` and return their page section."""
    lines = ["## Plots", ""]
    try:
        from benchmarks import plots
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib":
            raise
        logger.warning(
            "skipping the plots because matplotlib is not installed: "
            "install it with .venv/bin/pip install -e '.[bench]'"
        )
        reason = "matplotlib is not installed (`pip install -e '.[bench]'`)"
        return [*lines, f"Not available: {reason}.", ""]

    scale_rows = next(
        (rows for _, name, rows, _ in sections if name == "scale_bench"), []
    )
    try:
        written = plots.write_plots(page_dir / PLOT_DIR_NAME, transfers, scale_rows)
    except Exception as exc:  # a broken plot must not lose the measured page
        logger.exception("drawing the plots into %s failed", page_dir)
        return [*lines, f"Not available: {type(exc).__name__}: {exc}.", ""]
    for plot in written:
        link = plot.path.relative_to(page_dir).as_posix()
        lines += [f"![{plot.title}]({link})", ""]
    return lines


def _cell(text: str) -> str:
    """Escape text for one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    sys.exit(main())
