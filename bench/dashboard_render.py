"""Drawing the Grafana dashboard's panels with matplotlib, laid out on Grafana's 24-column grid.

Pure: panels (the dashboard JSON) and the series Prometheus answered in, a PNG file out. The
PNG says in its own text chunks which panels it draws and which of them had data, so a test can
hold the picture against the dashboard without looking at pixels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
PANELS_KEY = "Panels"
"""The PNG text chunk listing the titles of the panels drawn, in the dashboard's order (JSON)."""
EMPTY_KEY = "Panels without data"
"""The PNG text chunk listing the titles of the panels drawn as "No data" (JSON)."""
GRID_COLUMNS = 24
INCHES_PER_ROW = 0.42
WIDTH_INCHES = 18.0


@dataclass(frozen=True)
class Series:
    """One line of a panel: its legend and its (unix time, value) points."""

    legend: str
    points: tuple[tuple[float, float], ...]


def legend_of(legend_format: str | None, labels: Mapping[str, str], expr: str) -> str:
    """Grafana's legend: `{{label}}` filled in, else the labels, else the expression."""
    if legend_format:
        return _LEGEND.sub(lambda match: labels.get(match.group(1), ""), legend_format)
    shown = {name: value for name, value in labels.items() if name != "__name__"}
    if shown:
        return ", ".join(f"{name}={value}" for name, value in sorted(shown.items()))
    return expr


def series_of(target: Mapping[str, Any], result: Sequence[Mapping[str, Any]]) -> list[Series]:
    """The series of one query_range answer, with the target's legend."""
    return [
        Series(
            legend_of(target.get("legendFormat"), item["metric"], target["expr"]),
            tuple((float(at), float(value)) for at, value in item["values"]),
        )
        for item in result
    ]


def value_text(panel: Mapping[str, Any], legend: str, value: float) -> str:
    """A stat's value as Grafana shows it: through the panel's value mappings, then its unit."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    overrides = panel.get("fieldConfig", {}).get("overrides", [])
    mappings = list(defaults.get("mappings", []))
    for override in overrides:
        if override.get("matcher", {}).get("options") == legend:
            for prop in override.get("properties", []):
                if prop.get("id") == "mappings":
                    mappings = prop["value"]
    for mapping in mappings:
        options = mapping.get("options", {})
        key = str(int(value)) if value == int(value) else str(value)
        if mapping.get("type") == "value" and key in options:
            return str(options[key]["text"])
    unit = defaults.get("unit", "none")
    if unit == "s":
        return f"{value:.1f} s"
    return f"{value:g}"


def render(
    dashboard: Mapping[str, Any],
    series: Mapping[int, list[Series]],
    output: Path,
    *,
    subtitle: str,
) -> None:
    """Draw every panel where Grafana would put it and write the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    panels = [panel for panel in dashboard["panels"] if "gridPos" in panel]
    empty = [panel["title"] for panel in panels if not _has_data(series.get(panel["id"], []))]
    rows = max(panel["gridPos"]["y"] + panel["gridPos"]["h"] for panel in panels)
    header = 1.0
    height = rows * INCHES_PER_ROW + header
    figure = plt.figure(figsize=(WIDTH_INCHES, height), facecolor="#111217")
    figure.text(0.01, 1 - 0.35 / height, dashboard.get("title", ""), color="white", fontsize=16)
    figure.text(0.01, 1 - 0.7 / height, subtitle, color="#aaaaaa", fontsize=10)
    for panel in panels:
        grid = panel["gridPos"]
        margin = 0.012
        left = grid["x"] / GRID_COLUMNS + margin
        width = grid["w"] / GRID_COLUMNS - 2 * margin
        top = 1 - (header + grid["y"] * INCHES_PER_ROW) / height
        box_height = grid["h"] * INCHES_PER_ROW / height
        axes = figure.add_axes((left, top - box_height + 0.035, width, box_height - 0.06))
        axes.set_facecolor("#181b1f")
        axes.set_title(panel.get("title", ""), color="white", fontsize=10, loc="left")
        for spine in axes.spines.values():
            spine.set_color("#333333")
        axes.tick_params(colors="#aaaaaa", labelsize=7)
        lines = series.get(panel["id"], [])
        if panel.get("type") == "stat":
            _draw_stat(axes, panel, lines)
        else:
            _draw_timeseries(axes, lines, mdates)
    output.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        PANELS_KEY: json.dumps([panel["title"] for panel in panels]),
        EMPTY_KEY: json.dumps(empty),
    }
    figure.savefig(output, dpi=72, facecolor=figure.get_facecolor(), metadata=metadata)
    plt.close(figure)


def drawn_panels(png: Path) -> tuple[list[str], list[str]]:
    """The titles of the panels a rendered PNG draws, and of those drawn without data."""
    from PIL import Image

    with Image.open(png) as image:
        text = dict(getattr(image, "text", {}))
    return json.loads(text.get(PANELS_KEY, "[]")), json.loads(text.get(EMPTY_KEY, "[]"))


def _has_data(lines: Sequence[Series]) -> bool:
    return any(line.points for line in lines)


def _draw_timeseries(axes: Any, lines: Sequence[Series], mdates: Any) -> None:
    drawn = False
    for line in lines:
        if not line.points:
            continue
        times = [datetime.fromtimestamp(at, UTC) for at, _ in line.points]
        axes.plot(times, [value for _, value in line.points], linewidth=1.2, label=line.legend)
        drawn = True
    if drawn:
        axes.legend(fontsize=7, loc="upper left", framealpha=0.3, ncol=3)
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        axes.set_ylim(bottom=0)
    else:
        axes.text(
            0.5, 0.5, "No data", color="#aaaaaa", ha="center", va="center", transform=axes.transAxes
        )
    axes.grid(color="#2a2d33", linewidth=0.5)


def _draw_stat(axes: Any, panel: Mapping[str, Any], lines: Sequence[Series]) -> None:
    axes.set_xticks([])
    axes.set_yticks([])
    shown = [(line.legend, line.points[-1][1]) for line in lines if line.points]
    if not shown:
        axes.text(
            0.5, 0.5, "No data", color="#aaaaaa", ha="center", va="center", transform=axes.transAxes
        )
        return
    for index, (legend, value) in enumerate(shown):
        x = (index + 0.5) / len(shown)
        axes.text(
            x,
            0.55,
            value_text(panel, legend, value),
            color="white",
            fontsize=18,
            ha="center",
            va="center",
            transform=axes.transAxes,
        )
        axes.text(
            x, 0.2, legend, color="#aaaaaa", fontsize=8, ha="center", transform=axes.transAxes
        )
