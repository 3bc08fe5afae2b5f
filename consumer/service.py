"""The long-lived service, assembled from the settings: SCIM client, policy, stream, health."""

from __future__ import annotations

import asyncio
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer import __version__
from consumer.catalog import load_policy
from consumer.errors import ConfigurationError, SyncError
from consumer.events import Mode
from consumer.guard import RevocationGuard
from consumer.observability.http import HealthServer, HealthState
from consumer.observability.lag import LagRefresher
from consumer.observability.metrics import BUILD_INFO, INFLIGHT
from consumer.policy import Policy
from consumer.revocations import RevocationGate
from consumer.scim.auth import CxoneAuth, TokenProvider
from consumer.scim.circuit import CircuitBreaker
from consumer.scim.client import RetryPolicy, ScimClient, build_http_client, instrument_retries
from consumer.scim.throttle import AdaptiveRateLimiter
from consumer.settings import Settings
from consumer.stream.consumer import FlowLimits, StreamConsumer
from consumer.stream.kafka import build_producer, connection_options
from consumer.stream.publisher import AuditPublisher
from consumer.sync import Synchronizer
from consumer.webhook import WebhookNotifier, build_webhook

log = structlog.get_logger(__name__)


@dataclass
class Tuning:
    """Knobs that are not part of the configuration contract; tests and the demo shorten them."""

    retry: RetryPolicy | None = None
    limits: FlowLimits | None = None
    metrics_host: str = "0.0.0.0"  # noqa: S104 - the metrics port is meant to be scraped
    circuit_probe_interval: float = 5.0
    lag_interval: float = 5.0
    # aiokafka's defaults; tests shorten them because some brokers only notice a departed
    # member when its session times out.
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000


def build_gate(policy: Policy) -> RevocationGate:
    """The mass-revocation gate the policy asks for (a pass-through when it asks for none)."""
    config = policy.mass_revocation_guard
    guard = (
        None if config is None else RevocationGuard(config.max_revocations, config.window_seconds)
    )
    return RevocationGate(guard)


@dataclass(frozen=True)
class Cxone:
    """The SCIM side: the client and the breaker guarding it."""

    scim: ScimClient
    circuit: CircuitBreaker


async def open_cxone(
    settings: Settings, stack: AsyncExitStack, *, tuning: Tuning, health: HealthState
) -> Cxone:
    """Build the SCIM client stack (HTTP, tokens, limiter, breaker); closed with `stack`."""
    http = build_http_client(
        settings.cxone_http_transport,
        timeout=settings.cxone_request_timeout_seconds,
        max_connections=settings.sync_max_concurrency * 2,
    )
    stack.push_async_callback(http.aclose)
    tokens = TokenProvider(
        http,
        token_url=settings.cxone_token_url,
        issuer_url=settings.cxone_issuer_url,
        client_id=settings.cxone_client_id,
        client_secret=settings.cxone_client_secret,
        access_key_id=settings.cxone_access_key_id,
        access_key_secret=settings.cxone_access_key_secret,
        required_scopes=settings.required_scopes,
    )
    await _first_token(tokens)

    def circuit_changed(is_open: bool) -> None:
        health.circuit_open = is_open
        log.warning("circuit.open") if is_open else log.info("circuit.closed")

    circuit = CircuitBreaker(
        on_change=circuit_changed, probe_interval=tuning.circuit_probe_interval
    )
    limiter = AdaptiveRateLimiter(ceiling_per_minute=settings.sync_rate_limit_per_minute)
    scim = ScimClient(
        settings.cxone_scim_base_url,
        http,
        auth=CxoneAuth(tokens),
        limiter=limiter,
        circuit=circuit,
        retry=tuning.retry,
    )
    return Cxone(scim, circuit)


