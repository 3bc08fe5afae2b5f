"""The webhook notifier against a real HTTP receiver that checks every signature."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr
from structlog.testing import capture_logs

from consumer.errors import ConfigurationError
from consumer.events import AuditEvent, Outcome, SourcePosition, SyncResult, audit_event_of
from consumer.observability.metrics import REGISTRY, RETRY_REASONS
from consumer.sandbox.feed import produce
from consumer.sandbox.server import SimulatorServer
from consumer.scim.client import build_http_client, instrument_retries
from consumer.settings import HttpTransport, load_settings
from consumer.webhook import (
    SIGNATURE_HEADER,
    DeliveryPolicy,
    WebhookNotifier,
    build_webhook,
    sign,
)
from tests.conftest import TEST_CREDENTIALS, Topics
from tests.integration.harness import EXAMPLE_POLICY, make_pipeline, running_service, wait_until
from tests.integration.hook import HookEndpoint

SECRET = "whsec-5f0c1f6e9b2d4a7c8e3f"
FAST = DeliveryPolicy(attempts=5, wait_initial=0.01, wait_max=0.05, wait_jitter=0.0, timeout=5.0)


class Receiver(HookEndpoint):
    """A webhook endpoint on 127.0.0.1 that verifies signatures and answers as scripted."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[int] = []
        self.default = 200
        self.hang = asyncio.Event()
        self.hanging = False
        self.attempts = 0
        self.bad_signatures = 0
        self.bodies: list[bytes] = []
        self.content_types: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        """Verify the signature, then answer the next scripted status (200 once they run out)."""
        self.attempts += 1
        body = await request.read()
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""), expected):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.hanging:
            await self.hang.wait()
        status = self.answers.pop(0) if self.answers else self.default
        if status < 300:
            self.bodies.append(body)
            self.content_types.append(request.headers.get("Content-Type", ""))
        return web.Response(status=status)

    async def stop(self) -> None:
        """Release any held request and stop listening."""
        self.hang.set()
        await super().stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A running receiver."""
    endpoint = Receiver()
    await endpoint.start()
    yield endpoint
    await endpoint.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The service's kind of HTTP client: httpx over the aiohttp transport."""
    client = build_http_client(HttpTransport.AIOHTTP, timeout=5.0, max_connections=4)
    yield client
    await client.aclose()


def result(offset: int = 0) -> SyncResult:
    """A synced result of one input record."""
    return SyncResult(
        event_id=f"evt-{offset}",
        user_id=f"u-{offset}",
        outcome=Outcome.SYNCED,
        roles_before=("agent_basic",),
        roles_after=("agent_voice",),
        attempts=1,
        http_status=200,
        source=SourcePosition(topic="idp.role-changes", partition=0, offset=offset),
        processed_at=datetime(2026, 11, 28, 15, 0, tzinfo=UTC),
    )


def scim_retries_counted() -> float:
    """The sum of `cxone_sync_retries_total` over its reasons."""
    return sum(
        REGISTRY.get_sample_value("cxone_sync_retries_total", {"reason": reason}) or 0.0
        for reason in RETRY_REASONS
    )


def failures() -> float:
    """The value of `cxone_sync_webhook_failures_total` right now."""
    return REGISTRY.get_sample_value("cxone_sync_webhook_failures_total") or 0.0


def notifier(http: httpx.AsyncClient, receiver: Receiver, **options: int) -> WebhookNotifier:
    """A notifier for the receiver with quick retries."""
    return WebhookNotifier(http, receiver.url, SecretStr(SECRET), policy=FAST, **options)


async def test_delivers_the_audit_event_signed_over_its_exact_bytes(
    http: httpx.AsyncClient, receiver: Receiver
) -> None:
    """A result arrives once as its audit event JSON, with a valid signature and JSON type."""
    hook = notifier(http, receiver)
    counted = failures()
    await hook.start()

    hook.notify(result(3))
    await wait_until(lambda: len(receiver.bodies) == 1, within=15.0)
    await hook.aclose()

    assert receiver.bodies == [audit_event_of(result(3)).model_dump_json().encode()]
    assert receiver.bad_signatures == 0
    assert receiver.attempts == 1
    assert receiver.content_types == ["application/json"]
    assert failures() == counted


