"""Tests of the benchmark plots, drawn from synthetic samples and rows.

The figures have the shapes a ``python -m benchmarks --quick`` run
produces: transfer samples of two scenarios on the quick datasets, one of
them failed, and scale rows with formatted text cells.
"""

from __future__ import annotations

import importlib.abc
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import benchmarks
from benchmarks import __main__ as bench_main
from benchmarks.datasets import QUICK
from benchmarks.harness import Measurement
from benchmarks.transfer_bench import Sample, TransferResults

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def plots() -> ModuleType:
    """The plot module.

    matplotlib is in the ``test`` extra, so an environment without it fails
    these tests instead of skipping them.
    """
    from benchmarks import plots

    return plots


def measurement(wall: float) -> Measurement:
    return Measurement(
        wall=wall, user=wall / 2, system=wall / 4, max_rss_kib=30_000, exit_code=0
    )


def transfer_results() -> TransferResults:
    """Two rounds of two scenarios on the quick datasets (a) and (c)."""
    specs = (QUICK[0], QUICK[2])
    samples = []
    for round_number in (1, 2):
        for spec in specs:
            samples += [
                Sample("copy", spec.key, "cp -r", round_number, measurement(0.1)),
                Sample(
                    "copy", spec.key, "journalq copy", round_number, measurement(0.3)
                ),
                Sample("noop", spec.key, "rsync -a", round_number, measurement(0.05)),
                Sample(
                    "noop",
                    spec.key,
                    "journalq sync, warm cache",
                    round_number,
                    None,
                    failure="exit status 1: TypeError",
                ),
            ]
    return TransferResults(specs, 2, samples)


def scale_row(files: int, measure: str, seconds: str, rss: str) -> dict[str, Any]:
    """A row as ``scale_bench`` renders it, every cell formatted text."""
    return {
        "files": f"{files:,}",
        "measure": measure,
        "seconds": seconds,
        "peak RSS MiB": rss,
        "records/s": "",
        "detail": "",
        "target": "",
    }


SCALE_ROWS = [
    scale_row(1_000, "open: QueueStore.open + actions", "0.057", "34"),
    scale_row(1_000, "journalq status --queue DIR", "1.198", "37"),
    scale_row(100_000, "open: QueueStore.open + actions", "0.412", "96"),
    scale_row(100_000, "journalq status --queue DIR", "1.530", "101"),
    scale_row(100_000, "no figures", "", ""),
]


def png_size(path: Path) -> tuple[int, int]:
    """Return (width, height) from the PNG header, after checking its signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_throughput_plot_writes_png(plots: ModuleType, tmp_path: Path) -> None:
    results = transfer_results()
    path = tmp_path / "throughput.png"

    returned = plots.plot_throughput(results.samples, results.specs, path)

    assert returned == path
    width, height = png_size(path)
    assert width > 500
    assert height > 400


def test_scale_time_plot_writes_png(plots: ModuleType, tmp_path: Path) -> None:
    path = plots.plot_scale_time(SCALE_ROWS, tmp_path / "time.png")

    width, height = png_size(path)
    assert width > 500
    assert height > 300


def test_scale_memory_plot_writes_png(plots: ModuleType, tmp_path: Path) -> None:
    path = plots.plot_scale_memory(SCALE_ROWS, tmp_path / "memory.png")

    width, height = png_size(path)
    assert width > 500
    assert height > 300


def test_scale_series_parses_text_cells(plots: ModuleType) -> None:
    series = plots._scale_series(SCALE_ROWS, "seconds")

    assert set(series) == {
        "open: QueueStore.open + actions",
        "journalq status --queue DIR",
    }
    assert series["open: QueueStore.open + actions"] == [
        (1_000, 0.057),
        (100_000, 0.412),
    ]


def test_write_plots_without_scale_rows(plots: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "scale-time.png"
    stale.write_bytes(PNG_SIGNATURE)

    written = plots.write_plots(tmp_path, transfer_results(), [])

    assert [plot.path.name for plot in written] == ["throughput.png"]
    assert not stale.exists()


def test_page_section_links_every_plot(plots: ModuleType, tmp_path: Path) -> None:
    sections = [("Scale", "scale_bench", SCALE_ROWS, None)]

    lines = bench_main._plots_section(tmp_path, transfer_results(), sections)

    assert lines[0] == "## Plots"
    links = [line for line in lines if line.startswith("![")]
    assert links == [
        "![Throughput by dataset and tool](plots/throughput.png)",
        "![Time by file count](plots/scale-time.png)",
        "![Memory by queue size](plots/scale-memory.png)",
    ]
    for name in ("throughput.png", "scale-time.png", "scale-memory.png"):
        png_size(tmp_path / "plots" / name)


class HideMatplotlib(importlib.abc.MetaPathFinder):
    """An import finder that reports matplotlib as not installed."""

    def find_spec(self, name: str, *args: object) -> None:
        if name.partition(".")[0] == "matplotlib":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def test_page_section_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finder first on ``sys.meta_path`` makes ``import matplotlib`` raise
    ModuleNotFoundError, as an environment without it does: a mock, because
    the test environment cannot uninstall a package for one test."""
    for name in [name for name in sys.modules if name.startswith("matplotlib")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, "benchmarks.plots", raising=False)
    monkeypatch.delattr(benchmarks, "plots", raising=False)
    monkeypatch.setattr(sys, "meta_path", [HideMatplotlib(), *sys.meta_path])

    lines = bench_main._plots_section(tmp_path, transfer_results(), [])

    assert lines[0] == "## Plots"
    assert lines[2].startswith("Not available: matplotlib is not installed")
    assert not (tmp_path / "plots").exists()
