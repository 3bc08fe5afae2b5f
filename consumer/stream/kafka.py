"""aiokafka client options from the settings, and every broker-specific workaround, in one place."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import os
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import AbstractTokenProvider
from aiokafka.errors import KafkaError
from stamina.instrumentation import RetryDetails

from consumer.broker_address import parse_broker_addresses
from consumer.errors import ConfigurationError
from consumer.observability.retries import install_retry_hook
from consumer.settings import SaslMechanism, SecurityProtocol, Settings
from consumer.stream.broker_profile import BrokerProfile, probe_broker

log = structlog.get_logger(__name__)

TLS_PROTOCOLS = frozenset({SecurityProtocol.SSL, SecurityProtocol.SASL_SSL})

DEFAULT_MAX_REQUEST_SIZE = 1_048_576
"""aiokafka's default `max_request_size`."""

INPUT_ISOLATION_LEVEL = "read_committed"
"""The input topic is read up to the last stable offset: an aborted transaction's event is
never seen, an open one's not before it commits (aiokafka's default reads uncommitted)."""


def connection_options(settings: Settings) -> dict[str, Any]:
    """Bootstrap servers, TLS and SASL options shared by consumers, producers and admin clients."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": protocol.value,
    }
    if protocol in TLS_PROTOCOLS:
        options["ssl_context"] = ssl_context(settings)
    mechanism = settings.kafka_sasl_mechanism
    if mechanism is None or not protocol.startswith("SASL"):
        return options
    if protocol is SecurityProtocol.SASL_PLAINTEXT:
        _warn_cleartext(mechanism.value)
    options["sasl_mechanism"] = mechanism.value
    if mechanism is SaslMechanism.OAUTHBEARER:
        # Settings refuse OAUTHBEARER without a token file.
        assert settings.kafka_sasl_oauth_token_file is not None
        options["sasl_oauth_token_provider"] = FileTokenProvider(
            settings.kafka_sasl_oauth_token_file
        )
        return options
    options["sasl_plain_username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None:
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


@functools.cache
def _warn_cleartext(mechanism: str) -> None:
    # Once per process: every client built from the settings would say it again.
    log.warning(
        "kafka.sasl_plaintext",
        mechanism=mechanism,
        risk="SASL_PLAINTEXT sends the SASL credentials and every record in clear; use SASL_SSL",
    )


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context: the CA to trust, host-name verification on, the client certificate."""
    cafile = settings.kafka_ssl_cafile
    try:
        # Without a CA file the system's trust store decides.
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile else None
        )
    except (ssl.SSLError, OSError) as error:
        raise ConfigurationError(
            f"configuration error: KAFKA_SSL_CAFILE: {cafile} holds no usable CA certificate "
            f"({_reason(error)})"
        ) from None
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.kafka_ssl_certfile is not None:
        password = settings.kafka_ssl_key_password
        try:
            context.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(settings.kafka_ssl_keyfile),
                password=password.get_secret_value() if password else None,
            )
        except (ssl.SSLError, OSError) as error:
            raise ConfigurationError(
                "configuration error: KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE: cannot load the client "
                f"certificate {settings.kafka_ssl_certfile} with key {settings.kafka_ssl_keyfile} "
                f"(wrong KAFKA_SSL_KEY_PASSWORD, or not a matching PEM pair: {_reason(error)})"
            ) from None
    return context


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return str(error.verify_message)
    if isinstance(error, ssl.SSLError) and error.reason:
        return str(error.reason)
    if isinstance(error, OSError) and error.strerror:
        return str(error.strerror)
    return type(error).__name__


async def verify_broker_tls(settings: Settings, *, within: float = 10.0) -> None:
    """Refuse to start when a bootstrap broker's certificate does not verify.

    aiokafka only logs why a TLS connection failed and then reports the broker unreachable,
    which looks like an outage worth waiting for. A certificate that does not verify is a
    configuration error: it says so once, naming the setting, and the service stops. A broker
    that does not answer at all is left for the client's own retries.
    """
    if settings.kafka_security_protocol not in TLS_PROTOCOLS:
        return
    context = ssl_context(settings)
    for server in parse_broker_addresses(settings.kafka_bootstrap_servers):
        host, port = server.host, server.port
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=context, server_hostname=host), within
            )
        except ssl.SSLCertVerificationError as error:
            raise ConfigurationError(
                f"configuration error: KAFKA_SSL_CAFILE: the TLS certificate of broker "
                f"{host}:{port} does not verify ({_reason(error)}); check KAFKA_SSL_CAFILE and "
                "that the certificate names the host in KAFKA_BOOTSTRAP_SERVERS"
            ) from None
        except (OSError, TimeoutError):
            continue
        writer.close()
        # The broker may drop a connection that never spoke Kafka.
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


class FileTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """SASL OAUTHBEARER tokens from a file that something else keeps fresh; re-read on change.

    A token handed out after its `exp` (read from a JWT's claims, unverified: the broker checks
    them) is logged once per version of the file (`kafka.oauth_token_expired`, never the token):
    aiokafka does not report a rejected token, the broker just drops the connection after it.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._stamp: tuple[int, int] | None = None
        self._token = ""
        # The `exp` of the file's token until its expiry has been logged, then None.
        self._expires_at: float | None = None

    async def token(self) -> str:
        """The token in the file now (whitespace stripped), read again only when it changed."""
        try:
            status = os.stat(self._path)
            stamp = (status.st_mtime_ns, status.st_size)
            if stamp != self._stamp:
                self._token = self._path.read_text(encoding="utf-8").strip()
                self._stamp = stamp
                self._expires_at = _jwt_expiry(self._token)
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigurationError(
                f"configuration error: KAFKA_SASL_OAUTH_TOKEN_FILE: cannot read {self._path} "
                f"({_reason(error)})"
            ) from None
        if not self._token:
            raise ConfigurationError(
                f"configuration error: KAFKA_SASL_OAUTH_TOKEN_FILE: {self._path} is empty"
            )
        expires_at = self._expires_at
        if expires_at is not None and expires_at <= self._clock():
            self._expires_at = None
            log.warning(
                "kafka.oauth_token_expired",
                token_file=str(self._path),
                expired_at=datetime.fromtimestamp(expires_at, UTC).isoformat(),
            )
        return self._token


def _jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (seconds since the epoch), or None for any other token."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    expiry = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(expiry, bool) or not isinstance(expiry, int | float):
        return None
    # Within what a datetime can show: year 1 to 9999.
    return float(expiry) if -62_135_596_800 <= expiry <= 253_402_300_799 else None


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer; aiokafka's own cancelled background task is not our cancellation.

    A group-less consumer stopped before it was assigned anything re-raises the
    CancelledError of its internal committed-offset routine, which would hide why it stops.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


def build_producer(
    settings: Settings,
    *,
    client_id: str,
    idempotence: bool,
    request_timeout_ms: int = 30_000,
) -> AIOKafkaProducer:
    """A producer whose sends resolve only once every in-sync replica has the record.

    `idempotence` is `BrokerProfile.idempotence` (`broker_profile.probe_broker`): on where the
    broker grants producer ids, so a retried batch is written once and in order; off on a broker
    that cannot (Tansu 0.6). Ordering per key holds without it too, because each key has at most
    one result in flight (the dispatcher runs one event per user at a time).

    Dead letters are cut to `KAFKA_MAX_RECORD_BYTES` and audit events carry only bounded fields,
    so a request of that size (never below Kafka's default 1 MiB) carries anything it sends.
    """
    return AIOKafkaProducer(
        **connection_options(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=idempotence,
        linger_ms=5,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=200,
        max_request_size=max(settings.kafka_max_record_bytes, DEFAULT_MAX_REQUEST_SIZE),
    )


async def producer_for_broker(
    settings: Settings, *, client_id: str, request_timeout_ms: int = 30_000
) -> tuple[AIOKafkaProducer, BrokerProfile]:
    """Profile the broker (`probe_broker`), then build a producer that fits it (not started)."""
    profile = await probe_broker(connection_options(settings))
    producer = build_producer(
        settings,
        client_id=client_id,
        idempotence=profile.idempotence,
        request_timeout_ms=request_timeout_ms,
    )
    return producer, profile


def fetch_positions(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
    """The fetch position of each assigned partition that has one, read without waiting.

    Past every record `getmany` returned, and past the transaction markers and aborted records
    it skipped, which no record shows. aiokafka's `position()` may wait for a reset, so the
    position is read from its assignment state.
    """
    state_of_subscription = getattr(consumer, "_subscription", None)  # None in test doubles
    assignment = state_of_subscription.subscription if state_of_subscription else None
    if assignment is None or assignment.assignment is None:
        return {}
    state = assignment.assignment
    positions: dict[TopicPartition, int] = {}
    for tp in state.tps:
        tp_state = state.state_value(tp)
        if tp_state is not None and tp_state.has_valid_position:
            positions[tp] = int(tp_state.position)
    return positions


async def partitions_of(
    consumer: AIOKafkaConsumer, topic: str, *, within: float = 15.0
) -> list[int]:
    """A topic's partition numbers, waiting (bounded) for metadata a new topic may still lack.

    A consumer outside any group starts with no topic's metadata on Apache Kafka (an empty
    Metadata request names no topic there), and `consumer.topics()` keeps only the names of
    what it fetches: the partitions are read from a full metadata fetch of its client.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        found = consumer.partitions_for_topic(topic)
        if not found:
            cluster = await consumer._client.fetch_all_metadata()
            found = cluster.partitions_for_topic(topic)
        if found:
            return sorted(found)
        if loop.time() > deadline:
            raise ConfigurationError(f"topic {topic} does not exist or has no partitions")
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class LogEnd:
    """A partition's end as the broker reported it, and on an undercounting broker when.

    On Apache Kafka the offset alone decides (`taken_ms` is None). Tansu 0.6 reports the base
    offset of the last batch + 1, so records of that batch past the reported offset were
    already there: there a record belongs before the end when its offset is below it or it was
    written no later than the instant the end was taken (`taken_ms`, epoch ms).
    """

    offset: int
    taken_ms: int | None = None

    def holds(self, offset: int, timestamp_ms: int) -> bool:
        """Whether the record at `offset`, written at `timestamp_ms`, was there at this end."""
        if offset < self.offset:
            return True
        return self.taken_ms is not None and timestamp_ms <= self.taken_ms


async def log_ends(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition], profile: BrokerProfile
) -> dict[TopicPartition, LogEnd]:
    """The end of each partition now; through the undercount where the broker has it."""
    chosen = list(partitions)
    if not chosen:
        return {}
    # Taken before asking: a record written before this instant was there when the ends were.
    taken_ms = int(time.time() * 1000) if profile.end_undercounted else None
    ends = await consumer.end_offsets(chosen)
    return {tp: LogEnd(ends[tp], taken_ms) for tp in chosen}


def log_kafka_retry(details: RetryDetails) -> None:
    """stamina hook of the Kafka subsystem: a publish or a connection to the brokers retried."""
    log.info(
        "kafka.retry",
        retry=details.retry_num,
        wait_seconds=round(details.wait_for, 3),
        error=type(details.caused_by).__name__,
    )


def instrument_kafka_retries() -> None:
    """Log the Kafka clients' retries under this module; called once at start-up."""
    install_retry_hook("kafka", (KafkaError,), log_kafka_retry)
