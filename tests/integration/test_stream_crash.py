"""A consumer killed with SIGKILL mid-stream loses nothing once a new one takes over."""

from __future__ import annotations

import asyncio
import signal

import pytest

from consumer.events import Outcome
from consumer.sandbox.feed import AuditReader
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import ServiceProcess, logged, make_pipeline
from tests.integration.workload import (
    WORKLOAD_POLICY,
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

pytestmark = pytest.mark.core
"""Runs on every broker of the session: Kafka 4.x, Tansu and Kafka 3.9."""


@pytest.mark.slow
async def test_kill_9_mid_stream_then_restart_loses_nothing(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """After kill -9 and a restart, every record is audited and CXone holds each last event."""
    simulator = simulator_server.simulator
    users = user_ids(300)
    seed_users(simulator, users)
    simulator.set_latency(0.015)
    events = workload(users, 2_000, seed=9)
    pipeline = await make_pipeline(
        topics, simulator_server, partitions=4, policy_file=WORKLOAD_POLICY
    )
    produced = await produce_events(pipeline.bootstrap_servers, pipeline.input_topic, events)
    assert len(produced) == len(events)

    first = ServiceProcess(pipeline.environment).start()
    second = ServiceProcess(pipeline.environment)
    try:
        async with AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit:
            await audit.wait_for_results(400, within=120)
            first.kill()
            published_by_first = len(logged(first.output, "sync.result"))
            second.start()
            results = await audit.wait_for_results(len(events), within=180)
        # The periodic commit reaches the end before the stop: a final commit refused by a
        # rebalance still under way (the killed member leaving on Tansu) would only mean
        # redelivery after a restart, which this test is not about.
        wanted_commits = expected_commits(produced, 4)
        deadline = asyncio.get_running_loop().time() + 60
        while (
            await committed_offsets(
                pipeline.bootstrap_servers, pipeline.group_id, pipeline.input_topic, 4
            )
            != wanted_commits
        ):
            assert asyncio.get_running_loop().time() < deadline, "commits never reached the end"
            await asyncio.sleep(0.5)
        second.signal(signal.SIGTERM)
        assert await second.wait_async(60) == 0
    finally:
        first.close()
        second.close()

    assert 0 < published_by_first < len(events), "the kill must land mid-stream"
    assert first.process is not None
    assert first.process.returncode == -9
    assert_every_record_audited(results, produced)
    outcomes = {results[position].data.outcome for position in produced}
    assert outcomes <= {Outcome.SYNCED, Outcome.UNCHANGED, Outcome.SUPERSEDED}
    wanted = last_roles(events)
    wrong = {user: roles for user, roles in wanted.items() if cxone_roles(simulator, user) != roles}
    assert wrong == {}
    names = {user: simulator.get_user(user)["name"]["givenName"] for user in users}
    assert names == {user: user for user in users}, "attributes the service does not own survive"
    commits = await committed_offsets(
        pipeline.bootstrap_servers, pipeline.group_id, pipeline.input_topic, 4
    )
    assert commits == expected_commits(produced, 4)
