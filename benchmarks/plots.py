"""Draw the results page's plots as PNG files with matplotlib.

Each ``plot_*`` function draws one figure from figures the benchmarks have
already produced and writes it to ``path``: transfer throughput from the
samples of :mod:`benchmarks.transfer_bench`, and time and peak memory
against queue size from the rows of :mod:`benchmarks.scale_bench`. The
figures are drawn on a :class:`matplotlib.figure.Figure` without pyplot, so
no GUI backend and no global state is involved.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullLocator

from benchmarks.datasets import MIB, DatasetSpec
from benchmarks.harness import Summary
from benchmarks.scale_bench import OPEN_TARGET_MIB, OPEN_TARGET_SECONDS, TARGET_SIZE
from benchmarks.transfer_bench import SCENARIOS, STARTUP, Sample, TransferResults

logger = logging.getLogger(__name__)

DPI = 110
"""Pixels per inch of the PNGs, so the 12-inch scale figures are 1,320
pixels wide, at which their small legend text was legible when viewed."""
PER_FILE_SIZE = MIB
"""Datasets of smaller files are plotted in files/s, because dataset (a),
of 4 KiB files, measures per-file overhead, which bytes per second hide."""
JOURNALQ_COLOR = "tab:blue"
PEER_COLOR = "tab:gray"
TARGET_COLOR = "tab:red"
MARKERS = "osv^DPX"
"""Point markers of the scale lines, one per measure, so lines that overlap
stay apart."""
SCENARIO_TITLES = {scenario.key: scenario.title for scenario in SCENARIOS}


@dataclass(frozen=True)
class Plot:
    """One written figure: its title, for the page, and its PNG file."""

    title: str
    path: Path


def write_plots(
    directory: Path,
    transfers: TransferResults,
    scale_rows: Sequence[Mapping[str, Any]],
) -> list[Plot]:
    """Write every plot the figures allow into ``directory``, return them.

    A plot without figures (no scale rows) is skipped with a log line, and
    its file from an earlier run is deleted so no stale figure stays.
    """
    directory.mkdir(parents=True, exist_ok=True)
    throughput = directory / "throughput.png"
    # A copy of one small file measures start-up, not throughput.
    copies = [sample for sample in transfers.samples if sample.scenario != STARTUP.key]
    plot_throughput(copies, transfers.specs, throughput)
    plots = [Plot("Throughput by dataset and tool", throughput)]

    scale_plots = [
        ("Time by file count", directory / "scale-time.png", plot_scale_time),
        ("Memory by queue size", directory / "scale-memory.png", plot_scale_memory),
    ]
    for title, path, draw in scale_plots:
        if scale_rows:
            draw(scale_rows, path)
            plots.append(Plot(title, path))
        else:
            logger.info("skipping %s: the scale benchmark returned no rows", path)
            path.unlink(missing_ok=True)
    return plots


# Throughput -----------------------------------------------------------------


def plot_throughput(
    samples: Sequence[Sample], specs: Sequence[DatasetSpec], path: Path
) -> Path:
    """Plot each tool's median throughput per scenario and dataset.

    One panel per scenario (row) and dataset (column). A bar is the
    dataset's size divided by the median wall seconds, and its whisker
    spans the slowest and the fastest round.
    """
    scenarios = _unique(sample.scenario for sample in samples)
    figure = Figure(
        figsize=(3.5 + 3.8 * len(specs), 1.4 + 3.4 * len(scenarios)),
        layout="constrained",
    )
    grid = figure.subplots(len(scenarios), len(specs), squeeze=False, sharey="row")
    for row, scenario in enumerate(scenarios):
        contenders = _unique(
            sample.contender for sample in samples if sample.scenario == scenario
        )
        for column, spec in enumerate(specs):
            selected = [
                sample
                for sample in samples
                if (sample.scenario, sample.dataset) == (scenario, spec.key)
            ]
            _throughput_panel(grid[row][column], selected, contenders, spec)
            grid[row][column].set_title(
                f"{SCENARIO_TITLES.get(scenario, scenario)}\n{spec.label}",
                fontsize="medium",
            )

    rounds = max((sample.round for sample in samples), default=0)
    figure.suptitle(
        f"Transfer throughput, median of {rounds} rounds\n"
        "bar: dataset size / median wall seconds; whisker: slowest to fastest round"
    )
    figure.legend(
        handles=[
            Patch(color=JOURNALQ_COLOR, label="journalq"),
            Patch(color=PEER_COLOR, label="peer tool"),
        ],
        loc="outside lower center",
        ncols=2,
    )
    figure.savefig(path, dpi=DPI)
    return path


def _throughput_panel(
    axes: Axes, samples: list[Sample], contenders: list[str], spec: DatasetSpec
) -> None:
    """Draw one horizontal bar per contender, or mark it not available."""
    per_file = spec.file_size < PER_FILE_SIZE
    work = spec.file_count if per_file else spec.total_bytes / MIB
    for position, contender in enumerate(contenders):
        walls = [
            sample.measurement.wall
            for sample in samples
            if sample.contender == contender
            and sample.measurement is not None
            and not sample.failure
        ]
        if not walls:
            axes.text(0, position, " not available", va="center", fontsize="small")
            continue

        wall = Summary.of(walls)
        rate = work / wall.median
        whisker = [[rate - work / wall.maximum], [work / wall.minimum - rate]]
        color = JOURNALQ_COLOR if contender.startswith("journalq") else PEER_COLOR
        axes.barh(position, rate, height=0.6, xerr=whisker, color=color, capsize=3)
        axes.text(work / wall.minimum, position, f" {rate:,.0f}", va="center")

    axes.set_yticks(range(len(contenders)), contenders)
    axes.set_ylim(len(contenders) - 0.5, -0.5)
    axes.margins(x=0.25)
    axes.set_xlabel("files/s" if per_file else "MiB/s")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes.grid(axis="x", alpha=0.3)
    axes.set_axisbelow(True)


def _unique(values: Iterable[str]) -> list[str]:
    """Return the distinct values in the order they first appear."""
    return list(dict.fromkeys(values))


# Scale ----------------------------------------------------------------------


def plot_scale_time(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Plot the seconds of each scale step against the queue's file count."""
    figure, axes = _scale_axes(rows, "seconds")
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.axhline(
        OPEN_TARGET_SECONDS,
        color=TARGET_COLOR,
        linestyle="--",
        label=f"target at {TARGET_SIZE:,} files: open and status "
        f"< {OPEN_TARGET_SECONDS:g} s",
    )
    axes.set_ylabel("seconds (log scale)")
    axes.set_title("Time of each scale step by the queue's file count")
    figure.legend(loc="outside right upper", fontsize="small")
    figure.savefig(path, dpi=DPI)
    return path


