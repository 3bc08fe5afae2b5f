"""Hostile input and unpublishable records against the real broker, simulator and service.

A batch of the nastiest records a producer can send must cost the fetch loop so little that a
second member of the group never sees a rebalance; a dead letter too large for Kafka is cut to
fit; a record the broker refuses for good blocks only itself, and says so on /readyz.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import stamina
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.classify import hostile_records
from consumer.events import Outcome, SourcePosition, SyncResult
from consumer.observability.http import HealthServer, HealthState
from consumer.observability.metrics import REGISTRY
from consumer.sandbox.broker import EmbeddedBroker
from consumer.sandbox.feed import AuditReader, TopicReader
from consumer.sandbox.server import SimulatorServer
from consumer.stream.broker_profile import idempotence_at
from consumer.stream.kafka import producer_for_broker
from consumer.stream.publisher import AuditPublisher, DeadLetter, DeliveryPolicy
from tests.conftest import Topics
from tests.integration.harness import (
    ServiceProcess,
    fast_tuning,
    logged,
    make_pipeline,
    running_service,
    wait_until,
)
from tests.integration.test_pipeline import role_change
from tests.integration.test_stream_engine import wait_for_commits

MIB = 1 << 20
LARGE = {"max.message.bytes": str(8 * MIB)}
"""Topic settings for records above Kafka's default 1 MiB limit (Tansu has no limit)."""
WITHIN = 60.0
"""Seconds any one condition may take before a test fails; generous for a loaded machine."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def produce_to(
    bootstrap_servers: str, topic: str, partition: int, records: list[tuple[bytes, bytes]]
) -> None:
    """Produce records to one partition, in order, allowing records above 1 MiB."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=await idempotence_at(bootstrap_servers),
        max_request_size=8 * MIB,
    )
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value=value, key=key, partition=partition)
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def group_member(
    bootstrap_servers: str, group_id: str, topic: str
) -> AsyncIterator[AIOKafkaConsumer]:
    """A second member of the service's group that fetches (and ignores) what it is given."""
    member = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await member.start()
    stop = asyncio.Event()

    async def fetch() -> None:
        while not stop.is_set():
            await member.getmany(timeout_ms=200)

    task = asyncio.create_task(fetch())
    try:
        yield member
    finally:
        stop.set()
        await task
        await member.stop()


