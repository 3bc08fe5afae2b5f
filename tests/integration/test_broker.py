"""The test broker, shared and embedded: produce, consume, create topics, freeze and thaw."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumer.sandbox.broker import EmbeddedBroker, kafka_answers
from tests.conftest import BrokerEndpoint, Topics

pytestmark = pytest.mark.core
"""Runs on every broker of the session: Kafka 4.x, Tansu and Kafka 3.9."""


async def consume(
    bootstrap_servers: str, topic: str, count: int, within: float = 10.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read `count` records of every partition of a topic from the beginning, within a deadline.

    No consumer group: joining one on Tansu takes half the session timeout.
    """
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap_servers, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(within):
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=200)
                for batch in batches.values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_session_broker_round_trips_a_record(broker: BrokerEndpoint, topics: Topics) -> None:
    """A keyed record produced to a fresh topic is consumed back with its key and headers."""
    [topic] = await topics.create("roundtrip", partitions=3)
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap_servers,
        enable_idempotence=broker.supports_idempotence,
    )
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            topic, b'{"hello": 1}', key=b"u-1001", headers=[("x-trace", b"abc")]
        )
    finally:
        await producer.stop()
    [record] = await consume(broker.bootstrap_servers, topic, 1)
    assert (record.key, record.value) == (b"u-1001", b'{"hello": 1}')
    assert list(record.headers) == [("x-trace", b"abc")]
    assert (record.partition, record.offset) == (sent.partition, sent.offset)


async def test_topics_are_created_with_their_partitions(
    broker: BrokerEndpoint, topics: Topics
) -> None:
    """`topics.create` makes unique topics with the requested partition count, idempotently."""
    input_topic, audit_topic = await topics.create("input", "audit", partitions=3)
    assert input_topic != audit_topic
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([input_topic])
    finally:
        await admin.close()
    assert len(described[0]["partitions"]) == 3


async def test_embedded_broker_starts_serves_and_stops(embedded_broker: EmbeddedBroker) -> None:
    """The embedded broker answers Kafka on its port while running, and nothing after stop."""
    host, port = embedded_broker.host, embedded_broker.port
    assert embedded_broker.bootstrap_servers == f"{host}:{port}"
    await embedded_broker.create_topics(["events"], partitions=2)
    producer = AIOKafkaProducer(
        bootstrap_servers=embedded_broker.bootstrap_servers, enable_idempotence=False
    )
    await producer.start()
    try:
        for index in range(5):
            await producer.send("events", f"e{index}".encode(), partition=1)
        await producer.flush()
    finally:
        await producer.stop()
    records = await consume(embedded_broker.bootstrap_servers, "events", 5)
    assert [r.value for r in records] == [b"e0", b"e1", b"e2", b"e3", b"e4"]
    await asyncio.to_thread(embedded_broker.stop)
    assert embedded_broker.process is None
    assert not kafka_answers(host, port, timeout=0.5)


async def test_embedded_broker_can_be_frozen_and_thawed(embedded_broker: EmbeddedBroker) -> None:
    """A SIGSTOPped broker answers nothing; after SIGCONT it serves again."""
    assert embedded_broker.pid > 0
    embedded_broker.suspend()
    try:
        assert not await asyncio.to_thread(
            kafka_answers, embedded_broker.host, embedded_broker.port, 0.3
        )
    finally:
        embedded_broker.resume()
    assert await asyncio.to_thread(kafka_answers, embedded_broker.host, embedded_broker.port)


async def test_fetch_positions_count_every_record_of_a_batch(
    embedded_broker: EmbeddedBroker,
) -> None:
    """On Tansu, positions after fetching count each record, which lag computation relies on."""
    await embedded_broker.create_topics(["batched"])
    producer = AIOKafkaProducer(
        bootstrap_servers=embedded_broker.bootstrap_servers,
        enable_idempotence=False,
        linger_ms=100,
    )
    await producer.start()
    try:
        # One linger window, one partition: these travel as a single batch.
        sent = [await producer.send("batched", f"r{i}".encode(), partition=0) for i in range(6)]
        offsets = [(await future).offset for future in sent]
    finally:
        await producer.stop()
    assert offsets == [0, 1, 2, 3, 4, 5]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=embedded_broker.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partition = TopicPartition("batched", 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        records = await consumer.getmany(partition, timeout_ms=2000)
        assert len(records[partition]) == 6
        assert await consumer.position(partition) == 6
        assert consumer.highwater(partition) == 6
    finally:
        await consumer.stop()
