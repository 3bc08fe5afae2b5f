"""Observability end to end: a real Prometheus scrapes the running consumer; health follows CXone.

The consumer is the real in-process service, fed through the broker and writing to the
simulator over HTTP. Prometheus scrapes its metrics port every second, and every panel query
of the dashboard is evaluated through Prometheus's HTTP API, as Grafana would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from consumer.events import Outcome
from consumer.sandbox.feed import AuditReader, produce
from consumer.sandbox.server import SimulatorServer
from consumer.service import Tuning
from tests.conftest import Topics
from tests.integration.harness import fast_tuning, make_pipeline, running_service
from tests.integration.hook import HookEndpoint
from tests.integration.prometheus import (
    GRAFANA_VARIABLES,
    PrometheusServer,
    panel_queries,
    referenced_metrics,
    require_binary,
)

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "cxone-role-sync.json"

# Gauges that rightly read 0 once the traffic is done: their panels need a series, not a value.
AT_REST = frozenset(
    {
        "cxone_sync_consumer_lag",
        "cxone_sync_inflight",
        # 0 once every record is finished, like inflight; test_prometheus_harness shows the
        # panel draws it when it is not.
        "cxone_sync_oldest_unfinished_age_seconds",
        "cxone_sync_circuit_open",
        "cxone_sync_guard_tripped",
        # 1 only while the broker refuses a record for good or the token endpoint refuses the
        # credentials; the tests of those failures read them.
        "cxone_sync_publish_blocked",
        "cxone_sync_auth_rejected",
    }
)
WITHIN = 45.0
WINDOW_VARIABLES = {**GRAFANA_VARIABLES, "__rate_interval": "10m", "__interval": "10m"}


def tuning() -> Tuning:
    """Fast retries and commits, and lag measured every second so a 1 s scrape sees it."""
    return dataclasses.replace(fast_tuning(), lag_interval=1.0)


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RefusingReceiver(HookEndpoint):
    """A webhook receiver that refuses every notification, as a misconfigured one does."""

    async def handle(self, request: web.Request) -> web.Response:
        """400: a refusal the service counts as a failure without retrying."""
        await request.read()
        return web.Response(status=400)


def role_change(user_id: str, *roles: str, event_id: str, approved: bool = False) -> bytes:
    """A role-change event asking for `roles` (the first one primary)."""
    data: dict[str, Any] = {
        "user_id": user_id,
        "roles": [{"role_id": role, "primary": index == 0} for index, role in enumerate(roles)],
    }
    if approved:
        data["approval"] = {"ticket": "CHG-1", "approved_by": "secops"}
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "okta/test",
        "type": "idp.user.roles.changed",
        "subject": user_id,
        "data": data,
    }
    return json.dumps(event).encode()


def seed_agents(server: SimulatorServer, *user_ids: str) -> None:
    """Seed agents holding only the standard agent role."""
    for user_id in user_ids:
        server.simulator.seed_user(
            user_id,
            f"{user_id}@example.com",
            given_name=user_id,
            emails=[f"{user_id}@example.com"],
            roles=[("agent_basic", "Standard Agent", True)],
        )


def role_values(server: SimulatorServer, user_id: str) -> list[str]:
    """The role values CXone holds for a user."""
    return [role["value"] for role in server.simulator.get_user(user_id).get("roles") or []]


async def label_values(
    prometheus: PrometheusServer, expr: str, label: str, expected: set[str]
) -> set[str]:
    """Poll until the expression's series carry every expected value of `label`; return them."""
    deadline = time.monotonic() + WITHIN
    while True:
        found = {sample["metric"].get(label, "") for sample in await prometheus.query(expr)}
        if expected <= found or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(0.2)


async def scraped_value(http: httpx.AsyncClient, name: str) -> float:
    """The value of an unlabelled sample as the service's /metrics serves it."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    raise AssertionError(f"{name} is not on /metrics")


async def wait_until_listening(http: httpx.AsyncClient) -> int:
    """Poll /healthz until the service's health server answers; return the status it answered."""
    deadline = time.monotonic() + 60.0
    while True:
        try:
            return (await http.get("/healthz")).status_code
        except httpx.ConnectError:
            # The health server binds once the consumer has started its Kafka client.
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.05)


