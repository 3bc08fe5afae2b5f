"""Tests of the Apache Kafka launcher's configuration, without Java: POMs, properties, ids."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from tests.apache_kafka.cluster import base_properties, new_cluster_id
from tests.apache_kafka.node import render_properties
from tests.apache_kafka.release import KAFKA_3, KAFKA_4, java_major, missing_tools


def test_each_release_pom_adds_its_own_logging_binding() -> None:
    """Kafka 4.x gets log4j 2 (slf4j 1.7 binding); 3.9 gets reload4j, as the releases ship."""
    assert "<artifactId>log4j-slf4j-impl</artifactId>" in KAFKA_4.pom()
    assert "<artifactId>kafka_2.13</artifactId><version>4.4.0</version>" in KAFKA_4.pom()
    assert "reload4j" not in KAFKA_4.pom()
    assert "<artifactId>slf4j-reload4j</artifactId>" in KAFKA_3.pom()
    assert "log4j-core" not in KAFKA_3.pom()
    assert (KAFKA_4.log4j2, KAFKA_3.log4j2) == (True, False)


def test_a_cluster_id_is_16_bytes_of_url_safe_base64_without_padding() -> None:
    """Cluster ids decode to 16 bytes, carry no padding, differ, and never look like an option."""
    ids = {new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    for cluster_id in ids:
        assert "=" not in cluster_id
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


@pytest.mark.parametrize(("nodes", "replicas", "min_isr"), [(1, "1", "1"), (3, "3", "2")])
def test_internal_topics_are_replicated_over_the_nodes_there_are(
    nodes: int, replicas: str, min_isr: str
) -> None:
    """One node: replication 1 (else no group ever works); three: 3 with min ISR 2."""
    properties = base_properties(nodes)
    assert properties["offsets.topic.replication.factor"] == replicas
    assert properties["transaction.state.log.replication.factor"] == replicas
    assert properties["default.replication.factor"] == replicas
    assert properties["min.insync.replicas"] == min_isr
    assert properties["transaction.state.log.min.isr"] == min_isr
    assert properties["group.initial.rebalance.delay.ms"] == "0"


def test_properties_render_one_key_per_line_in_order() -> None:
    """A properties file lists each key=value on its own line, in the given order."""
    assert render_properties({"b": "2", "a": "x=y"}) == "b=2\na=x=y\n"


def _fake_java(tmp_path: Path, banner: str) -> None:
    program = tmp_path / "java"
    program.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(
    ("banner", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_402"', 8),
        ('openjdk version "21" 2023-09-19', 21),
    ],
)
def test_java_major_reads_the_version_banner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, banner: str, major: int
) -> None:
    """`java -version`'s banner gives the major version, old 1.x numbering included."""
    _fake_java(tmp_path, banner)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert java_major() == major


def test_an_old_java_or_no_maven_is_named_as_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Java 11 is refused as too old; Java 17 without mvn is refused for the missing Maven."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert missing_tools() == "no java on PATH"
    _fake_java(tmp_path, 'openjdk version "11.0.2"')
    assert missing_tools() == "java 11 on PATH, Kafka's broker needs 17"
    _fake_java(tmp_path, 'openjdk version "17.0.1"')
    assert missing_tools() == "no mvn (Maven) on PATH to fetch Kafka's jars"
