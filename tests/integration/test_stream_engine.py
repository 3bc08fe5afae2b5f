"""The stream engine against a real broker and CXone simulator: coalescing, a frozen broker, a
permanently failing user, shutdown on SIGTERM, and backpressure."""

from __future__ import annotations

import asyncio
import signal

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from structlog.testing import capture_logs

from consumer.events import Outcome
from consumer.sandbox.broker import EmbeddedBroker
from consumer.sandbox.feed import AuditReader
from consumer.sandbox.request_log import RequestRecord
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
    produce_events,
    seed_users,
    user_ids,
    workload,
)


async def wait_for_commits(
    bootstrap_servers: str,
    group_id: str,
    topic: str,
    expected: dict[int, int | None],
    *,
    within: float,
) -> dict[int, int | None]:
    """Poll the group's committed offsets until they equal `expected`; return the last read."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group_id)
    await probe.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    try:
        while True:
            seen = {
                partition: await probe.committed(TopicPartition(topic, partition))
                for partition in expected
            }
            if seen == expected or loop.time() > deadline:
                return seen
            await asyncio.sleep(0.1)
    finally:
        await probe.stop()


def user_path_suffix(user: str) -> str:
    """The end of the SCIM path of a user."""
    return f"/Users/{user}"


async def test_events_arriving_while_one_is_slow_are_coalesced_to_the_newest(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Twenty events arriving while one user's first is slow cost at most two writes."""
    simulator = simulator_server.simulator
    [user] = user_ids(1, prefix="hot")
    seed_users(simulator, [user])
    events = workload([user], 20, seed=20)
    pipeline = await make_pipeline(topics, simulator_server, policy_file=WORKLOAD_POLICY)
    simulator.set_latency(0.75)
    async with (
        EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
        running_service(pipeline.settings()),
    ):
        await producer.send(events[:1])
        await wait_until(
            lambda: any(
                record.method == "GET" and record.path.endswith(user_path_suffix(user))
                for record in simulator.requests
            ),
            within=60,
            what="the first event in flight",
        )
        await producer.send(events[1:])
        results = await audit.wait_for_results(len(events), within=60)
        simulator.set_latency(0.0)

    assert_every_record_audited(results, producer.produced)
    puts = [
        record
        for record in simulator.requests
        if record.method == "PUT" and record.path.endswith(user_path_suffix(user))
    ]
    assert 1 <= len(puts) <= 2
    assert cxone_roles(simulator, user) == frozenset(events[-1].roles)
    order = {event.event_id: index for index, event in enumerate(events)}
    superseded = [
        result.data for result in results.values() if result.data.outcome is Outcome.SUPERSEDED
    ]
    assert len(superseded) >= 18
    for data in superseded:
        assert data.detail is not None
        assert data.detail.startswith("superseded_by=")
        newer = data.detail.removeprefix("superseded_by=")
        assert data.event_id is not None
        assert order[newer] > order[data.event_id]
    by_event = {result.data.event_id: result.data for result in results.values()}
    assert by_event[events[-1].event_id].outcome is Outcome.SYNCED


@pytest.mark.slow
async def test_consumer_recovers_by_itself_from_a_frozen_broker(
    embedded_broker: EmbeddedBroker, simulator_server: SimulatorServer
) -> None:
    """After the broker is frozen past the session timeout, the consumer resumes, losing nothing."""
    simulator = simulator_server.simulator
    users = user_ids(50)
    seed_users(simulator, users)
    simulator.set_latency(0.01)
    events = workload(users, 400, seed=5)
    private = Topics(embedded_broker.bootstrap_servers, "broker-stall")
    pipeline = await make_pipeline(
        private, simulator_server, partitions=2, policy_file=WORKLOAD_POLICY
    )
    tuning = fast_tuning()
    async with (
        EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
        running_service(pipeline.settings(), tuning=tuning) as service,
    ):
        await producer.send(events[:200])
        await audit.wait_for_results(50, within=60)
        embedded_broker.suspend()
        try:
            # The length of the outage, not a wait for anything: longer than the session.
            await asyncio.sleep(tuning.session_timeout_ms / 1000 + 2)
        finally:
            embedded_broker.resume()
        await producer.send(events[200:])
        results = await audit.wait_for_results(len(events), within=120)
        assert not service.task.done(), "the consumer must recover without a restart"
        commits = await wait_for_commits(
            pipeline.bootstrap_servers,
            pipeline.group_id,
            pipeline.input_topic,
            expected_commits(producer.produced, 2),
            within=60,
        )
    assert_every_record_audited(results, producer.produced)
    assert commits == expected_commits(producer.produced, 2)
    assert {user: cxone_roles(simulator, user) for user in users} == last_roles(events)


