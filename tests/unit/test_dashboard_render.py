"""Tests of drawing the dashboard's panels: legends, stat values and the picture itself."""

from __future__ import annotations

import json
from pathlib import Path

from bench.dashboard_render import (
    Series,
    drawn_panels,
    legend_of,
    render,
    series_of,
    value_text,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "dashboards" / "cxone-role-sync.json").read_text())
PICTURE = ROOT / "docs" / "dashboard.png"


def test_legend_fills_in_labels_like_grafana() -> None:
    """`{{label}}` takes the series' label; without a format the labels themselves are shown."""
    assert legend_of("{{method}} {{status}}", {"method": "PUT", "status": "429"}, "x") == "PUT 429"
    assert legend_of(None, {"__name__": "m", "reason": "auth"}, "x") == "reason=auth"
    assert legend_of(None, {}, "sum(x)") == "sum(x)"


def test_series_come_from_a_query_range_answer() -> None:
    """Each result of a query_range answer becomes one series of (time, value) floats."""
    target = {"expr": "sum by (outcome) (x)", "legendFormat": "{{outcome}}"}
    answer = [{"metric": {"outcome": "synced"}, "values": [[100, "1.5"], [102, "2"]]}]
    assert series_of(target, answer) == [Series("synced", ((100.0, 1.5), (102.0, 2.0)))]


def test_render_draws_every_panel_into_a_png(tmp_path: Path) -> None:
    """The dashboard renders to a PNG as tall as its grid, with or without data in a panel."""
    circuit = next(panel for panel in DASHBOARD["panels"] if panel["title"] == "Circuit and guard")
    series = {
        1: [Series("synced", ((100.0, 1.0), (102.0, 3.0)))],
        circuit["id"]: [Series("circuit", ((100.0, 0.0),)), Series("guard", ((100.0, 1.0),))],
    }
    output = tmp_path / "dashboard.png"
    render(DASHBOARD, series, output, subtitle="test")
    header = output.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(header[16:20], "big")
    height = int.from_bytes(header[20:24], "big")
    assert width == 18 * 72
    rows = max(panel["gridPos"]["y"] + panel["gridPos"]["h"] for panel in DASHBOARD["panels"])
    assert height == int((rows * 0.42 + 1.0) * 72)
    titles = [panel["title"] for panel in DASHBOARD["panels"]]
    drawn, empty = drawn_panels(output)
    assert drawn == titles
    assert empty == [
        title for title in titles if title not in ("Events/s by outcome", "Circuit and guard")
    ]


def test_the_docs_picture_draws_every_panel_of_the_dashboard_with_data() -> None:
    """docs/dashboard.png was rendered from the dashboard as it is, and no panel in it is empty."""
    drawn, empty = drawn_panels(PICTURE)
    assert drawn == [panel["title"] for panel in DASHBOARD["panels"]]
    assert empty == []


def test_stat_values_go_through_the_panel_mappings_and_unit() -> None:
    """A stat shows its value mapping (closed, TRIPPED) or its value with the panel's unit."""
    panels = {panel["title"]: panel for panel in DASHBOARD["panels"]}
    circuit = panels["Circuit and guard"]
    assert value_text(circuit, "circuit", 0.0) == "closed"
    assert value_text(circuit, "guard", 1.0) == "TRIPPED"
    assert value_text(panels["Time since last success"], "since last success", 0.44) == "0.4 s"
    assert value_text(panels["CXone credentials"], "credentials", 0.0) == "accepted"
    assert value_text(panels["CXone credentials"], "credentials", 1.0) == "REFUSED"
