"""aiokafka client options from the settings, and every broker-specific workaround, in one place."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from consumer.errors import ConfigurationError
from consumer.settings import SecurityProtocol, Settings

DEFAULT_MAX_REQUEST_SIZE = 1_048_576
"""aiokafka's default `max_request_size`."""


def connection_options(settings: Settings) -> dict[str, Any]:
    """Bootstrap servers, TLS and SASL options shared by consumers, producers and admin clients."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol.value,
    }
    if settings.kafka_security_protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL):
        options["ssl_context"] = _ssl_context(settings)
    if settings.kafka_sasl_mechanism is not None:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism.value
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    context: ssl.SSLContext = create_ssl_context(cafile=cafile)
    return context


def build_producer(
    settings: Settings, *, client_id: str, request_timeout_ms: int = 30_000
) -> AIOKafkaProducer:
    """A producer whose sends resolve only once every in-sync replica has the record.

    Idempotence stays off: some Kafka-protocol brokers (Tansu 0.6) do not implement the
    idempotent producer's InitProducerId. Ordering per key holds without it because each key
    has at most one result in flight (the dispatcher runs one event per user at a time).

    Dead letters are cut to `KAFKA_MAX_RECORD_BYTES` and audit events carry only bounded fields,
    so a request of that size (never below Kafka's default 1 MiB) carries anything it sends.
    """
    return AIOKafkaProducer(
        **connection_options(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=200,
        max_request_size=max(settings.kafka_max_record_bytes, DEFAULT_MAX_REQUEST_SIZE),
    )


async def partitions_of(
    consumer: AIOKafkaConsumer, topic: str, *, within: float = 15.0
) -> list[int]:
    """A topic's partition numbers, waiting (bounded) for metadata a new topic may still lack."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return sorted(found)
        if loop.time() > deadline:
            raise ConfigurationError(f"topic {topic} does not exist or has no partitions")
        await consumer.topics()
        await asyncio.sleep(0.05)
