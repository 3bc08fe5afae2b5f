"""Tests of the health server over real HTTP on 127.0.0.1: metrics, liveness, readiness, guard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import capture_logs

from consumer.observability.http import HealthServer, HealthState
from consumer.observability.metrics import REGISTRY
from consumer.revocation_gate import RevocationGate
from consumer.revocation_guard import RevocationGuard
from tests.integration.harness import wait_until

ADMIN_TOKEN = "admin-token-3f9a7c1e5b2d"
AUTHORIZED = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


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
    """A health server on 127.0.0.1 releasing the real gate, with an admin token."""
    async with HealthServer(
        state,
        host="127.0.0.1",
        port=0,
        release_guard=gate.release,
        admin_token=SecretStr(ADMIN_TOKEN),
    ) as running:
        yield running


@pytest.fixture
async def tripped(gate: RevocationGate) -> AsyncIterator[RevocationGate]:
    """The gate, tripped; the revocation it holds is dropped at the end of the test."""
    held = await _trip(gate)
    yield gate
    held.cancel()
    await asyncio.gather(held, return_exceptions=True)


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


async def test_readyz_says_auth_failed_while_the_credentials_are_refused(
    client: httpx.AsyncClient, state: HealthState
) -> None:
    """While the token endpoint refuses the credentials, /readyz is 503 `auth_failed`."""
    refused = True
    state.joined = True
    state.circuit_open = True
    state.auth_failed_probe = lambda: refused
    response = await client.get("/readyz")
    refused = False
    state.circuit_open = False
    after = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["reason"] == "auth_failed"
    assert after.status_code == 200


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
        response = await client.post("/guard/release", headers=AUTHORIZED)
    assert response.status_code == 200
    assert response.json() == {"released": True}
    assert await held is True
    assert gate.tripped is False
    assert _gauge("cxone_sync_guard_tripped") == 0.0
    released = [entry for entry in logs if entry["event"] == "guard.released"]
    assert [entry["remote"] for entry in released] == ["127.0.0.1"]
    response = await client.post("/guard/release", headers=AUTHORIZED)
    assert response.status_code == 409
    assert response.json() == {"released": False, "reason": "not_tripped"}


async def test_guard_release_accepts_an_async_callback(state: HealthState) -> None:
    """A coroutine callback is awaited."""

    async def release() -> bool:
        return True

    async with (
        HealthServer(
            state,
            host="127.0.0.1",
            port=0,
            release_guard=release,
            admin_token=SecretStr(ADMIN_TOKEN),
        ) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        response = await http.post("/guard/release", headers=AUTHORIZED)
    assert response.status_code == 200
    assert response.json() == {"released": True}


async def test_guard_release_without_a_guard_is_409(state: HealthState) -> None:
    """A consumer without a revocation guard answers 409 to a release."""
    async with (
        HealthServer(state, host="127.0.0.1", port=0, admin_token=SecretStr(ADMIN_TOKEN)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        response = await http.post("/guard/release", headers=AUTHORIZED)
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


async def test_guard_release_without_authorization_is_401(
    client: httpx.AsyncClient, state: HealthState, tripped: RevocationGate
) -> None:
    """A release without an Authorization header is refused with 401 and the guard stays held."""
    response = await client.post("/guard/release")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert state.guard_tripped is True


@pytest.mark.parametrize(
    "authorization",
    [f"Basic {ADMIN_TOKEN}", "Bearer", f"Token {ADMIN_TOKEN}", ADMIN_TOKEN],
)
async def test_guard_release_without_a_bearer_token_is_401(
    client: httpx.AsyncClient, state: HealthState, authorization: str, tripped: RevocationGate
) -> None:
    """An Authorization header that carries no bearer token counts as none: 401, nothing done."""
    response = await client.post("/guard/release", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert state.guard_tripped is True


@pytest.mark.parametrize(
    "token", ["wrong-token", ADMIN_TOKEN[:-1], ADMIN_TOKEN + "x", ADMIN_TOKEN.upper(), "é" * 20]
)
async def test_guard_release_with_a_wrong_token_is_403(
    client: httpx.AsyncClient, state: HealthState, token: str, tripped: RevocationGate
) -> None:
    """A wrong bearer token (shorter, longer, other case, non-ASCII) is refused with 403."""
    response = await client.post(
        "/guard/release", headers={"Authorization": f"Bearer {token}".encode()}
    )
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden"}
    assert state.guard_tripped is True


async def test_bearer_scheme_is_case_insensitive(
    client: httpx.AsyncClient, state: HealthState, tripped: RevocationGate
) -> None:
    """`bearer` in lower case is the same scheme (RFC 7235): the right token releases."""
    response = await client.post(
        "/guard/release", headers={"Authorization": f"bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 200
    assert state.guard_tripped is False


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "text/plain;charset=UTF-8",
        "TEXT/PLAIN",
    ],
)
async def test_a_form_content_type_never_acts(
    client: httpx.AsyncClient, state: HealthState, content_type: str, tripped: RevocationGate
) -> None:
    """What a cross-site HTML form can send is refused (415), even with the right token."""
    response = await client.post(
        "/guard/release",
        content=b"a=b",
        headers={**AUTHORIZED, "Content-Type": content_type},
    )
    assert response.status_code == 415
    assert state.guard_tripped is True


async def test_a_json_body_with_the_token_acts(
    client: httpx.AsyncClient, state: HealthState, tripped: RevocationGate
) -> None:
    """A non-form content type (JSON, which a form cannot send) with the token may act."""
    response = await client.post("/guard/release", json={}, headers=AUTHORIZED)
    assert response.status_code == 200
    assert state.guard_tripped is False


async def test_without_admin_token_admin_actions_are_404(
    state: HealthState, tripped: RevocationGate
) -> None:
    """With ADMIN_TOKEN unset the release does not exist (404) and says how to release instead."""
    async with (
        HealthServer(state, host="127.0.0.1", port=0, release_guard=tripped.release) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        bare = await http.post("/guard/release")
        with_some_token = await http.post("/guard/release", headers=AUTHORIZED)
    assert bare.status_code == 404
    assert with_some_token.status_code == 404
    assert "restart" in bare.json()["detail"]
    assert state.guard_tripped is True


async def test_open_endpoints_answer_without_a_token_and_never_show_it(
    state: HealthState, tripped: RevocationGate
) -> None:
    """/metrics, /healthz and /readyz answer without a token, and never show the admin token."""
    state.joined = True
    async with (
        HealthServer(
            state,
            host="127.0.0.1",
            port=0,
            release_guard=tripped.release,
            admin_token=SecretStr(ADMIN_TOKEN),
        ) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        refused = await http.post("/guard/release", headers={"Authorization": "Bearer nope"})
        answers = [await http.get(path) for path in ("/metrics", "/healthz", "/readyz")]
    assert refused.status_code == 403
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    for answer in answers:
        assert ADMIN_TOKEN not in answer.text
        assert "Bearer" not in answer.text
