"""The service's producer is idempotent where the broker grants producer ids, and not on Tansu.

What the broker stored is read from its segment files: every batch of the audit and
dead-letter topics carries a producer id and sequence numbers, so a batch retried after a lost
acknowledgement is written once. Tansu answers InitProducerId with an unknown server error, so
against it the profile turns idempotence off (and allows for its undercounted ends).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from consumer.sandbox.broker import EmbeddedBroker
from consumer.sandbox.feed import AuditReader, produce
from consumer.sandbox.server import SimulatorServer
from consumer.stream.broker_profile import APACHE_KAFKA, TANSU, probe_broker
from tests.apache_kafka.cluster import KafkaCluster
from tests.conftest import ClusterFactory, Topics
from tests.integration.harness import make_pipeline, running_service
from tests.integration.test_pipeline import role_change

WITHIN = 60.0


@dataclass(frozen=True)
class StoredBatch:
    """The producer fields of one record batch as the broker stored it."""

    producer_id: int
    producer_epoch: int
    base_sequence: int
    transactional: bool


def stored_batches(cluster: KafkaCluster, topic: str) -> list[StoredBatch]:
    """Every record batch of `topic`-0 in the broker's segment files (record batch format v2).

    A batch: base offset (int64), length (int32), then leader epoch (int32), magic (int8),
    CRC (uint32), attributes (int16, bit 4 transactional), last offset delta (int32), two
    timestamps (int64), producer id (int64), producer epoch (int16), base sequence (int32)...
    """
    batches = []
    folder = cluster.node(1).directory / "data" / f"{topic}-0"
    for segment in sorted(folder.glob("*.log")):
        data = segment.read_bytes()
        at = 0
        while at + 12 <= len(data):
            (length,) = struct.unpack_from(">i", data, at + 8)
            magic = data[at + 16]
            assert magic == 2, f"record batch format v{magic} in {segment.name}"
            (attributes,) = struct.unpack_from(">h", data, at + 21)
            producer_id, epoch, sequence = struct.unpack_from(">qhi", data, at + 43)
            batches.append(StoredBatch(producer_id, epoch, sequence, bool(attributes & 0x10)))
            at += 12 + length
    return batches


async def test_audit_and_dead_letters_are_written_by_an_idempotent_producer(
    kafka_clusters: ClusterFactory, simulator_server: SimulatorServer
) -> None:
    """On Apache Kafka every audit and dead-letter batch carries a producer id, not -1."""
    cluster = kafka_clusters()
    assert await probe_broker({"bootstrap_servers": cluster.bootstrap_servers()}) == APACHE_KAFKA
    simulator_server.simulator.seed_user("u-1", "u-1@example.com")
    topics = Topics(cluster.bootstrap_servers(), "idempotence")
    pipeline = await make_pipeline(topics, simulator_server)
    async with (
        running_service(pipeline.settings()) as service,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await produce(
            pipeline.bootstrap_servers,
            pipeline.input_topic,
            [
                (b"u-1", role_change("u-1", "agent_voice", event_id="evt-ok")),
                (b"u-1", b"{not json"),
            ],
        )
        await audit.wait_for_results(2, within=WITHIN)
        await service.shutdown()
    audit_batches = stored_batches(cluster, pipeline.audit_topic)
    letter_batches = stored_batches(cluster, pipeline.dlq_topic)
    assert audit_batches
    assert letter_batches
    for batch in audit_batches + letter_batches:
        assert batch.producer_id >= 0
        assert batch.producer_epoch >= 0
        assert batch.base_sequence >= 0
        assert not batch.transactional


async def test_tansu_is_profiled_without_idempotence_and_with_undercounted_ends(
    embedded_broker: EmbeddedBroker,
) -> None:
    """Tansu's answer to InitProducerId gives the one profile its workarounds key off."""
    profile = await probe_broker({"bootstrap_servers": embedded_broker.bootstrap_servers})
    assert profile == TANSU
    assert (profile.idempotence, profile.end_undercounted) == (False, True)
