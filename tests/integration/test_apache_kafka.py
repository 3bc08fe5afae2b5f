"""The Apache Kafka launcher: a node that crashes restarts with its data; a bad one says why;
without Java the session says so in one line and runs on Tansu."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from consumer.sandbox.topics import create_topics
from tests.apache_kafka.node import KafkaNodeError
from tests.conftest import ClusterFactory
from tests.integration.harness import ROOT
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


def test_without_java_the_run_says_so_in_one_line_and_names_tansu(tmp_path: Path) -> None:
    """A session on a PATH without java starts with one line and ends naming the brokers."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "from tests.conftest import BrokerEndpoint\n\n"
        "def test_probe(broker: BrokerEndpoint) -> None:\n"
        "    assert broker.kind == 'tansu'\n"
    )
    environment = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    environment.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
            "-p",
            "tests.conftest",
            str(probe),
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = result.stdout.splitlines()
    notes = [line for line in lines if "Apache Kafka not available" in line]
    assert result.returncode == 0, result.stdout[-2000:]
    assert notes == [
        "Apache Kafka not available (no java on PATH): the integration tests run on Tansu"
    ]
    assert lines[-2] == "brokers used: tansu (1 tests)"