async def test_a_receiver_failing_twice_gets_the_event_once_after_retries(
    http: httpx.AsyncClient, receiver: Receiver
) -> None:
    """A 500 and a 503 are retried; the third attempt delivers, and nothing is counted lost."""
    receiver.answers = [500, 503]
    hook = notifier(http, receiver)
    counted = failures()
    instrument_retries()
    scim_retries = scim_retries_counted()
    with capture_logs() as logs:
        await hook.start()
        hook.notify(result(1))
        await wait_until(lambda: len(receiver.bodies) == 1, within=15.0)
        await hook.aclose()

    # The webhook's own hook says why; the SCIM hook stays out of it.
    events = [entry["event"] for entry in logs if entry["event"].endswith(".retry")]
    assert events == ["webhook.retry", "webhook.retry"]

    assert receiver.attempts == 3
    assert receiver.bodies == [audit_event_of(result(1)).model_dump_json().encode()]
    assert failures() == counted
    # The webhook's retries are not SCIM retries.
    assert scim_retries_counted() == scim_retries


async def test_a_receiver_always_failing_drops_the_event_and_counts_it(
    http: httpx.AsyncClient, receiver: Receiver
) -> None:
    """After five failed attempts the notification is dropped and counted once."""
    receiver.default = 503
    hook = notifier(http, receiver)
    counted = failures()
    await hook.start()

    with capture_logs() as logs:
        hook.notify(result(2))
        await wait_until(lambda: failures() == counted + 1, within=15.0)
    await hook.aclose()

    assert receiver.attempts == 5
    assert receiver.bodies == []
    dropped = [entry for entry in logs if entry["event"] == "webhook.dropped"]
    assert [(entry["reason"], entry["event_id"]) for entry in dropped] == [
        ("retries_exhausted", "evt-2")
    ]
    assert SECRET not in repr(logs)
    assert receiver.url not in repr(logs)


async def test_a_refusal_is_not_retried(http: httpx.AsyncClient, receiver: Receiver) -> None:
    """A 400 from the receiver drops the notification after one attempt, counted."""
    receiver.answers = [400]
    hook = notifier(http, receiver)
    counted = failures()
    await hook.start()

    hook.notify(result(4))
    await wait_until(lambda: failures() == counted + 1, within=15.0)
    await hook.aclose()

    assert receiver.attempts == 1
    assert receiver.bodies == []


async def test_a_full_queue_drops_and_counts_without_waiting(
    http: httpx.AsyncClient, receiver: Receiver
) -> None:
    """With room for two, five notifications keep two and count three drops at once."""
    hook = notifier(http, receiver, queue_size=2)
    counted = failures()

    with capture_logs() as logs:
        for offset in range(5):
            hook.notify(result(offset))

    # A plain function that returned: it cannot have waited for room in the queue.
    assert not inspect.iscoroutinefunction(hook.notify)
    assert hook.pending == 2
    assert failures() == counted + 3
    assert [entry["reason"] for entry in logs if entry["event"] == "webhook.dropped"] == [
        "queue_full"
    ] * 3
    await hook.start()
    await hook.aclose(grace=15.0)
    assert sorted(receiver.bodies) == sorted(
        audit_event_of(result(offset)).model_dump_json().encode() for offset in range(2)
    )
    assert failures() == counted + 3


async def test_close_flushes_what_is_queued(http: httpx.AsyncClient, receiver: Receiver) -> None:
    """Closing delivers every queued notification before it returns, when the grace allows."""
    hook = notifier(http, receiver)
    counted = failures()
    await hook.start()

    for offset in range(20):
        hook.notify(result(offset))
    await hook.aclose(grace=30.0)

    assert len(receiver.bodies) == 20
    assert {audit_event_of(result(n)).model_dump_json().encode() for n in range(20)} == set(
        receiver.bodies
    )
    assert failures() == counted
    hook.notify(result(99))
    assert failures() == counted + 1


