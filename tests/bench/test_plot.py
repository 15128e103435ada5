"""The plot's panels: latency (intended and actual apart), rate (target and achieved), status codes, spectrum;
every legend clear of its data."""

from __future__ import annotations

import pytest

from snapcrawl.bench import BenchConfig, run
from snapcrawl.simulator import Faults, Simulator

pytest.importorskip("matplotlib")


async def test_four_panels_with_legends_beside_them(simulator: Simulator) -> None:
    """A staged run with some 429s: four panels, each with a legend right of (not over) its plot area; the
    latency panel draws intended and actual in different styles; the rate panel has the target; the status
    panel has the 429s."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415

    from snapcrawl.bench._plot import _figure  # noqa: PLC0415

    simulator.faults = Faults(rate_limit=60.0, rate_burst=1)
    config = BenchConfig(
        endpoint=simulator.url,
        credentials=simulator.credentials,
        volume_ids=tuple(simulator.dataset.volume_ids[:10]),
        stages=((1.0, 100.0), (1.0, 50.0)),
    )
    report = await run(config)
    figure = _figure(report)
    FigureCanvasAgg(figure).draw()  # type: ignore[no-untyped-call]  # matplotlib leaves draw() unannotated
    axes = figure.get_axes()
    assert [ax.get_title().split(":")[-1].strip() for ax in axes] == [
        "latency over time",
        "rate over time",
        "status codes over time",
        "percentile spectrum",
    ]
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    for ax in axes:
        legend = ax.get_legend()
        assert legend is not None
        assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    latency, rate, status, _ = axes
    styles = {line.get_label(): line.get_linestyle() for line in latency.get_lines()}
    assert styles["p99 from intended send"] != styles["p99 from actual send"]
    assert "target" in [line.get_label() for line in rate.get_lines()]
    status_legend = status.get_legend()
    assert status_legend is not None
    assert {"200", "429"} <= {text.get_text() for text in status_legend.get_texts()}
