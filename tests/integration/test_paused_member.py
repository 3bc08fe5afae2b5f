"""A member paused past its session (SIGSTOP) while it holds reads and writes, then woken
(SIGCONT) after another member took its partition and wrote newer states, writes nothing older.

"Goes back" is defined as in test_no_going_back: the PUTs CXone answered 200, per user in the
order received, must carry that user's events' states in non-decreasing event order.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import pytest

from consumer.sandbox.feed import AuditReader
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import ServiceProcess, assigned_partitions, logged, make_pipeline
from tests.integration.workload import (
    WORKLOAD_POLICY,
    EventProducer,
    cxone_roles,
    gone_back,
    last_roles,
    seed_users,
    user_ids,
    workload,
    written_indices,
)

pytestmark = pytest.mark.core

USERS = 8
ROUNDS = 20
LATENCY = 1.0
"""Every CXone request is held this long, so the member always has reads and writes in flight."""


async def feed_rounds(producer: EventProducer, rounds: list[list], stop: asyncio.Event) -> None:
    """Produce one event per user per round, a round every 0.4 s, until done or stopped."""
    for batch in rounds:
        await producer.send(batch)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.4)
        if stop.is_set():
            return


@pytest.mark.slow
@pytest.mark.parametrize("etags", [False, True], ids=["no-etags", "etags"])
async def test_a_member_woken_after_its_partition_moved_writes_nothing_older(
    topics: Topics, simulator_server: SimulatorServer, etags: bool
) -> None:
    """SIGSTOP the owner past its session while its requests are held, let the other member
    take over and write the newest states, SIGCONT it: no user's written states go back."""
    simulator = simulator_server.simulator
    simulator.etags = etags
    users = user_ids(USERS, prefix="p")
    seed_users(simulator, users)
    events = workload(users, USERS * ROUNDS, seed=90)
    rounds = [events[start : start + USERS] for start in range(0, len(events), USERS)]
    pipeline = await make_pipeline(topics, simulator_server, policy_file=WORKLOAD_POLICY)
    members = [ServiceProcess(pipeline.environment), ServiceProcess(pipeline.environment)]
    stop = asyncio.Event()
    try:
        async with (
            EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
            AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
        ):
            members[0].start()
            await audit.wait_until(
                lambda _: assigned_partitions(members[0]) == {0}, within=120, what="a first owner"
            )
            members[1].start()
            await audit.wait_until(
                lambda _: (
                    all(logged(m.output, "stream.assigned") for m in members)
                    and any(assigned_partitions(m) == {0} for m in members)
                ),
                within=120,
                what="both members in the group",
            )
            simulator.set_latency(LATENCY)
            feeder = asyncio.create_task(feed_rounds(producer, rounds, stop))
            await audit.wait_for_results(3 * USERS, within=120)
            owner, survivor = members if assigned_partitions(members[0]) == {0} else members[::-1]
            revoked_before = len(logged(owner.output, "stream.revoked"))
            owner.signal(signal.SIGSTOP)
            paused_at = time.time()
            await feeder
            produced = producer.produced
            newest = last_roles(event for _, event in sorted(produced.items()))
            await audit.wait_until(
                lambda _: (
                    assigned_partitions(survivor) == {0}
                    and {user: cxone_roles(simulator, user) for user in newest} == newest
                ),
                within=180,
                what="the survivor to take over and write every user's newest state",
            )
            assert not feeder.cancelled()
            woken_at = time.time()
            owner.signal(signal.SIGCONT)
            # Woken, the member learns it was expelled, gives its partition up and rejoins.
            await audit.wait_until(
                lambda _: (
                    len(logged(owner.output, "stream.revoked")) > revoked_before
                    and len(logged(owner.output, "stream.assigned")) >= 2 + revoked_before
                ),
                within=120,
                what="the woken member to give its partition up and rejoin",
            )
            await audit.wait_until(
                lambda _: all(record.finished for record in simulator.requests),
                within=60,
                what="every request CXone holds to be answered",
            )
            results = await audit.wait_for_results(len(produced), within=120)
        for member in members:
            member.signal(signal.SIGTERM)
            assert await member.wait_async(60) == 0
        lease_waits = logged(owner.output, "stream.lease_expired")
        cancelled_on_wake = sum(
            int(entry["cancelled"])
            for entry in logged(owner.output, "stream.revoked")[revoked_before:]
        )
    finally:
        stop.set()
        for member in members:
            with contextlib.suppress(ProcessLookupError):
                member.signal(signal.SIGCONT)
            member.close()

    events = [event for _, event in sorted(produced.items())]
    assert len(results) == len(produced)
    late_puts = [
        record
        for record in simulator.requests
        if record.method == "PUT" and record.received_at >= woken_at
    ]
    went_back = gone_back(written_indices(simulator, events))
    print(
        f"paused {woken_at - paused_at:.1f} s; PUTs received after the wake:",
        [(record.path.rsplit("/", 1)[-1], record.status) for record in late_puts],
        "users gone back:",
        len(went_back),
        "lease waits:",
        len(lease_waits),
        "work cancelled by the revocation on waking:",
        cancelled_on_wake,
    )
    assert went_back == {}
    assert {user: cxone_roles(simulator, user) for user in users} == last_roles(events)
    # The woken member held work: whichever of its tasks ran first after SIGCONT, a write it
    # attempted waited for its lease, or the revocation it then learnt of cancelled the work.
    assert lease_waits or cancelled_on_wake, (
        "the woken member's work was neither held nor cancelled"
    )