async def test_a_permanently_failing_user_does_not_hold_back_commits(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A user CXone does not know (404) is audited as failed and does not hold back commits."""
    simulator = simulator_server.simulator
    known = user_ids(4)
    seed_users(simulator, known)
    missing = user_ids(2, prefix="ghost")
    events = [
        RoleEvent("ghost-1", missing[0], ("agent_voice",)),
        *workload(known, 8, seed=404),
        RoleEvent("ghost-2", missing[1], ("qa_evaluator",)),
    ]
    pipeline = await make_pipeline(topics, simulator_server, policy_file=WORKLOAD_POLICY)
    async with (
        EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
        running_service(pipeline.settings()),
    ):
        await producer.send(events)
        results = await audit.wait_for_results(len(events), within=60)
        expected = expected_commits(producer.produced, 1)
        commits = await wait_for_commits(
            pipeline.bootstrap_servers,
            pipeline.group_id,
            pipeline.input_topic,
            expected,
            within=30,
        )
    assert commits == expected == {0: len(events)}
    assert_every_record_audited(results, producer.produced)
    failures = {
        result.data.event_id: (result.data.outcome, result.data.reason, result.data.http_status)
        for result in results.values()
        if result.data.user_id in missing
    }
    assert failures == {
        "ghost-1": (Outcome.FAILED, "user_not_found", 404),
        "ghost-2": (Outcome.FAILED, "user_not_found", 404),
    }
    assert {user: cxone_roles(simulator, user) for user in known} == last_roles(events[1:-1])


def started_reads(records: list[RequestRecord], users: list[str]) -> set[str]:
    """The users whose GET reached CXone."""
    return {
        user
        for user in users
        for record in records
        if record.method == "GET" and record.path.endswith(user_path_suffix(user))
    }


@pytest.mark.slow
async def test_sigterm_finishes_in_flight_work_publishes_commits_and_exits_zero(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """SIGTERM with writes in flight finishes them, audits, commits them and exits 0."""
    simulator = simulator_server.simulator
    users = user_ids(40)
    seed_users(simulator, users)
    events = [RoleEvent(f"evt-{user}", user, ("agent_digital",)) for user in users]
    pipeline = await make_pipeline(topics, simulator_server, policy_file=WORKLOAD_POLICY)
    produced = await produce_events(pipeline.bootstrap_servers, pipeline.input_topic, events)
    simulator.set_latency(0.5)
    service = ServiceProcess({**pipeline.environment, "SYNC_SHUTDOWN_GRACE_SECONDS": "20"})
    try:
        service.start()
        await wait_until(
            lambda: len(started_reads(simulator.requests, users)) >= 8,
            within=60,
            what="reads in flight",
        )
        in_flight = started_reads(simulator.requests, users)
        service.signal(signal.SIGTERM)
        assert await service.wait_async(60) == 0
        output = service.output
    finally:
        service.close()

    assert logged(output, "stream.stopped")
    # Each acknowledged audit event is logged once, so this is all the process published.
    published = len(logged(output, "sync.result"))
    async with AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit:
        results = await audit.wait_for_results(published, within=30)
    audited = {result.data.user_id: result.data for result in results.values()}
    assert len(audited) == published < len(events), "the stop must land mid-stream"
    assert in_flight <= set(audited)
    assert {audited[user].outcome for user in in_flight} == {Outcome.SYNCED}
    assert {user: cxone_roles(simulator, user) for user in in_flight} == {
        user: frozenset(("agent_digital",)) for user in in_flight
    }
    finished_prefix = 0
    while (0, finished_prefix) in results:
        finished_prefix += 1
    commits = await committed_offsets(
        pipeline.bootstrap_servers, pipeline.group_id, pipeline.input_topic, 1
    )
    assert commits == {0: finished_prefix}
    assert finished_prefix >= 1
    assert len(produced) == len(events)


@pytest.mark.slow
async def test_a_second_sigterm_exits_at_once_without_committing(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A second SIGTERM exits at once, non-zero, writing and committing nothing in flight."""
    simulator = simulator_server.simulator
    users = user_ids(10)
    seed_users(simulator, users)
    events = [RoleEvent(f"evt-{user}", user, ("reporting_analyst",)) for user in users]
    pipeline = await make_pipeline(topics, simulator_server, policy_file=WORKLOAD_POLICY)
    produced = await produce_events(pipeline.bootstrap_servers, pipeline.input_topic, events)
    simulator.set_latency(5.0)
    service = ServiceProcess(pipeline.environment)
    try:
        service.start()
        await wait_until(
            lambda: len(started_reads(simulator.requests, users)) == len(users),
            within=60,
            what="every read in flight",
        )
        service.signal(signal.SIGTERM)
        await wait_until(
            lambda: bool(logged(service.output, "service.stopping")),
            within=30,
            what="the graceful stop to begin",
        )
        service.signal(signal.SIGTERM)
        code = await service.wait_async(30)
        output = service.output
    finally:
        service.close()

    assert code == 130
    assert logged(output, "service.forced_exit")
    assert not logged(output, "stream.stopped")
    assert [record for record in simulator.requests if record.method == "PUT"] == []
    commits = await committed_offsets(
        pipeline.bootstrap_servers, pipeline.group_id, pipeline.input_topic, 1
    )
    assert commits == {0: None}
    assert len(produced) == len(events)


@pytest.mark.slow
async def test_a_large_backlog_is_fetched_within_the_flow_limits(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A 5,000-record backlog is fetched within the flow limits (the total plus one partition's
    read-ahead), and all of it completes."""
    simulator = simulator_server.simulator
    users = user_ids(250)
    seed_users(simulator, users)
    events = workload(users, 5_000, seed=50)
    window = 1_000
    pipeline = await make_pipeline(
        topics,
        simulator_server,
        partitions=2,
        policy_file=WORKLOAD_POLICY,
        SYNC_MAX_UNCOMMITTED_PER_PARTITION=str(window),
    )
    tuning = fast_tuning(per_partition=100, total=150)
    limits = tuning.limits
    assert limits is not None
    async with EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer:
        await producer.send(events)
    with capture_logs() as logs:
        async with (
            AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
            running_service(pipeline.settings(), tuning=tuning),
        ):
            results = await audit.wait_for_results(len(events), within=240)
    # The unfinished count only grows when a fetched batch is accepted, and the engine logs it
    # right then, so the largest logged value is the largest there was.
    fetches = [entry for entry in logs if entry["event"] == "stream.fetched"]
    assert fetches
    assert sum(entry["records"] for entry in fetches) >= len(events)
    # Past the total only the leading read-ahead reads on, to the end of its window.
    assert max(entry["pending"] for entry in fetches) <= limits.total + window + limits.fetch_batch
    # A partition being read ahead is bounded by its window instead of `per_partition`.
    busiest = max(limits.per_partition, window) + limits.fetch_batch
    assert max(entry["busiest"] for entry in fetches) <= busiest
    assert any(entry["paused"] for entry in fetches), "the limits must have paused fetching"
    assert_every_record_audited(results, producer.produced)
    assert {user: cxone_roles(simulator, user) for user in users} == last_roles(events)