async def run_service(
    settings: Settings,
    stop: asyncio.Event,
    *,
    tuning: Tuning | None = None,
    health: HealthState | None = None,
    mode: Mode = Mode.LIVE,
) -> None:
    """Run the consumer until `stop` is set; returns after in-flight work is finished."""
    tuning = tuning or Tuning()
    health = health or HealthState()
    policy = load_policy(settings.policy_file)
    instrument_retries()
    BUILD_INFO.labels(version=__version__).set(1)
    client_id = f"cxone-role-sync-{socket.gethostname()}"

    async with AsyncExitStack() as stack:
        gate = build_gate(policy)
        # Health first: liveness must answer while the broker or CXone is still slow to reach.
        server = HealthServer(
            health,
            host=tuning.metrics_host,
            port=settings.metrics_port,
            release_guard=gate.release,
        )
        await server.start()
        stack.push_async_callback(server.stop)
        health.guard_tripped_probe = lambda: gate.tripped

        cxone = await open_cxone(settings, stack, tuning=tuning, health=health)
        synchronizer = Synchronizer(
            policy,
            cxone.scim,
            dry_run=settings.sync_dry_run,
            gate=gate,
            approval_key=settings.approval_hmac_key,
        )
        circuit = cxone.circuit
        webhook = await _open_webhook(settings, stack)
        limits = replace(
            tuning.limits or FlowLimits(), shutdown_grace=settings.sync_shutdown_grace_seconds
        )

        producer = build_producer(settings, client_id=client_id)
        await producer.start()
        stack.push_async_callback(producer.stop)
        publisher = AuditPublisher(
            producer, audit_topic=settings.kafka_audit_topic, dlq_topic=settings.kafka_dlq_topic
        )

        kafka = AIOKafkaConsumer(
            **connection_options(settings),
            client_id=client_id,
            group_id=settings.kafka_group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=300_000,
            session_timeout_ms=tuning.session_timeout_ms,
            heartbeat_interval_ms=tuning.heartbeat_interval_ms,
            # Room for the revoke handler to use its whole grace and still commit in the group.
            rebalance_timeout_ms=max(60_000, int((limits.revoke_grace + 20) * 1000)),
        )

        def hold_reason() -> str | None:
            if circuit.is_open:
                return "circuit_open"
            if gate.tripped:
                return "guard_tripped"
            return None

        def assignment_changed(assignment: frozenset[TopicPartition]) -> None:
            health.joined = True
            lag.track(assignment)

        stream = StreamConsumer(
            kafka,
            synchronizer,
            publisher,
            max_concurrency=settings.sync_max_concurrency,
            limits=limits,
            mode=mode,
            hold_reason=hold_reason,
            on_inflight_change=INFLIGHT.set,
            on_assignment_change=assignment_changed,
            on_result=webhook.notify if webhook is not None else None,
        )
        lag = LagRefresher(kafka, committed=stream.committed, interval=tuning.lag_interval)
        kafka.subscribe([settings.kafka_input_topic], listener=stream.rebalance_listener())
        await kafka.start()
        stack.push_async_callback(kafka.stop)

        await lag.start()
        stack.push_async_callback(lag.stop)

        log.info(
            "service.started",
            version=__version__,
            topic=settings.kafka_input_topic,
            group=settings.kafka_group_id,
            dry_run=settings.sync_dry_run,
            metrics_port=server.port,
        )
        await stream.run(stop)


async def _open_webhook(settings: Settings, stack: AsyncExitStack) -> WebhookNotifier | None:
    """The webhook notifier with an HTTP pool of its own, when `WEBHOOK_URL` is set."""
    if settings.webhook_url is None:
        return None
    http = build_http_client(settings.cxone_http_transport, timeout=10.0, max_connections=4)
    stack.push_async_callback(http.aclose)
    webhook = build_webhook(settings, http)
    if webhook is not None:
        await webhook.start()
        # Registered after the client, so it flushes before the client closes.
        stack.push_async_callback(webhook.aclose)
    return webhook


async def _first_token(tokens: TokenProvider) -> None:
    """Fetch a token at start-up: bad scopes stop here; an unwell CXone only warns."""
    try:
        await tokens.token()
    except ConfigurationError:
        raise
    except SyncError as error:
        log.warning("auth.startup_token_failed", error=str(error), retriable=error.retriable)
