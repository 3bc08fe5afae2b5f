"""The configured ceiling holds for the consumer group, and is re-split at every rebalance.

Two real service processes in one group on a four-partition topic with
`SYNC_RATE_LIMIT_PER_MINUTE`, and a backlog that keeps every partition busy: alone, the first
member has the whole ceiling; once the second joins each has half of it, and CXone receives no
more than the ceiling from both together; when the second leaves, the first has it all again.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Sequence

import pytest

from consumer.sandbox.request_log import RequestRecord
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import ServiceProcess, logged, make_pipeline, wait_until
from tests.integration.workload import (
    WORKLOAD_POLICY,
    EventProducer,
    seed_users,
    user_ids,
    workload,
)

pytestmark = pytest.mark.slow

PARTITIONS = 4
CEILING = 240
"""Requests a minute for the whole group: slots 0.25 s apart."""
INTERVAL = 60 / CEILING
USERS = 200
WITHIN = 90.0


def pacing(service: ServiceProcess) -> tuple[str, float | None] | None:
    """The share and the allowed rate of the member's last assignment (None before the first)."""
    entries = logged(service.output, "share.assigned")
    if not entries:
        return None
    last = entries[-1]
    rate = last.get("rate_per_minute")
    return str(last["share"]), None if rate is None else float(rate)


def scim_requests(records: Sequence[RequestRecord], since: float) -> list[float]:
    """When CXone received each SCIM request from `since` on, in order."""
    return sorted(
        record.received_at
        for record in records
        if record.received_at >= since and "/Users" in record.path
    )


def most_in_any_window(times: Sequence[float], seconds: float) -> int:
    """The most requests received within any `seconds` of each other."""
    most, start = 0, 0
    for end, received in enumerate(times):
        while received - times[start] > seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_a_second_member_takes_half_the_ceiling_and_gives_it_back(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Whole ceiling alone, half each together (CXone never sees more), whole again after."""
    simulator = simulator_server.simulator
    users = user_ids(USERS, prefix="rl")
    seed_users(simulator, users)
    pipeline = await make_pipeline(
        topics, simulator_server, partitions=PARTITIONS, policy_file=WORKLOAD_POLICY
    )
    environment = {
        **pipeline.environment,
        "SYNC_RATE_LIMIT_PER_MINUTE": str(CEILING),
        "SYNC_SHUTDOWN_GRACE_SECONDS": "1",
    }
    first, second = ServiceProcess(environment), ServiceProcess(environment)
    try:
        async with EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer:
            # One event per user, each a GET and a PUT: far more work than the ceiling drains
            # while the test runs, on every partition.
            await producer.send(workload(users, USERS, seed=20))
        first.start()
        await wait_until(
            lambda: pacing(first) == (f"{PARTITIONS}/{PARTITIONS}", CEILING),
            within=WITHIN,
            what="the first member to pace at the whole ceiling",
        )
        second.start()
        await wait_until(
            lambda: pacing(first) == pacing(second) == (f"2/{PARTITIONS}", CEILING / 2),
            within=WITHIN,
            what="both members to pace at half the ceiling",
        )
        together_from = time.time()
        synced_alone = len(logged(first.output, "sync.result"))
        await wait_until(
            lambda: len(scim_requests(simulator.requests, together_from)) >= 40,
            within=WITHIN,
            what="forty SCIM requests from the two members together",
        )
        together = scim_requests(simulator.requests, together_from)
        synced = [len(logged(first.output, "sync.result")) - synced_alone]
        synced.append(len(logged(second.output, "sync.result")))
        second.signal(signal.SIGTERM)
        assert await second.wait_async(30) == 0
        await wait_until(
            lambda: pacing(first) == (f"{PARTITIONS}/{PARTITIONS}", CEILING),
            within=WITHIN,
            what="the first member to take the whole ceiling back",
        )
    finally:
        for member in (first, second):
            with contextlib.suppress(ProcessLookupError):
                member.signal(signal.SIGTERM)
            member.close()

    assert all(synced), f"both members synced users while they shared the ceiling: {synced}"
    # Two members each sending the whole ceiling would send twice as many. The bounds leave
    # room for a busy machine delivering a request late, never for a second ceiling.
    assert most_in_any_window(together, 10.0) <= 1.25 * 10.0 / INTERVAL
    span = together[-1] - together[0]
    assert len(together) <= 1.1 * span / INTERVAL + 2
