"""Tests of the Prometheus harness: a real Prometheus scrapes the health server, answers queries."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from consumer.observability import metrics
from consumer.observability.http import HealthServer, HealthState
from tests.integration.prometheus import (
    PrometheusServer,
    panel_queries,
    referenced_metrics,
    require_binary,
)

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "cxone-role-sync.json"


@pytest.fixture
async def health() -> AsyncIterator[HealthServer]:
    """The health server on a free port of 127.0.0.1, for Prometheus to scrape."""
    state = HealthState()
    state.joined = True
    async with HealthServer(state, host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def prometheus(health: HealthServer) -> AsyncIterator[PrometheusServer]:
    """A real Prometheus scraping the health server every second."""
    async with PrometheusServer(
        f"127.0.0.1:{health.port}", binary=require_binary("prometheus")
    ) as server:
        yield server


async def test_prometheus_scrapes_a_metric_from_the_health_server(
    prometheus: PrometheusServer,
) -> None:
    """A lag value set in-process is what Prometheus returns for its series."""
    metrics.CONSUMER_LAG.labels(topic="harness", partition="0").set(7)
    try:
        [sample] = await prometheus.wait_for_series(
            'cxone_sync_consumer_lag{topic="harness", partition="0"} == 7'
        )
        assert sample["metric"]["job"] == "cxone-role-sync"
        assert sample["value"][1] == "7"
        [up] = await prometheus.query('up{job="cxone-role-sync"}')
        assert up["value"][1] == "1"
    finally:
        metrics.CONSUMER_LAG.remove("harness", "0")


async def test_scalar_queries_come_back_as_one_sample(prometheus: PrometheusServer) -> None:
    """A scalar result is returned as a single unlabelled sample."""
    [sample] = await prometheus.query("scalar(vector(3))")
    assert sample["metric"] == {}
    assert sample["value"][1] == "3"


async def test_a_bad_query_raises_with_prometheus_error(prometheus: PrometheusServer) -> None:
    """A query Prometheus cannot parse raises with its error type."""
    with pytest.raises(RuntimeError, match="bad_data"):
        await prometheus.query("sum by (")


async def test_every_dashboard_query_returns_a_series_once_each_metric_has_data(
    prometheus: PrometheusServer,
) -> None:
    """With every metric fed in-process, each dashboard query yields a series in real Prometheus,
    and the blocked-publishing and refused-credentials panels show those states when raised."""
    metrics.EVENTS.labels(outcome="synced").inc()
    metrics.LATENCY.labels(outcome="synced").observe(0.12)
    metrics.SCIM_REQUESTS.labels(method="PUT", status="200").inc()
    metrics.SCIM_DURATION.labels(method="PUT").observe(0.04)
    metrics.CONSUMER_LAG.labels(topic="harness-dashboard", partition="0").set(2)
    metrics.INFLIGHT.set(1)
    metrics.OLDEST_UNFINISHED_AGE.labels(topic="harness-dashboard", partition="0").set(3)
    # States a healthy consumer never shows: their panels must show them when they happen.
    metrics.PUBLISH_BLOCKED.set(2)
    metrics.AUTH_REJECTED.set(1)
    raised = {"cxone_sync_publish_blocked", "cxone_sync_auth_rejected"}
    try:
        queries = panel_queries(json.loads(DASHBOARD.read_text()))
        assert queries
        for query in queries:
            result = await prometheus.wait_for_series(query)
            assert result, query
        shown = [query for query in queries if referenced_metrics(query) & raised]
        assert len(shown) == 2
        for query in shown:
            assert await prometheus.wait_for_series(f"({query}) > 0"), query
    finally:
        metrics.CONSUMER_LAG.remove("harness-dashboard", "0")
        metrics.OLDEST_UNFINISHED_AGE.remove("harness-dashboard", "0")
        metrics.INFLIGHT.set(0)
        metrics.PUBLISH_BLOCKED.set(0)
        metrics.AUTH_REJECTED.set(0)