async def test_close_gives_up_after_its_grace_when_the_receiver_hangs(
    http: httpx.AsyncClient, receiver: Receiver
) -> None:
    """With a receiver that never answers, close returns after its grace and counts the rest."""
    receiver.hanging = True
    hook = notifier(http, receiver, workers=1)
    counted = failures()
    await hook.start()

    for offset in range(3):
        hook.notify(result(offset))
    await wait_until(lambda: receiver.attempts == 1, within=15.0)
    await hook.aclose(grace=0.2)

    assert receiver.bodies == []
    assert hook.pending == 0
    assert failures() == counted + 3


def test_signature_is_hmac_sha256_of_the_body() -> None:
    """`sign` gives `sha256=` and the hex HMAC-SHA256 of the bytes, for a str or SecretStr key."""
    body = b'{"id":"x"}'
    expected = "sha256=" + hmac.new(b"k3y-value", body, hashlib.sha256).hexdigest()

    assert sign(body, "k3y-value") == expected
    assert sign(body, SecretStr("k3y-value")) == expected


async def test_built_from_settings_only_when_a_url_is_set(http: httpx.AsyncClient) -> None:
    """No WEBHOOK_URL gives no notifier; a URL and secret give one that does not show either."""
    common: dict[str, object] = {
        "cxone_scim_base_url": "https://cxone.example.com/scim/v2",
        "cxone_token_url": "https://cxone.example.com/auth/token",
        "cxone_client_id": TEST_CREDENTIALS.client_id,
        "cxone_client_secret": TEST_CREDENTIALS.client_secret,
        "policy_file": EXAMPLE_POLICY,
    }

    assert build_webhook(load_settings(**common), http) is None
    hook = build_webhook(
        load_settings(
            **common,
            webhook_url="https://hooks.example.com/t/abc123",
            webhook_secret=SECRET,
        ),
        http,
    )
    assert isinstance(hook, WebhookNotifier)
    assert SECRET not in repr(hook)
    assert "abc123" not in repr(hook)
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRET"):
        load_settings(**common, webhook_url="https://hooks.example.com/t/abc123")


async def test_running_service_posts_every_result_signed(
    receiver: Receiver, topics: Topics, simulator_server: SimulatorServer
) -> None:
    """With WEBHOOK_URL set, the running service POSTs each audit event, correctly signed."""
    simulator_server.simulator.seed_user(
        "u-hook", "hook@example.com", roles=[("agent_basic", None, True)]
    )
    pipeline = await make_pipeline(topics, simulator_server)
    events = [
        json.dumps(
            {
                "specversion": "1.0",
                "id": f"evt-hook-{index}",
                "source": "okta/test",
                "type": "idp.user.roles.changed",
                "data": {"user_id": "u-hook", "roles": [{"role_id": role}]},
            }
        ).encode()
        for index, role in enumerate(("agent_voice", "super_admin"))
    ]
    await produce(
        pipeline.bootstrap_servers, pipeline.input_topic, [(b"u-hook", e) for e in events]
    )
    settings = pipeline.settings(webhook_url=receiver.url, webhook_secret=SECRET)
    async with running_service(settings) as service:
        await wait_until(
            lambda: len(receiver.bodies) >= 2, within=30, what="the webhook to receive both results"
        )
        await service.shutdown()
    delivered = [AuditEvent.model_validate_json(body) for body in receiver.bodies]
    assert receiver.bad_signatures == 0
    assert sorted(e.data.event_id or "" for e in delivered) == ["evt-hook-0", "evt-hook-1"]
    outcomes = {e.data.event_id: e.data.outcome for e in delivered}
    assert outcomes["evt-hook-1"] is Outcome.REJECTED
