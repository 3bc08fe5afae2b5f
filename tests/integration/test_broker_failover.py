"""A broker of three dies mid-stream (SIGKILL): the leader of a busy partition, or the group
coordinator. Nothing is lost, no user's state goes back, the service never exits, /readyz
recovers, the lag returns to 0; the broker restarts on its data and the stream goes on.

The cluster: three KRaft nodes of Apache Kafka, every topic replicated three times with
`min.insync.replicas=2`, so `acks=all` writes go on with one node down. A killed node is
fenced after `broker.session.timeout.ms` and its leaderships move to the other two.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from consumer.sandbox.feed import AuditReader
from consumer.sandbox.server import SimulatorServer
from tests.apache_kafka.cluster import KafkaCluster
from tests.apache_kafka.node import free_port
from tests.apache_kafka.release import KafkaRelease
from tests.conftest import Topics
from tests.integration.harness import ServiceProcess, consumer_lag, make_pipeline
from tests.integration.workload import (
    WORKLOAD_POLICY,
    EventProducer,
    RoleEvent,
    assert_every_record_audited,
    committed_offsets,
    cxone_roles,
    expected_commits,
    feed,
    gone_back,
    last_roles,
    seed_users,
    user_ids,
    workload,
    written_indices,
)

PARTITIONS = 2
WITHIN = 180.0
FAILOVER = {
    # A killed node is fenced, and its leaderships move, within a few seconds.
    "broker.heartbeat.interval.ms": "1000",
    "broker.session.timeout.ms": "6000",
}


@pytest.fixture(scope="module")
def three_nodes(kafka_release: KafkaRelease) -> Iterator[KafkaCluster]:
    """Three Apache Kafka nodes for this module's tests."""
    with KafkaCluster(kafka_release, nodes=3, properties=FAILOVER) as cluster:
        yield cluster


@dataclass
class Readiness:
    """/readyz as a load balancer sees it, asked every 100 ms: the answers and when."""

    answers: list[tuple[float, int]] = field(default_factory=list)

    def longest_not_ready(self) -> float:
        """The longest run of non-200 answers after the first 200, in seconds."""
        longest, since, ready_once = 0.0, None, False
        for at, status in self.answers:
            if status == 200:
                if since is not None:
                    longest = max(longest, at - since)
                since, ready_once = None, True
            elif ready_once and since is None:
                since = at
        if since is not None:
            longest = max(longest, self.answers[-1][0] - since)
        return longest

    @property
    def last(self) -> int | None:
        """The last answer's status."""
        return self.answers[-1][1] if self.answers else None


