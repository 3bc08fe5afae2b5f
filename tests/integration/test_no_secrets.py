"""No secret ever leaves the service: not in its output, its metrics, or what it publishes.

The real service runs as a process at DEBUG level through the troubles that make code talk
about credentials (token endpoint errors, a revoked token and its refresh, 429s, 5xx, resets)
and through escalations, bad input, webhook deliveries that fail and are retried, and admin
requests with a wrong and a right token; then a few runs with bad settings. Every secret comes
from a `<NAME>_FILE` file, as Docker and Kubernetes secrets do. Everything it printed, served on
/metrics, /healthz and /readyz, answered to the admin requests, delivered to the webhook or
published to the audit and dead-letter topics is searched for every secret, every access token
the simulator issued, and (on the open endpoints) every user id.
"""

from __future__ import annotations

import base64
import json
import secrets
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from consumer.sandbox.feed import AuditReader, TopicReader, produce
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import CxoneSimulator
from consumer.sandbox.tokens import Credentials, IssuedToken
from tests.conftest import Topics
from tests.integration.harness import ServiceProcess, logged, make_pipeline
from tests.integration.hook import HookEndpoint

USERS = [f"u-{n}" for n in range(6)]


def fresh_credentials() -> Credentials:
    """Credentials with random secrets, so a match can only be a leak."""
    return Credentials(
        client_id="leakcheck-client",
        client_secret=f"cs-{secrets.token_urlsafe(24)}",
        access_key_id="leakcheck-key",
        access_key_secret=f"aks-{secrets.token_urlsafe(24)}",
    )


def fresh_service_secrets() -> dict[str, str]:
    """The service's own secrets (not CXone's), random so that a match can only be a leak."""
    return {
        "ADMIN_TOKEN": f"adm-{secrets.token_urlsafe(24)}",
        "APPROVAL_HMAC_KEY": f"hmk-{secrets.token_urlsafe(24)}",
        "WEBHOOK_SECRET": f"whs-{secrets.token_urlsafe(24)}",
    }


def secret_files(directory: Path, values: Mapping[str, str]) -> dict[str, str]:
    """Write each secret to a file, with the trailing newline `echo` leaves; the _FILE variables."""
    environment = {}
    for name, value in values.items():
        path = directory / name.lower()
        path.write_text(f"{value}\n")
        path.chmod(0o600)
        environment[f"{name}_FILE"] = str(path)
    return environment


class WebhookRecorder(HookEndpoint):
    """A webhook endpoint on 127.0.0.1 that fails the first delivery and keeps every request."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        """Record headers and body; answer 503 the first time so the sender retries."""
        body = await request.read()
        self.requests.append(f"{dict(request.headers)!r}\n{body.decode(errors='replace')}")
        return web.Response(status=503 if len(self.requests) == 1 else 200)


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookRecorder]:
    """A running webhook recorder."""
    async with WebhookRecorder() as recorder:
        yield recorder


def record_issued_tokens(simulator: CxoneSimulator, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every access token the simulator hands out from now on, in order."""
    issued: list[str] = []
    issue = simulator.tokens.issue

    def recording(form: Mapping[str, str], authorization: str | None) -> IssuedToken:
        token = issue(form, authorization)
        issued.append(token.access_token)
        return token

    monkeypatch.setattr(simulator.tokens, "issue", recording)
    return issued


def event(user_id: str, event_id: str, *roles: str, approved: bool = False) -> bytes:
    """A role-change event granting `roles` (the first one primary)."""
    data: dict[str, Any] = {
        "user_id": user_id,
        "roles": [{"role_id": role, "primary": index == 0} for index, role in enumerate(roles)],
    }
    if approved:
        data["approval"] = {"ticket": "CHG-1", "approved_by": "secops"}
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "okta/test",
            "type": "idp.user.roles.changed",
            "data": data,
        }
    ).encode()


def first_batch() -> list[tuple[bytes | None, bytes]]:
    """Ordinary changes, two escalations, an approved privileged grant and bad input."""
    records: list[tuple[bytes | None, bytes]] = [
        (user_id.encode(), event(user_id, f"a-{user_id}", "agent_voice")) for user_id in USERS
    ]
    records += [
        (b"u-esc-1", event("u-esc-1", "esc-1", "admin_support")),
        (b"u-esc-2", event("u-esc-2", "esc-2", "root_everything")),
        (b"u-esc-3", event("u-esc-3", "esc-3", "admin_support", approved=True)),
        (b"u-bad", b'{"specversion": "1.0", "id": '),
    ]
    return records


