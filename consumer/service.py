"""The long-lived service, assembled from the settings: SCIM client, policy, stream, health."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import TypeVar

import stamina
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError, NodeNotReadyError

from consumer import __version__
from consumer.assignment_share import AssignmentShare
from consumer.catalog import load_policy
from consumer.errors import ConfigurationError, CredentialsRejected, SyncError
from consumer.events import Mode
from consumer.observability.http import HealthServer, HealthState
from consumer.observability.lag import LagRefresher
from consumer.observability.metrics import INFLIGHT
from consumer.revocation_gate import RevocationGate, build_gate
from consumer.scim.auth import CxoneAuth, TokenBackoff, TokenProvider, token_provider
from consumer.scim.circuit import CircuitBreaker
from consumer.scim.client import (
    RetryPolicy,
    ScimClient,
    WriteFence,
    build_http_client,
    instrument_retries,
)
from consumer.scim.shared_limit import build_limiter
from consumer.scim.throttle import RateLimiter
from consumer.settings import Settings
from consumer.stream.access_refused import access_refused
from consumer.stream.broker_credentials import verify_broker_credentials
from consumer.stream.broker_profile import BrokerProfile
from consumer.stream.consumer import FlowLimits, StreamConsumer
from consumer.stream.guard_ledger import GuardLedger, ensure_ledger_topic
from consumer.stream.kafka import (
    INPUT_ISOLATION_LEVEL,
    connection_options,
    instrument_kafka_retries,
    producer_for_broker,
    verify_broker_tls,
)
from consumer.stream.lease import MembershipLease
from consumer.stream.publisher import AuditPublisher, DeliveryPolicy
from consumer.stream.settle import LateWriteWatch
from consumer.stream.work import WorkItem
from consumer.sync import Synchronizer
from consumer.webhook import WebhookNotifier, build_webhook

log = structlog.get_logger(__name__)


@dataclass
class Tuning:
    """Knobs that are not part of the configuration contract; tests and the demo shorten them."""

    retry: RetryPolicy | None = None
    limits: FlowLimits | None = None
    delivery: DeliveryPolicy | None = None
    # How long the producer waits for a broker's answer, or for a topic's metadata.
    producer_request_timeout_ms: int = 30_000
    # Overrides METRICS_HOST when set (tests and the demo bind loopback only).
    metrics_host: str | None = None
    circuit_probe_interval: float = 5.0
    token_backoff: TokenBackoff | None = None
    lag_interval: float = 5.0
    # aiokafka's defaults; tests shorten them because some brokers only notice a departed
    # member when its session times out.
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000


@dataclass(frozen=True)
class Cxone:
    """The SCIM side: the client and the breaker guarding it."""

    scim: ScimClient
    circuit: CircuitBreaker
    limiter: RateLimiter


async def open_cxone(
    settings: Settings,
    stack: AsyncExitStack,
    *,
    tuning: Tuning,
    health: HealthState,
    replay: bool = False,
    write_fence: WriteFence | None = None,
    on_abandoned_write: Callable[[str], None] | None = None,
) -> Cxone:
    """Build the SCIM client stack (HTTP, tokens, limiter, breaker); closed with `stack`.

    `replay` paces in the replay's share of a configured ceiling instead of the group's.
    """
    http = build_http_client(
        settings.cxone_http_transport,
        timeout=settings.cxone_request_timeout_seconds,
        max_connections=settings.sync_max_concurrency * 2,
    )
    stack.push_async_callback(http.aclose)
    tokens = token_provider(settings, http, backoff=tuning.token_backoff)
    await _first_token(tokens)
    health.auth_failed_probe = lambda: tokens.credentials_rejected

    def circuit_changed(is_open: bool) -> None:
        health.circuit_open = is_open
        log.warning("circuit.open") if is_open else log.info("circuit.closed")

    circuit = CircuitBreaker(
        on_change=circuit_changed, probe_interval=tuning.circuit_probe_interval
    )
    stack.push_async_callback(circuit.aclose)
    limiter = build_limiter(
        settings.sync_rate_limit_per_minute, settings.sync_replay_rate_share, replay=replay
    )
    scim = ScimClient(
        settings.cxone_scim_base_url,
        http,
        auth=CxoneAuth(tokens),
        limiter=limiter,
        circuit=circuit,
        retry=tuning.retry,
        write_fence=write_fence,
        on_abandoned_write=on_abandoned_write,
    )
    # The breaker probes on its own timer, so an outage ends for it even when no work is left
    # to try (partitions paused, in-flight work cancelled by a rebalance).
    circuit.probe_with(scim.probe)
    return Cxone(scim, circuit, limiter)


async def run_service(
    settings: Settings,
    stop: asyncio.Event,
    *,
    tuning: Tuning | None = None,
    health: HealthState | None = None,
    mode: Mode = Mode.LIVE,
) -> None:
    """Run the consumer until `stop` is set; returns after in-flight work is finished.

    A stop during start-up is honoured at once; after it, the stream gets
    `SYNC_SHUTDOWN_GRACE_SECONDS` for in-flight work plus its final commit, and closing the
    clients gets `CLOSE_BUDGET_SECONDS` more, all told.
    """
    tuning = tuning or Tuning()
    health = health or HealthState()
    policy = load_policy(settings.policy_file)
    instrument_retries()
    instrument_kafka_retries()
    client_id = f"cxone-role-sync-{socket.gethostname()}"

    closers = _Closers()
    try:
        gate = build_gate(policy, dry_run=settings.sync_dry_run)
        closers.push("mass-revocation gate", gate.aclose)
        # Health first: liveness must answer while the broker or CXone is still slow to reach.
        server = HealthServer(
            health,
            host=tuning.metrics_host or settings.metrics_host,
            port=settings.metrics_port,
            release_guard=gate.release,
            admin_token=settings.admin_token,
        )
        await _start_health(server, settings.metrics_port)
        closers.push("health server", server.stop)
        health.guard_tripped_probe = lambda: gate.tripped
        health.guard_status_probe = gate.status

        # No write unless a heartbeat proved this member still owns its partitions, less a
        # heartbeat interval for the time a write takes to reach CXone.
        lease = MembershipLease(
            session_timeout=tuning.session_timeout_ms / 1000,
            margin=tuning.heartbeat_interval_ms / 1000,
        )
        # A request lives at most its timeout after the service gave up on it (so twice the
        # timeout after it was sent): then its users are read again (see stream/settle.py).
        late_writes: LateWriteWatch[WorkItem] = LateWriteWatch(
            2 * settings.cxone_request_timeout_seconds
        )
        stack = AsyncExitStack()
        closers.push("CXone and webhook clients", stack.aclose)
        cxone = await _unless_stopped(
            stop,
            open_cxone(
                settings,
                stack,
                tuning=tuning,
                health=health,
                write_fence=lease,
                on_abandoned_write=late_writes.abandoned,
            ),
        )
        synchronizer = Synchronizer(
            policy,
            cxone.scim,
            dry_run=settings.sync_dry_run,
            gate=gate,
            approval_key=settings.approval_hmac_key,
        )
        circuit = cxone.circuit
        webhook = await _unless_stopped(stop, _open_webhook(settings, stack))
        limits = replace(
            tuning.limits or FlowLimits(),
            shutdown_grace=settings.sync_shutdown_grace_seconds,
            max_uncommitted=settings.sync_max_uncommitted_per_partition,
        )

        await _unless_stopped(stop, verify_broker_tls(settings))
        await _unless_stopped(stop, verify_broker_credentials(settings))
        producer, broker = await _unless_stopped(
            stop,
            _reach_broker(
                settings,
                client_id=client_id,
                request_timeout_ms=tuning.producer_request_timeout_ms,
            ),
        )
        closers.push("producer", producer.stop)
        publisher = AuditPublisher(
            producer,
            audit_topic=settings.kafka_audit_topic,
            dlq_topic=settings.kafka_dlq_topic,
            max_record_bytes=settings.kafka_max_record_bytes,
            policy=tuning.delivery,
        )
        health.publish_blocked_probe = lambda: publisher.blocked
        if policy.mass_revocation_guard is not None and not settings.sync_dry_run:
            await _unless_stopped(stop, _share_guard_window(settings, producer, gate))

        kafka = AIOKafkaConsumer(
            **connection_options(settings),
            client_id=client_id,
            group_id=settings.kafka_group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=INPUT_ISOLATION_LEVEL,
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

        share = AssignmentShare(kafka, settings.kafka_input_topic, limiter=cxone.limiter, gate=gate)

        def assignment_changed(assignment: frozenset[TopicPartition]) -> None:
            health.joined = True
            share.on_assignment(assignment)
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
            broker=broker,
            lease=lease,
            late_writes=late_writes,
        )
        lag = LagRefresher(kafka, committed=stream.committed, interval=tuning.lag_interval)
        kafka.subscribe([settings.kafka_input_topic], listener=stream.rebalance_listener())
        closers.push("consumer", kafka.stop)
        await _start_consumer(kafka, settings, stop)
        lease.watch(kafka)

        await lag.start()
        closers.push("lag refresher", lag.stop)

        log.info(
            "service.started",
            version=__version__,
            topic=settings.kafka_input_topic,
            group=settings.kafka_group_id,
            dry_run=settings.sync_dry_run,
            metrics_port=server.port,
            policy_file=str(settings.policy_file),
            policy_sha256=policy.sha256,
        )
        try:
            await stream.run(stop)
        except KafkaError as error:
            refused = access_refused(error, settings)
            if refused is None:
                raise
            raise refused from None
    except _Stopped:
        log.info("service.stopped_during_startup")
    finally:
        await closers.close_all(within=CLOSE_BUDGET_SECONDS)


async def _share_guard_window(
    settings: Settings, producer: AIOKafkaProducer, gate: RevocationGate
) -> None:
    """Keep the guard's window on the guard topic, so the group shares one budget."""
    connection = connection_options(settings)
    await ensure_ledger_topic(connection, settings.kafka_guard_topic)
    gate.use_ledger(
        GuardLedger(
            producer,
            connection=connection,
            topic=settings.kafka_guard_topic,
            group_id=settings.kafka_group_id,
            input_topic=settings.kafka_input_topic,
        )
    )


