"""Tests of the health server over real HTTP on 127.0.0.1: metrics, liveness, readiness, guard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from consumer.guard import RevocationGuard
from consumer.observability.http import HealthServer, HealthState
from consumer.observability.metrics import REGISTRY
from consumer.revocations import RevocationGate
from tests.integration.harness import wait_until


@pytest.fixture
async def gate() -> RevocationGate:
    """A real revocation gate that trips on its second revocation in a minute."""
    return RevocationGate(RevocationGuard(max_revocations=1, window_seconds=60.0))


@pytest.fixture
async def state(gate: RevocationGate) -> HealthState:
    """A fresh health state reading the gate, as the service wires it at start-up."""
    health = HealthState()
    health.guard_tripped_probe = lambda: gate.tripped
    return health


@pytest.fixture
async def server(state: HealthState, gate: RevocationGate) -> AsyncIterator[HealthServer]:
    """A health server on a free port of 127.0.0.1 releasing the real gate."""
    async with HealthServer(state, host="127.0.0.1", port=0, release_guard=gate.release) as running:
        yield running


async def _trip(gate: RevocationGate) -> asyncio.Task[bool]:
    """Trip the gate with one revocation too many; the returned task waits for the release."""
    assert await gate.admit() is False
    held = asyncio.create_task(gate.admit())
    await wait_until(lambda: gate.tripped, within=5.0, what="the guard to trip")
    return held


@pytest.fixture
async def client(server: HealthServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client aimed at the server."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        yield http


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


async def test_port_zero_binds_a_free_port(server: HealthServer) -> None:
    """Port 0 lets the system choose, and the server exposes the bound port."""
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


async def test_healthz_answers_while_the_loop_runs(client: httpx.AsyncClient) -> None:
    """/healthz answers 200 with a JSON status."""
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_503_until_the_group_is_joined(
    client: httpx.AsyncClient, state: HealthState
) -> None:
    """Before joining its group the consumer is not ready, and says why."""
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "reason": "not_joined", "guard_tripped": False}
    state.joined = True
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "guard_tripped": False}


async def test_readyz_flips_with_the_circuit(client: httpx.AsyncClient, state: HealthState) -> None:
    """Opening the circuit turns /readyz to 503 and the gauge to 1; closing it turns both back."""
    state.joined = True
    assert (await client.get("/readyz")).status_code == 200
    state.circuit_open = True
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reason"] == "circuit_open"
    assert _gauge("cxone_sync_circuit_open") == 1.0
    state.circuit_open = False
    assert (await client.get("/readyz")).status_code == 200
    assert _gauge("cxone_sync_circuit_open") == 0.0


async def test_a_tripped_guard_keeps_the_consumer_ready(
    client: httpx.AsyncClient, state: HealthState, gate: RevocationGate
) -> None:
    """The guard holds revocations only: /readyz stays 200 and reports the gate's state."""
    state.joined = True
    held = await _trip(gate)
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "guard_tripped": True}
    assert _gauge("cxone_sync_guard_tripped") == 1.0
    gate.release()
    assert await held is True


async def test_a_state_without_a_guard_reports_none_tripped() -> None:
    """A health state no gate was wired to reports the guard as not tripped."""
    assert HealthState().guard_tripped is False


async def test_guard_release_releases_a_tripped_guard_once(
    client: httpx.AsyncClient, gate: RevocationGate
) -> None:
    """POST /guard/release releases the gate (200, one log line naming the caller), then 409."""
    held = await _trip(gate)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = await client.post("/guard/release")
    assert response.status_code == 200
    assert response.json() == {"released": True}
    assert await held is True
    assert gate.tripped is False
    assert _gauge("cxone_sync_guard_tripped") == 0.0
    released = [entry for entry in logs if entry["event"] == "guard.released"]
    assert [entry["remote"] for entry in released] == ["127.0.0.1"]
    response = await client.post("/guard/release")
    assert response.status_code == 409
    assert response.json() == {"released": False, "reason": "not_tripped"}


async def test_guard_release_accepts_an_async_callback(state: HealthState) -> None:
    """A coroutine callback is awaited."""

    async def release() -> bool:
        return True

    async with (
        HealthServer(state, host="127.0.0.1", port=0, release_guard=release) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        response = await http.post("/guard/release")
    assert response.status_code == 200
    assert response.json() == {"released": True}


async def test_guard_release_without_a_guard_is_409(state: HealthState) -> None:
    """A consumer without a revocation guard answers 409 to a release."""
    async with (
        HealthServer(state, host="127.0.0.1", port=0) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        response = await http.post("/guard/release")
    assert response.status_code == 409
    assert response.json() == {"released": False, "reason": "guard_not_configured"}


async def test_guard_release_needs_post(client: httpx.AsyncClient) -> None:
    """A GET cannot release the guard."""
    assert (await client.get("/guard/release")).status_code == 405


async def test_metrics_in_prometheus_text_format(client: httpx.AsyncClient) -> None:
    """/metrics serves the registry in the text format by default."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'cxone_sync_events_total{outcome="synced"}' in response.text
    assert "# TYPE cxone_sync_latency_seconds histogram" in response.text


async def test_metrics_in_openmetrics_when_asked(client: httpx.AsyncClient) -> None:
    """/metrics negotiates OpenMetrics, which Prometheus asks for first."""
    response = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_stop_releases_the_port(state: HealthState) -> None:
    """After stop, nothing listens on the port any more."""
    server = HealthServer(state, host="127.0.0.1", port=0)
    await server.start()
    url = server.url
    await server.stop()
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{url}/healthz")
