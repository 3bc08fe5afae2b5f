"""Consumers joining and leaving a group mid-stream lose nothing and keep each user's order."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

import pytest

from consumer.events import Outcome
from consumer.sandbox.feed import AuditReader
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import (
    ServiceProcess,
    fast_tuning,
    logged,
    make_pipeline,
    running_service,
    wait_until,
)
from tests.integration.workload import (
    WORKLOAD_POLICY,
    EventProducer,
    RoleEvent,
    assert_every_record_audited,
    committed_offsets,
    cxone_roles,
    expected_commits,
    last_roles,
    seed_users,
    user_ids,
    workload,
    written_roles,
)

pytestmark = pytest.mark.core
"""Runs on every broker of the session: Kafka 4.x, Tansu and Kafka 3.9."""

PARTITIONS = 4


def is_subsequence(items: Sequence[frozenset[str]], of: Sequence[frozenset[str]]) -> bool:
    """Whether `items` appear in `of` in the same order, possibly with gaps."""
    remaining = iter(of)
    return all(item in remaining for item in items)


def assigned(service: ServiceProcess) -> bool:
    """Whether the service logged an assignment that gave it at least one partition."""
    return any(entry.get("partitions") for entry in logged(service.output, "stream.assigned"))


async def feed(
    producer: EventProducer,
    audit: AuditReader,
    events: Sequence[RoleEvent],
    enough: asyncio.Event,
    *,
    backlog: int,
    slice_size: int = 50,
) -> None:
    """Produce `events` in slices, at most `backlog` unaudited, until `enough` is set.

    The stream flows for as long as the group changes take, at the pace the consumers manage.
    The main test task polls `audit`; this only reads its results.
    """
    for start in range(0, len(events), slice_size):
        await wait_until(
            lambda: enough.is_set() or len(producer.produced) - len(audit.results) < backlog,
            within=120,
            what="the consumers to work the backlog down",
        )
        if enough.is_set():
            return
        await producer.send(events[start : start + slice_size])


@pytest.mark.slow
async def test_join_then_graceful_leave_mid_stream_loses_nothing_and_keeps_user_order(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A member joining and one leaving mid-stream lose nothing and keep each user's order."""
    simulator = simulator_server.simulator
    users = user_ids(300)
    seed_users(simulator, users)
    simulator.set_latency(0.015)
    stream = workload(users, 6_000, seed=21)
    pipeline = await make_pipeline(
        topics, simulator_server, partitions=PARTITIONS, policy_file=WORKLOAD_POLICY
    )
    first = ServiceProcess(pipeline.environment).start()
    second = ServiceProcess(pipeline.environment)
    enough = asyncio.Event()
    try:
        async with (
            EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
            AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
        ):
            feeder = asyncio.create_task(feed(producer, audit, stream, enough, backlog=300))
            await audit.wait_for_results(300, within=120)
            second.start()
            await audit.wait_until(lambda _: assigned(second), within=120, what="a second member")
            await audit.wait_for_results(len(audit.results) + 200, within=120)
            first.signal(signal.SIGTERM)
            assert await first.wait_async(60) == 0
            first_output = first.output
            await audit.wait_for_results(len(audit.results) + 200, within=120)
            assert not feeder.done(), "the stream must outlast both group changes"
            enough.set()
            await feeder
            produced = producer.produced
            results = await audit.wait_for_results(len(produced), within=120)
        second.signal(signal.SIGTERM)
        assert await second.wait_async(60) == 0
        second_output = second.output
    finally:
        first.close()
        second.close()

    events = stream[: len(produced)]
    assert set(produced.values()) == set(events)
    assert_every_record_audited(results, produced)
    outcomes = {results[position].data.outcome for position in produced}
    assert outcomes <= {Outcome.SYNCED, Outcome.UNCHANGED, Outcome.SUPERSEDED}
    assert logged(first_output, "sync.result")
    assert logged(second_output, "sync.result")
    assert logged(first_output, "stream.revoked")

    sequences: dict[str, list[frozenset[str]]] = {}
    for event in events:
        sequences.setdefault(event.user_id, []).append(frozenset(event.roles))
    writes = written_roles(simulator)
    out_of_order = {
        user: writes.get(user, [])
        for user, wanted in sequences.items()
        if not writes.get(user) or not is_subsequence(writes[user], wanted)
    }
    assert out_of_order == {}
    assert {user: writes[user][-1] for user in sequences} == last_roles(events)
    assert {user: cxone_roles(simulator, user) for user in sequences} == last_roles(events)
    commits = await committed_offsets(
        pipeline.bootstrap_servers, pipeline.group_id, pipeline.input_topic, PARTITIONS
    )
    assert commits == expected_commits(produced, PARTITIONS)


async def test_work_stuck_past_the_revoke_grace_is_not_written_after_its_partition_moved(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A write hanging past the revoke grace is dropped, never landing after the new owner's."""
    simulator = simulator_server.simulator
    users = user_ids(2, prefix="stuck")
    seed_users(simulator, users)
    older = {user: RoleEvent(f"{user}-1", user, ("agent_voice",)) for user in users}
    newer = {user: RoleEvent(f"{user}-2", user, ("qa_evaluator",)) for user in users}
    pipeline = await make_pipeline(
        topics, simulator_server, partitions=2, policy_file=WORKLOAD_POLICY
    )
    tuning = fast_tuning(revoke_grace=1.0)
    # The first read of each user hangs until released: both are in flight when the group moves.
    simulator.script_faults("timeout", "timeout")
    async with (
        EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
        running_service(pipeline.settings(), tuning=tuning),
    ):
        for partition, user in enumerate(users):
            await producer.send([older[user]], partition=partition)
        await wait_until(
            lambda: sum(record.fault == "timeout" for record in simulator.requests) == 2,
            within=60,
            what="both first reads hanging",
        )
        for partition, user in enumerate(users):
            await producer.send([newer[user]], partition=partition)
        async with running_service(pipeline.settings(), tuning=tuning) as second:
            await wait_until(lambda: second.health.joined, within=60, what="a second member")

            def newer_synced(_: object) -> bool:
                return any(
                    result.data.outcome is Outcome.SYNCED
                    and result.data.event_id in {event.event_id for event in newer.values()}
                    for result in audit.results.values()
                )

            await audit.wait_until(newer_synced, within=60, what="a newer event written")
            simulator.release_held_requests()
            results = await audit.wait_for_results(4, within=60)
    assert_every_record_audited(results, producer.produced)
    assert {user: cxone_roles(simulator, user) for user in users} == last_roles(newer.values())
    writes = written_roles(simulator)
    for user in users:
        order = [frozenset(older[user].roles), frozenset(newer[user].roles)]
        assert is_subsequence(writes[user], order)
        assert writes[user][-1] == order[-1]
