"""The Apache Kafka launcher: a node that crashes restarts with its data; a bad one says why."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from consumer.sandbox.topics import create_topics
from tests.apache_kafka.node import KafkaNodeError
from tests.conftest import ClusterFactory
from tests.integration.test_broker import consume


async def test_a_killed_node_restarts_with_its_records(
    kafka_clusters: ClusterFactory, record_property: pytest.RecordProperty
) -> None:
    """A record acknowledged before SIGKILL is read back after the node restarts on its data."""
    cluster = kafka_clusters()
    record_property("started_in_s", round(cluster.started_in or 0.0, 2))
    record_property("rss_mib", cluster.rss_bytes() // 2**20)
    await create_topics(cluster.bootstrap_servers(), ["kept"], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap_servers(), acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait("kept", b"before the crash", key=b"u-1")
    finally:
        await producer.stop()
    node = cluster.node(1)
    node.kill()
    assert not node.running
    cluster.start()
    [record] = await consume(cluster.bootstrap_servers(), "kept", 1, within=60.0)
    assert (record.offset, record.value) == (sent.offset, b"before the crash")
    assert "Kafka Server started" in node.log_tail(400)


def test_a_node_that_cannot_start_fails_with_its_output(kafka_clusters: ClusterFactory) -> None:
    """A broker setting Kafka refuses stops the start with the storage tool's own reason."""
    with pytest.raises(
        KafkaNodeError, match=r"(?s)formatting the Kafka cluster failed.*Invalid value not-a-number"
    ):
        kafka_clusters(properties={"node.id": "not-a-number"})