async def _start_consumer(kafka: AIOKafkaConsumer, settings: Settings, stop: asyncio.Event) -> None:
    """Join the group; once the producer reached the broker, a failure here is one line."""
    try:
        await _unless_stopped(stop, kafka.start())
    except KafkaError as error:
        refused = access_refused(error, settings)
        if refused is not None:
            raise refused from None
        raise ConfigurationError(
            f"start-up error: the consumer could not join through KAFKA_BOOTSTRAP_SERVERS "
            f"{settings.kafka_bootstrap_servers}: {type(error).__name__}"
        ) from None


# Closing the clients after the stream stopped (leaving the group, flushing the webhook): the
# process ends within SYNC_SHUTDOWN_GRACE_SECONDS + the stream's final commit + this.
CLOSE_BUDGET_SECONDS = 3.0
CLOSE_FLOOR_SECONDS = 0.2

T = TypeVar("T")


class _Stopped(Exception):
    """The stop signal came while the service was still starting."""


async def _unless_stopped(stop: asyncio.Event, work: Awaitable[T]) -> T:
    """Await `work`, abandoning it the moment `stop` is set: a signal during start-up wins."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        stopping.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise _Stopped


class _Closers:
    """What start-up opened, closed newest first within one budget however each one behaves."""

    def __init__(self) -> None:
        self._closers: list[tuple[str, Callable[[], Awaitable[object]]]] = []

    def push(self, what: str, close: Callable[[], Awaitable[object]]) -> None:
        """Close `close` at the end, before everything pushed earlier."""
        self._closers.append((what, close))

    async def close_all(self, *, within: float) -> None:
        """Close everything; one that overruns what is left of `within` is abandoned."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self._closers:
            what, close = self._closers.pop()
            try:
                # Past the budget, each one left still gets a moment (releasing a port is quick).
                async with asyncio.timeout(max(deadline - loop.time(), CLOSE_FLOOR_SECONDS)):
                    await close()
            except TimeoutError:
                log.warning("service.close_timed_out", what=what)
            except Exception as error:
                log.warning("service.close_failed", what=what, error=type(error).__name__)