async def wait_for_readiness(http: httpx.AsyncClient, status: int) -> dict[str, Any]:
    """Poll /readyz until it answers `status`, checking /healthz answers 200 on every round."""
    deadline = time.monotonic() + 60.0
    while True:
        alive = await http.get("/healthz")
        assert alive.status_code == 200
        assert alive.json() == {"status": "ok"}
        ready = await http.get("/readyz")
        if ready.status_code == status:
            body: dict[str, Any] = ready.json()
            return body
        if time.monotonic() >= deadline:
            raise TimeoutError(f"/readyz still answers {ready.status_code}: {ready.text}")
        await asyncio.sleep(0.05)


async def test_every_dashboard_panel_shows_the_running_consumer(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Every dashboard panel query returns series from a real consumer Prometheus scrapes."""
    binary = require_binary("prometheus")
    seed_agents(simulator_server, "u-warm", "u-1", "u-2", "u-3", "u-esc-1", "u-esc-2")
    port = free_port()
    pipeline = await make_pipeline(topics, simulator_server)
    async with (
        RefusingReceiver() as receiver,
        running_service(
            pipeline.settings(
                metrics_port=port, webhook_url=receiver.url, webhook_secret="e2e-hook-secret"
            ),
            tuning=tuning(),
        ) as service,
        PrometheusServer(f"127.0.0.1:{port}", binary=binary) as prometheus,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        # A first sync creates the SCIM series, and Prometheus scrapes them before the
        # traffic under test: rate() only sees increases between two scrapes of a series.
        await produce(
            pipeline.bootstrap_servers,
            pipeline.input_topic,
            [(b"u-warm", role_change("u-warm", "agent_voice", event_id="evt-warm"))],
        )
        await audit.wait_for_results(1, within=WITHIN)
        await prometheus.wait_for_series(
            'cxone_scim_request_duration_seconds_count{method="PUT"} > 0', within=WITHIN
        )

        simulator_server.simulator.script_faults(503, 429, 503)
        await produce(
            pipeline.bootstrap_servers,
            pipeline.input_topic,
            [
                (b"u-1", role_change("u-1", "agent_voice", event_id="evt-1")),
                (b"u-2", role_change("u-2", "agent_digital", event_id="evt-2")),
                (b"u-3", role_change("u-3", "agent_blended", event_id="evt-3")),
                (b"u-esc-1", role_change("u-esc-1", "super_admin", event_id="evt-esc-1")),
                (b"u-esc-2", role_change("u-esc-2", "admin_support", event_id="evt-esc-2")),
                (b"u-bad-1", b'{"specversion": "1.0", "id": '),
                (b"u-bad-2", role_change("../admin", "agent_basic", event_id="evt-bad-2")),
            ],
        )
        results = await audit.wait_for_results(8, within=WITHIN)

        # A dashboard over the last 10 minutes: the traffic above stays inside every panel's
        # window however long a busy machine takes to get through the panels.
        queries = panel_queries(json.loads(DASHBOARD.read_text()), WINDOW_VARIABLES)
        assert queries
        for query in queries:
            assert await prometheus.wait_for_series(query, within=WITHIN), query
            if not referenced_metrics(query) <= AT_REST:
                # Fed by the traffic above: the panel must show it, not only zeros.
                assert await prometheus.wait_for_series(f"({query}) > 0", within=WITHIN), query

        outcomes = await label_values(
            prometheus,
            "sum by (outcome) (increase(cxone_sync_events_total[10m])) > 0",
            "outcome",
            {"synced", "rejected", "invalid"},
        )
        retries = await label_values(
            prometheus,
            "sum by (reason) (increase(cxone_sync_retries_total[10m])) > 0",
            "reason",
            {"server_error", "rate_limited"},
        )
        escalations = await label_values(
            prometheus,
            "sum by (reason) (increase(cxone_sync_escalation_rejections_total[10m])) > 0",
            "reason",
            {"unknown_role", "approval_required"},
        )
        dead_letters = await label_values(
            prometheus,
            "sum by (reason) (increase(cxone_sync_dlq_total[10m])) > 0",
            "reason",
            {"invalid_json", "schema_violation"},
        )
        statuses = await label_values(
            prometheus,
            'sum by (status) (cxone_scim_requests_total{status=~"429|503"}) > 0',
            "status",
            {"429", "503"},
        )
        [lag] = await prometheus.wait_for_series(
            f'cxone_sync_consumer_lag{{topic="{pipeline.input_topic}", partition="0"}} == 0',
            within=WITHIN,
        )
        await service.shutdown()

    assert outcomes == {"synced", "rejected", "invalid"}
    assert retries == {"server_error", "rate_limited"}
    assert escalations == {"unknown_role", "approval_required"}
    assert dead_letters == {"invalid_json", "schema_violation"}
    assert statuses == {"429", "503"}
    assert lag["value"][1] == "0"
    # The records in the order produced: the warm-up sync, then the traffic under test.
    in_order = [results[position].data for position in sorted(results)]
    assert [(data.outcome, data.reason) for data in in_order] == [
        (Outcome.SYNCED, None),
        (Outcome.SYNCED, None),
        (Outcome.SYNCED, None),
        (Outcome.SYNCED, None),
        (Outcome.REJECTED, "unknown_role"),
        (Outcome.REJECTED, "approval_required"),
        (Outcome.INVALID, "invalid_json"),
        (Outcome.INVALID, "schema_violation"),
    ]
    # Each scripted fault cost exactly one more attempt of one of the events that read CXone.
    assert sum(data.attempts for data in in_order[1:6]) == 5 + 3
    assert role_values(simulator_server, "u-3") == ["agent_blended"]
    assert role_values(simulator_server, "u-esc-2") == ["agent_basic"]


async def test_readyz_follows_the_circuit_while_healthz_stays_up(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """/readyz answers 503 while the circuit is open and 200 after recovery; /healthz stays 200."""
    users = [f"u-{number}" for number in range(1, 5)]
    seed_agents(simulator_server, *users)
    port = free_port()
    pipeline = await make_pipeline(topics, simulator_server)
    async with (
        running_service(pipeline.settings(metrics_port=port), tuning=tuning()) as service,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as http,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        first_answer = await wait_until_listening(http)
        joined = await wait_for_readiness(http, 200)
        simulator_server.simulator.set_outage(True)
        await produce(
            pipeline.bootstrap_servers,
            pipeline.input_topic,
            [
                (user.encode(), role_change(user, "agent_voice", event_id=f"evt-{user}"))
                for user in users
            ],
        )
        during = await wait_for_readiness(http, 503)
        open_gauge = await scraped_value(http, "cxone_sync_circuit_open")
        simulator_server.simulator.set_outage(False)
        after = await wait_for_readiness(http, 200)
        closed_gauge = await scraped_value(http, "cxone_sync_circuit_open")
        results = await audit.wait_for_results(len(users), within=WITHIN)
        await service.shutdown()

    assert first_answer == 200
    # The example policy's guard (50 per 300 s), the whole of it for the one instance.
    guard = {
        "tripped": False,
        "share": "1/1",
        "budget": 50,
        "spent": 0,
        "max_revocations": 50,
        "window_seconds": 300.0,
    }
    assert joined == {"ready": True, "guard_tripped": False, "guard": guard}
    assert during == {
        "ready": False,
        "reason": "circuit_open",
        "guard_tripped": False,
        "guard": guard,
    }
    assert open_gauge == 1.0
    assert after == {"ready": True, "guard_tripped": False, "guard": guard}
    assert closed_gauge == 0.0
    assert len(results) == len(users)
    assert {event.data.user_id for event in results.values()} == set(users)
    assert {event.data.outcome for event in results.values()} == {Outcome.SYNCED}
    assert all(role_values(simulator_server, user) == ["agent_voice"] for user in users)
