"""SIGTERM while the group is rebalancing: the member still stops in time and commits its work.

A second member joins while the first has work stuck in CXone; the first is told to stop while
its partitions are being revoked. It must exit 0 within its grace plus the final commit and the
closing budget, leave a commit of exactly what it finished, and print no traceback.
"""

from __future__ import annotations

import signal

import pytest

from consumer.events import AuditEvent
from consumer.sandbox.feed import AuditReader
from consumer.sandbox.server import SimulatorServer
from consumer.service import CLOSE_BUDGET_SECONDS
from consumer.stream.consumer import FlowLimits
from tests.conftest import Topics
from tests.integration.harness import ServiceProcess, logged, make_pipeline, wait_until
from tests.integration.workload import (
    WORKLOAD_POLICY,
    EventProducer,
    committed_offsets,
    seed_users,
    user_ids,
    workload,
)

PARTITIONS = 4
GRACE_SECONDS = 2
# What the process may take after SIGTERM: its grace, the final commit, closing its clients.
BUDGET_SECONDS = GRACE_SECONDS + FlowLimits().final_commit_timeout + CLOSE_BUDGET_SECONDS
# A loaded machine (2 cores shared by the suite) may add a few seconds of scheduling.
MARGIN_SECONDS = 8


def finished_prefix(results: dict[tuple[int, int], AuditEvent], partition: int) -> int | None:
    """The commit of a partition whose audited records are exactly what was finished."""
    offset = 0
    while (partition, offset) in results:
        offset += 1
    return offset or None


@pytest.mark.slow
async def test_sigterm_while_the_group_rebalances_exits_0_in_time_with_a_final_commit(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """SIGTERM mid-rebalance, work stuck in CXone: exit 0 within the grace and the shutdown
    budget, the finished prefix of every partition committed, no traceback."""
    simulator = simulator_server.simulator
    users = user_ids(200)
    seed_users(simulator, users)
    simulator.set_latency(1.5)
    pipeline = await make_pipeline(
        topics,
        simulator_server,
        partitions=PARTITIONS,
        policy_file=WORKLOAD_POLICY,
        SYNC_SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
    )
    first = ServiceProcess(pipeline.environment).start()
    second = ServiceProcess(pipeline.environment)
    try:
        async with (
            EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
            AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
        ):
            await wait_until(
                lambda: any(e.get("partitions") for e in logged(first.output, "stream.assigned")),
                within=60,
                what="the first member to be assigned",
            )
            await producer.send(workload(users, 2000, seed=5))
            await audit.wait_for_results(20, within=60)
            # From here on the first member's work hangs in CXone, and so would the second's.
            simulator.set_latency(30.0)
            second.start()
            await wait_until(
                lambda: bool(logged(first.output, "stream.revoking")),
                within=60,
                what="the first member's revocation to begin",
            )
            first.signal(signal.SIGTERM)
            code = await first.wait_async(BUDGET_SECONDS + MARGIN_SECONDS)
            commits = await committed_offsets(
                pipeline.bootstrap_servers, pipeline.group_id, pipeline.input_topic, PARTITIONS
            )
            # Everything committed was audited first: wait for those audits to be read back.
            await audit.wait_until(
                lambda _: all(
                    (p, offset) in audit.results
                    for p, commit in commits.items()
                    for offset in range(commit or 0)
                ),
                within=30,
                what="the audit events of every committed record",
            )
            results = dict(audit.results)
        output = first.output
    finally:
        simulator.set_latency(0.0)
        first.close()
        second.close()

    assert code == 0
    assert commits == {p: finished_prefix(results, p) for p in range(PARTITIONS)}
    assert any(commits.values())
    assert logged(output, "stream.stopped")
    assert "Traceback" not in output