async def _start_health(server: HealthServer, port: int) -> None:
    """Bind the metrics port; a port that cannot be bound is a start-up error of one line."""
    try:
        await server.start()
    except OSError as error:
        why = "already in use" if error.errno == errno.EADDRINUSE else error.strerror
        raise ConfigurationError(
            f"configuration error: METRICS_PORT: cannot listen on {server.host}:{port}: {why}"
        ) from None


class _BootstrapNoise(logging.Filter):
    """Drops aiokafka's own line for a failed bootstrap; `kafka.unreachable` says it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith('Unable connect to "')


async def _reach_broker(
    settings: Settings, *, client_id: str, request_timeout_ms: int
) -> tuple[AIOKafkaProducer, BrokerProfile]:
    """Profile the broker and start the producer, retrying an unreachable broker with backoff
    (one WARNING per try)."""
    noise = _BootstrapNoise()
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.addFilter(noise)
    try:
        return await _start_producer(
            settings, client_id=client_id, request_timeout_ms=request_timeout_ms
        )
    finally:
        aiokafka_log.removeFilter(noise)


async def _start_producer(
    settings: Settings, *, client_id: str, request_timeout_ms: int
) -> tuple[AIOKafkaProducer, BrokerProfile]:
    attempts = 0
    # A broker that drops the connection after the login (a token that expired since start-up)
    # leaves aiokafka with no node to ask: not reachable either.
    unreachable = (KafkaConnectionError, NodeNotReadyError)
    async for attempt in stamina.retry_context(
        on=unreachable,
        attempts=None,
        timeout=None,
        wait_initial=BROKER_RETRY_INITIAL_SECONDS,
        wait_max=BROKER_RETRY_MAX_SECONDS,
    ):
        with attempt:
            attempts += 1
            log.info(
                "kafka.connecting",
                bootstrap_servers=settings.kafka_bootstrap_servers,
                attempt=attempts,
            )
            producer: AIOKafkaProducer | None = None
            try:
                producer, profile = await producer_for_broker(
                    settings, client_id=client_id, request_timeout_ms=request_timeout_ms
                )
                await producer.start()
            except unreachable as error:
                if producer is not None:
                    await producer.stop()
                log.warning(
                    "kafka.unreachable",
                    bootstrap_servers=settings.kafka_bootstrap_servers,
                    attempt=attempts,
                    error=str(error),
                )
                raise
            return producer, profile
    raise AssertionError("unreachable: the broker retry has no limit")


BROKER_RETRY_INITIAL_SECONDS = 1.0
BROKER_RETRY_MAX_SECONDS = 30.0


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
    """Fetch a token at start-up: refused credentials or scopes stop here; trouble only warns."""
    try:
        await tokens.token()
    except CredentialsRejected as error:
        # A wrong secret is a typo to fix, not a fault to wait out.
        raise ConfigurationError(f"configuration error: {error}") from None
    except SyncError as error:
        log.warning("auth.startup_token_failed", error=str(error), retriable=error.retriable)
