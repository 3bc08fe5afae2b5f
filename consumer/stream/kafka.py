"""aiokafka client options from the settings, and every broker-specific workaround, in one place."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from consumer.errors import ConfigurationError
from consumer.settings import SecurityProtocol, Settings


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


def build_producer(settings: Settings, *, client_id: str) -> AIOKafkaProducer:
    """A producer whose sends resolve only once every in-sync replica has the record.

    Idempotence stays off: some Kafka-protocol brokers (Tansu 0.6) do not implement the
    idempotent producer's InitProducerId. Ordering per key holds without it because each key
    has at most one result in flight (the dispatcher runs one event per user at a time).
    """
    return AIOKafkaProducer(
        **connection_options(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        request_timeout_ms=30_000,
        retry_backoff_ms=200,
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