def second_batch() -> list[tuple[bytes | None, bytes]]:
    """A second change for every ordinary user."""
    return [
        (user_id.encode(), event(user_id, f"b-{user_id}", "agent_digital", "reporting_viewer"))
        for user_id in USERS
    ]


def sample(metrics: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition; 0 when absent."""
    for family in text_string_to_metric_families(metrics):
        for item in family.samples:
            if item.name == name and all(item.labels.get(k) == v for k, v in labels.items()):
                return float(item.value)
    return 0.0


async def run_with_bad_settings(environment: Mapping[str, str]) -> tuple[int, str]:
    """Start the service with settings that must stop it; return its exit code and output."""
    process = ServiceProcess(environment).start()
    try:
        code = await process.wait_async(60)
        return code, process.output
    finally:
        process.close()


@pytest.mark.slow
async def test_no_secret_or_token_appears_in_output_metrics_or_topics(
    topics: Topics, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, webhook: WebhookRecorder
) -> None:
    """Through retries, a token refresh, 429s, escalations and bad settings, no secret leaks."""
    credentials = fresh_credentials()
    own = fresh_service_secrets()
    files = secret_files(
        tmp_path,
        {
            "CXONE_CLIENT_SECRET": credentials.client_secret,
            "CXONE_ACCESS_KEY_SECRET": credentials.access_key_secret,
            **own,
        },
    )
    simulator = CxoneSimulator(credentials)
    issued = record_issued_tokens(simulator, monkeypatch)
    for user_id in [*USERS, "u-esc-1", "u-esc-2", "u-esc-3"]:
        simulator.seed_user(
            user_id, f"{user_id}@example.com", roles=[("agent_basic", "Standard Agent", True)]
        )

    async with SimulatorServer(simulator) as server:
        pipeline = await make_pipeline(
            topics,
            server,
            CXONE_CLIENT_ID=credentials.client_id,
            CXONE_ACCESS_KEY_ID=credentials.access_key_id,
            WEBHOOK_URL=webhook.url,
            METRICS_HOST="127.0.0.1",
            LOG_LEVEL="DEBUG",
            **files,
        )
        # Only the files carry the secrets.
        del pipeline.environment["CXONE_CLIENT_SECRET"]
        del pipeline.environment["CXONE_ACCESS_KEY_SECRET"]
        # The token endpoint fails each way (an error, a reset, a throttle) before it issues the
        # first token; each failure costs a token backoff (1 s, doubling) in the process.
        simulator.faults_on_token_endpoint = True
        simulator.script_faults(503, "reset", 429)
        await produce(pipeline.bootstrap_servers, pipeline.input_topic, first_batch())
        service = ServiceProcess(pipeline.environment).start()
        try:
            async with AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit:
                await audit.wait_for_results(len(first_batch()), within=90)
                # A key rotation: the next SCIM request gets 401 and the service refreshes; SCIM
                # itself answers 429 and 5xx and resets a connection.
                simulator.faults_on_token_endpoint = False
                simulator.revoke_tokens()
                simulator.script_faults(429, 503, "reset", 500)
                await produce(pipeline.bootstrap_servers, pipeline.input_topic, second_batch())
                await audit.wait_for_results(len(first_batch()) + len(second_batch()), within=90)
            [started] = logged(service.output, "service.started")
            [listening] = logged(service.output, "health.listening")
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{started['metrics_port']}", timeout=10
            ) as http:
                response = await http.get("/metrics")
                open_answers = [(await http.get(path)).text for path in ("/healthz", "/readyz")]
                wrong = await http.post(
                    "/guard/release", headers={"Authorization": "Bearer not-the-admin-token"}
                )
                right = await http.post(
                    "/guard/release", headers={"Authorization": f"Bearer {own['ADMIN_TOKEN']}"}
                )
            metrics = response.text
            service.signal(signal.SIGTERM)
            assert await service.wait_async(60) == 0
            output = service.output
        finally:
            service.close()
        async with TopicReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit_topic:
            await audit_topic.wait_until(
                lambda reader: len(reader.records) >= len(first_batch()) + len(second_batch()),
                within=30,
                what="the audit topic",
            )
        async with TopicReader(pipeline.bootstrap_servers, pipeline.dlq_topic) as dlq_topic:
            await dlq_topic.wait_until(
                lambda reader: len(reader.records) >= 1, within=30, what="the DLQ topic"
            )

    bad_runs = [
        await run_with_bad_settings(
            {**pipeline.environment, "CXONE_SCIM_BASE_URL": "http://cxone.example.com/scim/v2"}
        ),
        # A secret pasted into the wrong variable must not be echoed back in the complaint.
        await run_with_bad_settings(
            {**pipeline.environment, "METRICS_PORT": credentials.client_secret}
        ),
        await run_with_bad_settings(
            {**pipeline.environment, "CXONE_HTTP_TRANSPORT": credentials.access_key_secret}
        ),
        # A secret given twice, and a secret file that is not there.
        await run_with_bad_settings({**pipeline.environment, "ADMIN_TOKEN": own["ADMIN_TOKEN"]}),
        await run_with_bad_settings(
            {**pipeline.environment, "WEBHOOK_SECRET_FILE": str(tmp_path / "absent")}
        ),
    ]

    # The run went through what it was meant to.
    assert response.status_code == 200
    assert sample(metrics, "cxone_sync_retries_total", reason="server_error") >= 1
    assert sample(metrics, "cxone_sync_retries_total", reason="rate_limited") >= 1
    assert sample(metrics, "cxone_sync_escalation_rejections_total", reason="approval_required")
    assert sample(metrics, "cxone_sync_escalation_rejections_total", reason="unknown_role")
    scim_statuses = {r.status for r in simulator.requests if r.path.startswith("/scim/")}
    assert {401, 429, 500, 503} <= scim_statuses
    assert len(issued) >= 2
    assert '"level": "debug"' in output or '"level":"debug"' in output
    assert [code for code, _ in bad_runs] == [2, 2, 2, 2, 2]
    assert "CXONE_SCIM_BASE_URL" in bad_runs[0][1]
    assert "METRICS_PORT" in bad_runs[1][1]
    assert "CXONE_HTTP_TRANSPORT" in bad_runs[2][1]
    assert "ADMIN_TOKEN: also set as ADMIN_TOKEN_FILE" in bad_runs[3][1]
    assert f"cannot read WEBHOOK_SECRET_FILE {tmp_path / 'absent'}" in bad_runs[4][1]
    assert (wrong.status_code, right.status_code) == (403, 409)
    assert listening["host"] == "127.0.0.1"
    assert len(webhook.requests) >= 2

    published = [value or b"" for _, value, _ in audit_topic.records + dlq_topic.records] + [
        key or b"" for key, _, _ in audit_topic.records + dlq_topic.records
    ]
    headers = [
        value for _, _, record_headers in dlq_topic.records for value in record_headers.values()
    ]
    haystacks = {
        "service output": output,
        "metrics": metrics,
        "/healthz and /readyz": "\n".join(open_answers),
        "admin answers": wrong.text + right.text,
        "webhook deliveries": "\n".join(webhook.requests),
        "audit and DLQ topics": b"\n".join(published + headers).decode(errors="replace"),
        **{f"bad settings run {n}": text for n, (_, text) in enumerate(bad_runs, 1)},
    }
    basic = base64.b64encode(
        f"{credentials.client_id}:{credentials.client_secret}".encode()
    ).decode()
    needles = {
        "client secret": credentials.client_secret,
        "access key secret": credentials.access_key_secret,
        "client credentials as HTTP Basic": basic,
        **{name: value for name, value in own.items()},
        **{f"access token #{n}": token for n, token in enumerate(issued, 1)},
    }
    leaks = [
        f"{needle} in {where}"
        for where, text in haystacks.items()
        for needle, value in needles.items()
        if value in text
    ]
    # The open endpoints carry no user data either.
    user_ids = [*USERS, "u-esc-1", "u-esc-2", "u-esc-3", "u-bad"]
    exposed = [
        f"{user_id} in {where}"
        for where in ("metrics", "/healthz and /readyz")
        for user_id in user_ids
        if user_id in haystacks[where]
    ]
    assert leaks == []
    assert exposed == []
