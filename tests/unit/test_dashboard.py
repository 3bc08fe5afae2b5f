"""Tests of the Grafana dashboard: current schema, datasource variable, queries on real metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumer.observability.metrics import REGISTRY
from tests.integration.prometheus import (
    exposed_metric_names,
    panel_queries,
    referenced_metrics,
    substitute,
)

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
DASHBOARD = json.loads((DASHBOARDS / "cxone-role-sync.json").read_text())

CONTRACT_METRICS = {
    "cxone_sync_events_total",
    "cxone_sync_latency_seconds_bucket",
    "cxone_sync_retries_total",
    "cxone_sync_escalation_rejections_total",
    "cxone_sync_inflight",
    "cxone_sync_consumer_lag",
    "cxone_scim_requests_total",
    "cxone_scim_request_duration_seconds_bucket",
    "cxone_sync_dlq_total",
    "cxone_sync_last_success_timestamp_seconds",
    "cxone_sync_circuit_open",
    "cxone_sync_guard_tripped",
    "cxone_sync_build_info",
    "cxone_sync_oldest_unfinished_age_seconds",
}
# Not in the contract's list, but each has a runbook and an operator watches it.
OPERATOR_METRICS = {
    "cxone_sync_publish_blocked",
    "cxone_sync_auth_rejected",
    "cxone_sync_webhook_failures_total",
}

REQUIRED_PANELS = {
    "Events/s by outcome",
    "Sync latency p50 / p95 / p99",
    "Retries/s by reason",
    "Escalation rejections/min by reason",
    "Consumer lag per partition",
    "In-flight events",
    "SCIM responses/s by status",
    "DLQ records/min by reason",
    "Circuit and guard",
    "Time since last success",
    "Oldest unfinished record age per partition",
    "CXone credentials",
    "Records blocked from publishing",
    "Webhook failures/min",
}


def _panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    pending = list(DASHBOARD["panels"])
    while pending:
        panel = pending.pop(0)
        panels.append(panel)
        pending.extend(panel.get("panels", []))
    return panels


def _datasource_refs(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            else:
                yield from _datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item)


def test_schema_version_is_current() -> None:
    """The dashboard uses schema version 39 or later, with a stable uid and no instance id."""
    assert DASHBOARD["schemaVersion"] >= 39
    assert DASHBOARD["uid"] == "cxone-role-sync"
    assert DASHBOARD["id"] is None


def test_datasource_is_a_prometheus_variable() -> None:
    """A `datasource` variable of type datasource offers the Prometheus data sources."""
    [variable] = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "datasource"]
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"


def test_no_datasource_uid_is_hard_coded() -> None:
    """Every datasource reference, of panels and of targets, goes through ${datasource}."""
    refs = list(_datasource_refs(DASHBOARD["panels"]))
    assert refs
    assert all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs)


def test_required_panels_are_present() -> None:
    """The operator's panels listed in the issue are all on the dashboard."""
    assert {panel["title"] for panel in _panels()} >= REQUIRED_PANELS


def test_panels_have_unique_ids_positions_and_targets() -> None:
    """Each panel has a unique id, a grid position and targets with unique refIds."""
    panels = _panels()
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids
        assert len(set(ref_ids)) == len(ref_ids)


def test_panels_do_not_overlap() -> None:
    """No two panels share a grid cell."""
    cells: dict[tuple[int, int], str] = {}
    for panel in _panels():
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        assert grid["x"] + grid["w"] <= 24


def test_every_referenced_metric_exists_in_the_registry() -> None:
    """Each metric a panel queries is one the service's registry exposes."""
    exposed = exposed_metric_names(REGISTRY)
    referenced = set().union(*(referenced_metrics(query) for query in panel_queries(DASHBOARD)))
    assert referenced <= exposed, referenced - exposed


def test_every_contract_metric_is_on_the_dashboard() -> None:
    """Every metric of the contract, and blocked publishing, refused credentials and webhook
    failures, is shown by at least one panel."""
    referenced = set().union(*(referenced_metrics(query) for query in panel_queries(DASHBOARD)))
    shown = CONTRACT_METRICS | OPERATOR_METRICS
    assert referenced >= shown, shown - referenced


def test_rate_windows_use_the_rate_interval() -> None:
    """Range vectors use $__rate_interval, which holds data within minutes of start-up."""
    for panel in _panels():
        for target in panel["targets"]:
            if "[" in target["expr"]:
                assert "[$__rate_interval]" in target["expr"], panel["title"]


def test_panel_queries_substitute_grafana_variables() -> None:
    """panel_queries returns every visible query with Grafana's variables replaced."""
    queries = panel_queries(DASHBOARD)
    assert len(queries) == sum(len(panel["targets"]) for panel in _panels())
    assert all("$" not in query for query in queries)
    assert "sum by (outcome) (rate(cxone_sync_events_total[1m]))" in queries


def test_panel_queries_skip_hidden_targets_and_walk_rows() -> None:
    """Hidden targets are left out and panels inside collapsed rows are included."""
    dashboard = {
        "panels": [
            {"type": "row", "panels": [{"targets": [{"expr": "a[$__rate_interval]"}]}]},
            {"targets": [{"expr": "b", "hide": True}, {"expr": "c[${__interval}]"}]},
        ]
    }
    assert panel_queries(dashboard) == ["a[1m]", "c[1m]"]


def test_unknown_dashboard_variable_is_an_error() -> None:
    """A query using a variable with no test value fails loudly instead of reaching Prometheus."""
    with pytest.raises(ValueError, match=r"\$instance"):
        substitute('up{instance="$instance"}')


def test_provisioning_points_grafana_at_the_dashboard() -> None:
    """The dashboard provider reads the folder docker-compose mounts the dashboard into."""
    provider = yaml.safe_load(
        (DASHBOARDS / "grafana/provisioning/dashboards/cxone-role-sync.yml").read_text()
    )
    [source] = provider["providers"]
    compose = yaml.safe_load((DASHBOARDS.parent / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    target = f"{source['options']['path']}/cxone-role-sync.json"
    assert f"./dashboards/cxone-role-sync.json:{target}:ro" in mounts
    datasources = yaml.safe_load(
        (DASHBOARDS / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert [ds["type"] for ds in datasources["datasources"]] == ["prometheus"]