@contextlib.asynccontextmanager
async def watching_readiness(port: int) -> AsyncIterator[Readiness]:
    """Ask /readyz every 100 ms while the block runs (no answer counts as 0)."""
    readiness = Readiness()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2.0) as http:

        async def ask() -> None:
            while True:
                try:
                    status = (await http.get("/readyz")).status_code
                except httpx.HTTPError:
                    status = 0
                readiness.answers.append((time.monotonic(), status))
                await asyncio.sleep(0.1)  # the probe's period, not a synchronisation

        task = asyncio.create_task(ask())
        try:
            yield readiness
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def wait_for(condition: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    """Await `condition()` every 100 ms until it is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.1)


async def victim_of(cluster: KafkaCluster, kind: str, topic: str, group_id: str) -> int:
    """The node to kill: the leader of the topic's partition 0, or the group's coordinator."""
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers())
    await admin.start()
    try:
        if kind == "coordinator":
            return int(await admin.find_coordinator(group_id))
        [described] = await admin.describe_topics([topic])
        return int(next(p["leader"] for p in described["partitions"] if p["partition"] == 0))
    finally:
        await admin.close()


def per_partition(events: list[RoleEvent]) -> dict[int, list[RoleEvent]]:
    """Users split over the two partitions by hand, so each partition's stream is known."""
    streams: dict[int, list[RoleEvent]] = {0: [], 1: []}
    for event in events:
        streams[int(event.user_id.rsplit("-", 1)[1]) % PARTITIONS].append(event)
    return streams


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["leader", "coordinator"])
async def test_a_killed_broker_loses_nothing_and_the_service_rides_it_out(
    kind: str,
    three_nodes: KafkaCluster,
    simulator_server: SimulatorServer,
    request: pytest.FixtureRequest,
) -> None:
    """SIGKILL of a busy leader or the coordinator: all audited, no state back, ready again."""
    simulator = simulator_server.simulator
    users = user_ids(60)
    seed_users(simulator, users)
    simulator.set_latency(0.005)
    streams = per_partition(workload(users, 1_200, seed=31))
    cut = {partition: len(events) * 2 // 3 for partition, events in streams.items()}
    port = free_port()
    topics = Topics(three_nodes.bootstrap_servers(), request.node.name, replication_factor=3)
    pipeline = await make_pipeline(
        topics,
        simulator_server,
        partitions=PARTITIONS,
        policy_file=WORKLOAD_POLICY,
        METRICS_PORT=str(port),
    )
    service = ServiceProcess(pipeline.environment).start()
    node = None
    try:
        async with (
            EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
            AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
            watching_readiness(port) as readiness,
        ):
            stop = asyncio.Event()
            flowing = asyncio.create_task(
                feed(
                    producer,
                    {p: events[: cut[p]] for p, events in streams.items()},
                    stop,
                    slice_size=10,
                    pace=0.1,
                )
            )
            await audit.wait_for_results(200, within=WITHIN)
            victim = await victim_of(three_nodes, kind, pipeline.input_topic, pipeline.group_id)
            node = three_nodes.node(victim)
            node.kill()
            audited_at_kill = len(audit.results)
            assert not flowing.done(), "the stream must still flow when the broker dies"
            await flowing
            await audit.wait_for_results(len(producer.produced), within=WITHIN)
            assert service.process is not None
            assert service.process.poll() is None, "the service exits on a broker failure"

            # The broker comes back on its data; the stream goes on.
            await asyncio.to_thread(three_nodes.start)
            await feed(
                producer,
                {p: events[cut[p] :] for p, events in streams.items()},
                asyncio.Event(),
                slice_size=20,
                pace=0.05,
            )
            produced = producer.produced
            results = await audit.wait_for_results(len(produced), within=WITHIN)

            async def caught_up() -> bool:
                return await consumer_lag(port) == {"0": 0.0, "1": 0.0}

            async def ready() -> bool:
                return readiness.last == 200

            await wait_for(caught_up, within=WITHIN, what="the lag gauge at 0")
            await wait_for(ready, within=WITHIN, what="/readyz to answer 200")
        assert service.process.poll() is None
        service.signal(signal.SIGTERM)
        assert await service.wait_async(60) == 0
    finally:
        service.close()
        if node is not None and not node.running:
            three_nodes.start()

    not_ready = readiness.longest_not_ready()
    reordered = gone_back(written_indices(simulator, produced.values()))
    lost = set(produced) - set(results)
    request.node.user_properties.extend(
        [
            ("killed", f"{kind} node {victim}"),
            ("audited_before_kill", audited_at_kill),
            ("events", len(produced)),
            ("lost", len(lost)),
            ("reordered_users", len(reordered)),
            ("readyz_longest_not_ready_s", round(not_ready, 2)),
        ]
    )
    print(
        f"failover ({kind}, node {victim}): {len(produced)} events, {len(lost)} lost, "
        f"{len(reordered)} users reordered, /readyz not ready for at most {not_ready:.1f}s"
    )
    assert_every_record_audited(results, produced)
    assert reordered == {}
    assert {user: cxone_roles(simulator, user) for user in users} == last_roles(produced.values())
    commits = await committed_offsets(
        pipeline.bootstrap_servers, pipeline.group_id, pipeline.input_topic, PARTITIONS
    )
    assert commits == expected_commits(produced, PARTITIONS)
    assert readiness.last == 200