async def test_hostile_batch_passes_without_a_rebalance_and_the_next_record_syncs(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Every hostile record is audited invalid and dead-lettered, no rebalance, the next syncs."""
    simulator = simulator_server.simulator
    simulator.seed_user("u-after", "after@example.com", roles=[("agent_basic", None, True)])
    port = free_port()
    pipeline = await make_pipeline(
        topics, simulator_server, partitions=2, topic_configs=LARGE, METRICS_PORT=str(port)
    )
    hostile = hostile_records()
    service = ServiceProcess(pipeline.environment)
    health_answers: list[int] = []
    try:
        async with group_member(
            pipeline.bootstrap_servers, pipeline.group_id, pipeline.input_topic
        ) as member:
            await wait_until(lambda: bool(member.assignment()), within=WITHIN, what="the member")
            service.start()
            await wait_until(
                lambda: (
                    len(member.assignment()) == 1 and any(logged(service.output, "stream.assigned"))
                ),
                within=WITHIN,
                what="the group to split its two partitions",
            )
            [theirs] = member.assignment()
            ours = 1 - theirs.partition
            assigned = logged(service.output, "stream.assigned")
            assert assigned[-1]["partitions"] == [f"{pipeline.input_topic}/{ours}"]
            rebalances_before = (len(assigned), len(logged(service.output, "stream.revoked")))
            member_assignment = set(member.assignment())

            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                await wait_until_ready(client)
                probing = asyncio.Event()

                async def probe() -> None:
                    while not probing.is_set():
                        response = await client.get("/healthz", timeout=5.0)
                        health_answers.append(response.status_code)
                        await asyncio.sleep(0.1)  # probe interval, not a synchronisation

                prober = asyncio.create_task(probe())
                records = [
                    *hostile.values(),
                    (b"u-after", role_change("u-after", "agent_voice", event_id="evt-after")),
                ]
                await produce_to(pipeline.bootstrap_servers, pipeline.input_topic, ours, records)
                async with AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit:
                    results = await audit.wait_for_results(len(records), within=WITHIN)
                async with TopicReader(pipeline.bootstrap_servers, pipeline.dlq_topic) as dlq:
                    await dlq.wait_until(
                        lambda reader: len(reader.records) >= len(hostile),
                        within=WITHIN,
                        what="every hostile record in the DLQ",
                    )
                probing.set()
                await prober
            assert set(member.assignment()) == member_assignment
        rebalances_after = (
            len(logged(service.output, "stream.assigned")),
            len(logged(service.output, "stream.revoked")),
        )
    finally:
        service.close()

    assert rebalances_after == rebalances_before
    assert health_answers
    assert set(health_answers) == {200}
    by_offset = {
        offset: event.data for (partition, offset), event in results.items() if partition == ours
    }
    names = list(hostile)
    for offset, name in enumerate(names):
        data = by_offset[offset]
        assert (name, data.outcome) == (name, Outcome.INVALID)
    reasons = {name: by_offset[offset].reason for offset, name in enumerate(names)}
    assert reasons == {
        "roles_40k": "schema_violation",
        "nested_100k": "schema_violation",
        "string_1mib": "schema_violation",
        "random_bytes": "invalid_json",
        "duplicate_keys": "invalid_json",
        "above_limit": "too_large",
        "huge_key": "invalid_json",
    }
    assert by_offset[names.index("huge_key")].user_id is None
    assert by_offset[names.index("roles_40k")].user_id == "u-hostile"
    assert by_offset[len(names)].outcome is Outcome.SYNCED
    assert by_offset[len(names)].event_id == "evt-after"
    dead = {headers["x-source-offset"]: (headers, value) for _, value, headers in dlq.records}
    assert sorted(int(offset) for offset in dead) == list(range(len(names)))
    headers, value = dead[str(names.index("above_limit")).encode()]
    original = hostile["above_limit"][1]
    assert headers["x-error-reason"] == b"too_large"
    assert headers["x-truncated"] == b"true"
    assert headers["x-original-size"] == str(len(original)).encode()
    assert headers["x-original-sha256"] == hashlib.sha256(original).hexdigest().encode()
    assert value is not None
    assert original.startswith(value)


async def wait_until_ready(client: httpx.AsyncClient) -> None:
    """Wait until the service's /readyz answers 200."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/readyz")).status_code == 200:
                return
        if loop.time() > deadline:
            raise TimeoutError("the service never became ready")
        await asyncio.sleep(0.1)  # poll interval, not a synchronisation


async def test_a_record_the_broker_refuses_for_good_blocks_and_readyz_says_so(
    topics: Topics,
) -> None:
    """Publishing to a topic that cannot exist blocks that record only; /readyz says why."""
    [dlq_topic] = await topics.create("dlq")
    producer = AIOKafkaProducer(
        bootstrap_servers=topics.bootstrap_servers,
        acks="all",
        enable_idempotence=False,
        request_timeout_ms=1_000,
    )
    await producer.start()
    # Kafka topic names allow no spaces: the broker never has this topic, however long we wait.
    publisher = AuditPublisher(
        producer,
        audit_topic="no such topic!",
        dlq_topic=dlq_topic,
        policy=DeliveryPolicy(wait_initial=0.05, wait_max=0.2, blocked_wait=0.2),
    )
    state = HealthState()
    state.joined = True
    state.publish_blocked_probe = lambda: publisher.blocked
    blocked_before = REGISTRY.get_sample_value("cxone_sync_publish_blocked")
    letter = DeadLetter(dlq_topic, 0, 1, b"u-1", b"{", "invalid_json", "unexpected end")
    try:
        async with (
            HealthServer(state, host="127.0.0.1", port=0) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            assert (await client.get("/readyz")).status_code == 200
            stuck = asyncio.create_task(publisher.publish_result(_invalid_result(dlq_topic)))
            await wait_until(lambda: publisher.blocked, within=WITHIN, what="the block")
            response = await client.get("/readyz")
            assert (response.status_code, response.json()["reason"]) == (503, "publish_blocked")
            assert REGISTRY.get_sample_value("cxone_sync_publish_blocked") == blocked_before + 1
            # Other records still get through while that one waits.
            await asyncio.wait_for(publisher.publish_dead_letter(letter), WITHIN)
            assert not stuck.done()
            stuck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stuck
            assert publisher.blocked is False
            assert REGISTRY.get_sample_value("cxone_sync_publish_blocked") == blocked_before
            assert (await client.get("/readyz")).status_code == 200
    finally:
        await producer.stop()
    async with TopicReader(topics.bootstrap_servers, dlq_topic) as dlq:
        await dlq.wait_until(lambda reader: len(reader.records) == 1, within=WITHIN, what="letter")
    [(key, value, headers)] = dlq.records
    assert (key, value, headers["x-error-reason"]) == (b"u-1", b"{", b"invalid_json")


def _invalid_result(topic: str) -> SyncResult:
    """An invalid-record result to publish."""
    return SyncResult(
        event_id=None,
        user_id=None,
        outcome=Outcome.INVALID,
        reason="invalid_json",
        detail="unexpected end",
        source=SourcePosition(topic=topic, partition=0, offset=1),
        processed_at=datetime.now(UTC),
    )


async def test_a_dead_letter_the_broker_refuses_holds_its_partition_only(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A DLQ copy refused for good holds its partition's commit; the other partition goes on."""
    simulator = simulator_server.simulator
    for user_id in ("u-p0", "u-p1"):
        simulator.seed_user(user_id, f"{user_id}@example.com", roles=[("agent_basic", None, True)])
    # Kafka topic names allow no spaces: the broker never has this DLQ, however long we wait.
    pipeline = await make_pipeline(
        topics,
        simulator_server,
        partitions=2,
        KAFKA_DLQ_TOPIC="no such topic!",
        SYNC_SHUTDOWN_GRACE_SECONDS="1",
    )
    tuning = replace(
        fast_tuning(),
        delivery=DeliveryPolicy(wait_initial=0.05, wait_max=0.2, blocked_wait=0.5),
        producer_request_timeout_ms=1_000,
    )
    blocked_before = REGISTRY.get_sample_value("cxone_sync_publish_blocked")
    await produce_to(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        0,
        [
            (b"k-bad", b"{not json"),
            (b"u-p0", role_change("u-p0", "agent_voice", event_id="evt-p0")),
        ],
    )
    await produce_to(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        1,
        [(b"u-p1", role_change("u-p1", "agent_voice", event_id="evt-p1"))],
    )
    async with (
        running_service(pipeline.settings(), tuning=tuning) as service,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await audit.wait_until(
            lambda reader: {"evt-p0", "evt-p1"} <= {event.data.event_id for event in reader.events},
            within=WITHIN,
            what="both valid events audited",
        )
        await wait_until(
            lambda: service.health.not_ready_reason() == "publish_blocked",
            within=WITHIN,
            what="readiness to say publish_blocked",
        )
        assert REGISTRY.get_sample_value("cxone_sync_publish_blocked") == blocked_before + 1
        # A commit made after every later record of partition 0 finished still leaves it alone.
        await produce_to(
            pipeline.bootstrap_servers,
            pipeline.input_topic,
            1,
            [(b"u-p1", role_change("u-p1", "agent_digital", event_id="evt-p1b"))],
        )
        await audit.wait_until(
            lambda reader: "evt-p1b" in {event.data.event_id for event in reader.events},
            within=WITHIN,
            what="the later event audited",
        )
        commits = await wait_for_commits(
            pipeline.bootstrap_servers,
            pipeline.group_id,
            pipeline.input_topic,
            {0: None, 1: 2},
            within=WITHIN,
        )
        assert commits == {0: None, 1: 2}
        assert not service.task.done()
        await service.shutdown()
    assert REGISTRY.get_sample_value("cxone_sync_publish_blocked") == blocked_before
    outcomes = {event.data.event_id: event.data.outcome for event in audit.events}
    assert outcomes == {
        "evt-p0": Outcome.SYNCED,
        "evt-p1": Outcome.SYNCED,
        "evt-p1b": Outcome.SYNCED,
    }


async def test_the_service_producer_carries_every_dead_letter_it_builds(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """At the default limit a 2 MiB letter is cut to fit; at 4 MiB a 3 MiB one goes whole."""
    pipeline = await make_pipeline(topics, simulator_server, topic_configs=LARGE)
    originals = {
        MIB: random.Random(1).randbytes(2 * MIB),
        4 * MIB: random.Random(2).randbytes(3 * MIB),
    }
    for limit, original in originals.items():
        settings = pipeline.settings(kafka_max_record_bytes=limit)
        producer, _ = await producer_for_broker(settings, client_id="test")
        await producer.start()
        try:
            publisher = AuditPublisher(
                producer,
                audit_topic=pipeline.audit_topic,
                dlq_topic=pipeline.dlq_topic,
                max_record_bytes=settings.kafka_max_record_bytes,
            )
            letter = DeadLetter("in", 0, limit, b"u-1", original, "invalid_json", "not UTF-8")
            await asyncio.wait_for(publisher.publish_dead_letter(letter), WITHIN)
        finally:
            await producer.stop()
    async with TopicReader(pipeline.bootstrap_servers, pipeline.dlq_topic) as dlq:
        await dlq.wait_until(lambda reader: len(reader.records) == 2, within=WITHIN, what="letters")
    by_limit = {
        int(headers["x-source-offset"]): (value, headers) for _, value, headers in dlq.records
    }
    cut, cut_headers = by_limit[MIB]
    assert cut is not None
    assert len(cut) < MIB
    assert originals[MIB].startswith(cut)
    assert cut_headers["x-truncated"] == b"true"
    assert cut_headers["x-original-size"] == str(2 * MIB).encode()
    whole, whole_headers = by_limit[4 * MIB]
    assert whole == originals[4 * MIB]
    assert "x-truncated" not in whole_headers


async def test_a_frozen_broker_is_retried_with_backoff_and_never_blocks(
    embedded_broker: EmbeddedBroker,
) -> None:
    """While the broker answers nothing the audit is retried, not blocked; it lands after."""
    await embedded_broker.create_topics(["audit"])
    producer = AIOKafkaProducer(
        bootstrap_servers=embedded_broker.bootstrap_servers,
        acks="all",
        enable_idempotence=False,
        request_timeout_ms=1_000,
    )
    await producer.start()
    publisher = AuditPublisher(
        producer,
        audit_topic="audit",
        dlq_topic="dlq",
        policy=DeliveryPolicy(wait_initial=0.05, wait_max=0.2, blocked_wait=0.2),
    )
    retried: list[str] = []
    blocked_seen: list[bool] = []
    hooks = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([lambda details: retried.append(details.name)])
    try:
        embedded_broker.suspend()
        try:
            sending = asyncio.create_task(publisher.publish_result(_invalid_result("audit")))

            def two_retries() -> bool:
                blocked_seen.append(publisher.blocked)
                return len(retried) >= 2

            await wait_until(two_retries, within=WITHIN, what="two retries")
            assert not sending.done()
        finally:
            embedded_broker.resume()
        await asyncio.wait_for(sending, WITHIN)
    finally:
        stamina.instrumentation.set_on_retry_hooks(hooks)
        await producer.stop()
    assert blocked_seen
    assert set(blocked_seen) == {False}
    assert publisher.blocked is False
    async with AuditReader(embedded_broker.bootstrap_servers, "audit") as audit:
        results = await audit.wait_for_results(1, within=WITHIN)
    assert [event.data.outcome for event in results.values()] == [Outcome.INVALID]
