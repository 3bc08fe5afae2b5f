"""One user stuck on transient errors: its partition pauses at the window, the rest flows.

Real broker, real simulator over HTTP, the real service in-process; the simulator answers every
request about one user with 503 until the test clears it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from typing import Any

from structlog.testing import capture_logs

from consumer.observability.metrics import REGISTRY
from consumer.sandbox.feed import AuditReader
from consumer.sandbox.server import SimulatorServer
from consumer.scim.client import RetryPolicy
from tests.conftest import Topics
from tests.integration.harness import fast_tuning, make_pipeline, running_service, wait_until
from tests.integration.workload import (
    ROLE_SETS,
    EventProducer,
    RoleEvent,
    assert_every_record_audited,
    committed_offsets,
    expected_commits,
    seed_users,
)

WINDOW = 40
FETCH_BATCH = 10
STUCK = "u-stuck"


def age_of(topic: str, partition: int) -> float | None:
    """The oldest-unfinished age gauge of one partition, as this process exposes it."""
    return REGISTRY.get_sample_value(
        "cxone_sync_oldest_unfinished_age_seconds", {"topic": topic, "partition": str(partition)}
    )


async def test_a_stuck_user_pauses_its_partition_at_the_window_and_drains_when_it_clears(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """With one user's writes failing (503) for good, partition 0 pauses at
    SYNC_MAX_UNCOMMITTED_PER_PARTITION with a bounded tracker and a growing age, partition 1
    keeps syncing; once the fault clears everything is audited and both partitions commit."""
    simulator = simulator_server.simulator
    crowd = [f"u-p0-{index:03d}" for index in range(150)]
    others = [f"u-p1-{index:02d}" for index in range(20)]
    seed_users(simulator, [STUCK, *crowd, *others])
    simulator.set_stuck(STUCK)
    pipeline = await make_pipeline(
        topics,
        simulator_server,
        partitions=2,
        SYNC_MAX_UNCOMMITTED_PER_PARTITION=str(WINDOW),
    )
    # The stuck user's retries come once a second; the flowing users keep the breaker closed.
    tuning = dataclasses.replace(
        fast_tuning(fetch_batch=FETCH_BATCH, stuck_after=0.5, stuck_report_interval=0.5),
        retry=RetryPolicy(wait_initial=1.0, wait_max=1.0, wait_jitter=0.0, max_retry_after=5.0),
    )
    stop_flow = asyncio.Event()

    async def keep_partition_1_flowing(producer: EventProducer) -> None:
        sets = itertools.cycle(ROLE_SETS)
        for step in itertools.count():
            user = others[step % len(others)]
            await producer.send([RoleEvent(f"evt-flow-{step}", user, next(sets))], partition=1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_flow.wait(), 0.2)
            if stop_flow.is_set():
                return

    with capture_logs() as logs:
        async with (
            running_service(pipeline.settings(), tuning=tuning),
            AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
            EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
        ):
            [stuck_at] = await producer.send(
                [RoleEvent("evt-stuck", STUCK, ("agent_basic",))], partition=0
            )
            await producer.send(
                [RoleEvent(f"evt-{user}", user, ("agent_basic",)) for user in crowd], partition=0
            )
            flow = asyncio.create_task(keep_partition_1_flowing(producer))

            def reports() -> list[dict[str, Any]]:
                return [
                    entry
                    for entry in logs
                    if entry["event"] == "stream.oldest_unfinished" and entry["partition"] == 0
                ]

            await wait_until(lambda: len(reports()) >= 3, within=60, what="three stuck reports")
            await wait_until(
                lambda: any(e["event"] == "stream.window_full" for e in logs),
                within=30,
                what="partition 0 to reach its window",
            )
            await audit.poll()
            audited_while_stuck = len(audit.results)
            await wait_until(
                lambda: (age_of(pipeline.input_topic, 0) or 0.0) >= 1.0,
                within=30,
                what="the age gauge to pass a second",
            )
            await audit.poll()
            flowing = [o for p, o in audit.results if p == 1]
            on_zero_while_stuck = sorted(o for p, o in audit.results if p == 0)
            stop_flow.set()
            await flow
            # The reports while stuck; once it clears, the crowd behind it may be reported.
            stuck = reports()
            simulator.set_stuck(STUCK, on=False)
            produced = producer.produced
            results = await audit.wait_for_results(len(produced), within=120)
            await wait_until(
                lambda: age_of(pipeline.input_topic, 0) == 0.0,
                within=30,
                what="the age gauge to drop back to 0",
            )
    full = [e for e in logs if e["event"] == "stream.window_full"]
    commits = await committed_offsets(
        pipeline.bootstrap_servers, pipeline.group_id, pipeline.input_topic, 2
    )

    assert {(e["user_id"], e["offset"]) for e in stuck} == {(STUCK, stuck_at[1])}
    ages = [float(e["age_seconds"]) for e in stuck]
    assert ages == sorted(ages)
    assert ages[-1] > ages[0]
    assert all(int(e["uncommitted"]) < WINDOW + FETCH_BATCH for e in stuck)
    # Memory follows the unfinished records, not the window.
    assert all(int(e["tracked"]) <= 3 * int(e["pending"]) + 17 for e in stuck)
    assert (full[0]["partition"], full[0]["oldest_user_id"]) == (0, STUCK)
    assert WINDOW <= int(full[0]["uncommitted"]) < WINDOW + FETCH_BATCH
    # While partition 0 was held, its fetch stopped at the window and partition 1 kept syncing.
    assert len(on_zero_while_stuck) < WINDOW + FETCH_BATCH
    assert stuck_at[1] not in on_zero_while_stuck
    assert flowing
    assert audited_while_stuck > 0
    assert_every_record_audited(results, produced)
    assert results[stuck_at].data.outcome.value == "synced"
    assert commits == expected_commits(produced, 2)