def plot_scale_memory(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Plot the peak RSS of each scale step's process against file count."""
    figure, axes = _scale_axes(rows, "peak RSS MiB")
    axes.axhline(
        OPEN_TARGET_MIB,
        color=TARGET_COLOR,
        linestyle="--",
        label=f"target at {TARGET_SIZE:,} files: open < {OPEN_TARGET_MIB} MiB",
    )
    axes.set_ylim(bottom=0)
    axes.set_ylabel("peak RSS of the process, MiB")
    axes.set_title("Memory of each scale step by the queue's file count")
    figure.legend(loc="outside right upper", fontsize="small")
    figure.savefig(path, dpi=DPI)
    return path


def _scale_axes(rows: Sequence[Mapping[str, Any]], column: str) -> tuple[Figure, Axes]:
    """Draw one line per measure of ``column`` against files, on a log x axis."""
    figure = Figure(figsize=(12, 5.5), layout="constrained")
    axes = figure.add_subplot()
    series = _scale_series(rows, column)
    for index, (measure, points) in enumerate(series.items()):
        axes.plot(
            [files for files, _ in points],
            [value for _, value in points],
            marker=MARKERS[index % len(MARKERS)],
            label=measure,
        )

    counts = sorted({files for points in series.values() for files, _ in points})
    axes.set_xscale("log")
    axes.set_xticks(counts, [f"{files:,}" for files in counts])
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xlabel("files in the queue (log scale)")
    axes.grid(which="both", alpha=0.3)
    return figure, axes


def _scale_series(
    rows: Sequence[Mapping[str, Any]], column: str
) -> dict[str, list[tuple[int, float]]]:
    """Group (files, value) points by measure, skipping rows without a value.

    The rows carry formatted text, as ``scale_bench`` renders it:
    ``"1,000,000"`` files and ``"0.412"`` seconds.
    """
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        text = str(row.get(column, "")).replace(",", "")
        if not text:
            continue
        files = int(str(row["files"]).replace(",", ""))
        series.setdefault(str(row["measure"]), []).append((files, float(text)))
    return {measure: sorted(points) for measure, points in series.items()}
