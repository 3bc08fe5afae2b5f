"""An IdP that writes transactionally: aborted events are never applied, markers break nothing.

Needs a broker with transactions (Apache Kafka; Tansu has none). The IdP writes transactions
of events over two partitions and aborts every third; some are written while the service is
down, so its read-ahead starts over transaction markers, the rest while it runs. The service
reads `read_committed`: no aborted event is audited or written, every committed one is. The
commit markers leave offset gaps: the group still commits each partition to its end, the lag
gauge reaches 0, and a replay over the whole topic ends and finds exactly the committed events.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumer.replay import ReplayRange, replay
from consumer.sandbox.feed import AuditReader
from consumer.sandbox.server import SimulatorServer
from tests.apache_kafka.node import free_port
from tests.conftest import BrokerEndpoint, Topics
from tests.integration.harness import ServiceProcess, consumer_lag, logged, make_pipeline
from tests.integration.workload import (
    WORKLOAD_POLICY,
    RoleEvent,
    cxone_roles,
    last_roles,
    seed_users,
    user_ids,
    workload,
    written_roles,
)

PARTITIONS = 2
PER_TRANSACTION = 8
WITHIN = 120.0


def transactions(events: Sequence[RoleEvent]) -> list[tuple[bool, list[RoleEvent]]]:
    """The events cut into transactions, every third aborted: (committed, events)."""
    chunks = [
        list(events[start : start + PER_TRANSACTION])
        for start in range(0, len(events), PER_TRANSACTION)
    ]
    return [(index % 3 != 1, chunk) for index, chunk in enumerate(chunks)]


async def write_transactions(
    bootstrap_servers: str, topic: str, plan: Sequence[tuple[bool, list[RoleEvent]]], name: str
) -> None:
    """Write each transaction of `plan` keyed by user id, committing or aborting it."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, transactional_id=name, acks="all"
    )
    await producer.start()
    try:
        for committed, events in plan:
            await producer.begin_transaction()
            for event in events:
                await producer.send_and_wait(topic, event.value(), key=event.user_id.encode())
            if committed:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()


async def wait_for_zero_lag(port: int) -> None:
    """Poll /metrics until the lag gauge of both partitions reads 0."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN
    while (lags := await consumer_lag(port)) != {"0": 0.0, "1": 0.0}:
        if loop.time() > deadline:
            raise TimeoutError(f"the lag gauge still reads {lags}")
        await asyncio.sleep(0.1)


async def log_ends(bootstrap_servers: str, topic: str) -> dict[int, int]:
    """Each partition's end offset now (read committed), transaction markers included."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, isolation_level="read_committed")
    await probe.start()
    try:
        partitions = [TopicPartition(topic, number) for number in range(PARTITIONS)]
        ends = await probe.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await probe.stop()


async def committed_offsets(bootstrap_servers: str, group_id: str, topic: str) -> dict[int, int]:
    """The group's committed offset of each partition (-1 when none)."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group_id)
    await probe.start()
    try:
        return {
            number: await probe.committed(TopicPartition(topic, number)) or -1
            for number in range(PARTITIONS)
        }
    finally:
        await probe.stop()


async def test_aborted_events_are_never_applied_and_markers_break_nothing(
    broker: BrokerEndpoint, topics: Topics, simulator_server: SimulatorServer
) -> None:
    """No aborted event is audited or written; offsets, lag, read-ahead and replay end right."""
    if not broker.supports_idempotence:
        pytest.skip(f"{broker.label} has no transactions")
    simulator = simulator_server.simulator
    users = user_ids(24)
    seed_users(simulator, users)
    events = workload(users, 384, seed=18)
    before, during = transactions(events[:192]), transactions(events[192:])
    committed = [event for ok, chunk in before + during if ok for event in chunk]
    aborted = [event for ok, chunk in before + during if not ok for event in chunk]
    port = free_port()
    pipeline = await make_pipeline(
        topics,
        simulator_server,
        partitions=PARTITIONS,
        policy_file=WORKLOAD_POLICY,
        METRICS_PORT=str(port),
    )
    await write_transactions(
        pipeline.bootstrap_servers, pipeline.input_topic, before, topics.name("idp")
    )

    service = ServiceProcess(pipeline.environment).start()
    try:
        async with AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit:
            await write_transactions(
                pipeline.bootstrap_servers, pipeline.input_topic, during, topics.name("idp")
            )
            results = await audit.wait_for_results(len(committed), within=WITHIN)
            ends = await log_ends(pipeline.bootstrap_servers, pipeline.input_topic)

            await wait_for_zero_lag(port)
        service.signal(signal.SIGTERM)
        assert await service.wait_async(60) == 0
        output = service.output
    finally:
        service.close()

    audited_ids = {result.data.event_id for result in results.values()}
    assert audited_ids == {event.event_id for event in committed}
    assert audited_ids.isdisjoint(event.event_id for event in aborted)
    aborted_sets = {(event.user_id, frozenset(event.roles)) for event in aborted}
    written = {(user, roles) for user, sets in written_roles(simulator).items() for roles in sets}
    assert written & aborted_sets == set()
    assert {user: cxone_roles(simulator, user) for user in users} == last_roles(committed)

    # Markers and aborted records leave gaps: counting records never reaches the end.
    assert sum(ends.values()) > len(committed) + len(aborted)
    commits = await committed_offsets(
        pipeline.bootstrap_servers, pipeline.group_id, pipeline.input_topic
    )
    assert commits == ends
    reads_ahead = logged(output, "stream.caught_up")
    assert {entry["partition"]: entry["reason"] for entry in reads_ahead} == {
        0: "log_end",
        1: "log_end",
    }

    lines: list[str] = []
    summary = await replay(
        pipeline.settings(), ReplayRange(from_beginning=True), dry_run=True, echo=lines.append
    )
    assert summary.records == len(committed)
    assert summary.users == len(users)
