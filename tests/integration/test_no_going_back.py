"""CXone never receives an older state back: across kill -9, handovers, a stuck head and replay.

"Goes back" is defined on the PUTs the simulator answered 200, per user, in the order it
received them: each written role set maps back to the one event of that user whose state it is
(every event of a user carries a role set of its own), and the sequence of those event indices,
in the user's order on their partition, must never decrease.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter, defaultdict
from dataclasses import dataclass

import pytest

from consumer.replay import ReplayRange, replay
from consumer.sandbox.feed import AuditReader
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import (
    ServiceProcess,
    assigned_partitions,
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
    cxone_roles,
    feed,
    gone_back,
    last_roles,
    seed_users,
    user_ids,
    workload,
    written_indices,
)

PARTITIONS = 2
WINDOW = 1_500
"""SYNC_MAX_UNCOMMITTED_PER_PARTITION: a redelivered window of this many bulky records spans
several fetch responses, which is when an older event of a user used to be written again."""
STUCK = "u0-0000"


@dataclass(frozen=True)
class BulkyEvent(RoleEvent):
    """A workload event with a long `source`: about 1.2 KB, so a 1 MiB fetch holds ~800."""

    def value(self) -> bytes:
        """The event as the IdP would publish it, with a long source."""
        cloud_event = json.loads(super().value())
        cloud_event["source"] = "okta/" + "x" * 1_000
        return json.dumps(cloud_event).encode()


def caught_up(output: str) -> list[dict[str, object]]:
    """The read-ahead reports a service process logged."""
    return logged(output, "stream.caught_up")


@pytest.mark.slow
async def test_written_states_never_go_back_across_kill_9_handovers_and_a_stuck_head(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Kill -9 mid-stream, a member joining, a graceful leave with one user stuck at the head
    of partition 0: every user's PUTs write their events' states in non-decreasing order."""
    simulator = simulator_server.simulator
    # Partition 0 fills its window behind the stuck user quickly; partition 1 flows slowly and
    # for longer than all the group changes take, so each of them lands mid-stream there.
    users = {0: user_ids(100, prefix="u0"), 1: user_ids(150, prefix="u1")}
    seed_users(simulator, [user for group in users.values() for user in group])
    simulator.set_latency(0.01)
    streams = {
        partition: [
            BulkyEvent(event.event_id, event.user_id, event.roles)
            for event in workload(group, 20 * len(group), seed=40 + partition)
        ]
        for partition, group in users.items()
    }
    # One user of partition 0 stuck (503) until the end: its first event holds the commit point
    # while the window behind it is written, through every group change below.
    simulator.set_stuck(STUCK)
    events = [event for stream in streams.values() for event in stream]
    pipeline = await make_pipeline(
        topics,
        simulator_server,
        partitions=PARTITIONS,
        policy_file=WORKLOAD_POLICY,
        SYNC_MAX_UNCOMMITTED_PER_PARTITION=str(WINDOW),
    )
    first = ServiceProcess(pipeline.environment).start()
    second = ServiceProcess(pipeline.environment)
    third = ServiceProcess(pipeline.environment)
    stop = asyncio.Event()
    try:
        async with (
            EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
            AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
        ):
            feeders = [
                asyncio.create_task(feed(producer, {0: streams[0]}, stop)),
                asyncio.create_task(feed(producer, {1: streams[1]}, stop, slice_size=10, pace=0.3)),
            ]
            # 1. kill -9 mid-stream: a second process takes over from the last commits.
            await audit.wait_for_results(600, within=120)
            first.kill()
            audited_at_kill = len(audit.results)
            second.start()
            await audit.wait_until(
                lambda _: assigned_partitions(second) == {0, 1}, within=120, what="the takeover"
            )
            await audit.wait_until(
                lambda _: bool(logged(second.output, "stream.window_full")),
                within=120,
                what="partition 0 to fill its window behind the stuck user",
            )
            # 2. A member joins, then the first leaves on SIGTERM: both handovers while stuck.
            third.start()
            await audit.wait_until(
                lambda _: bool(assigned_partitions(third)), within=120, what="a third member"
            )
            second.signal(signal.SIGTERM)
            assert await second.wait_async(90) == 0
            await audit.wait_until(
                lambda _: assigned_partitions(third) == {0, 1}, within=120, what="the handover"
            )
            await audit.wait_until(
                lambda _: bool(logged(third.output, "stream.caught_up")),
                within=120,
                what="the new owner's read-ahead",
            )
            assert not feeders[1].done(), "partition 1's stream must outlast every group change"
            simulator.set_stuck(STUCK, on=False)
            stop.set()
            await asyncio.gather(*feeders)
            produced = producer.produced
            results = await audit.wait_for_results(len(produced), within=180)
        third.signal(signal.SIGTERM)
        assert await third.wait_async(60) == 0
        outputs = {"first": first.output, "second": second.output, "third": third.output}
    finally:
        first.close()
        second.close()
        third.close()

    assert audited_at_kill < len(produced), "the kill must land mid-stream"
    sent = set(produced.values())
    events = [event for event in events if event in sent]
    assert_every_record_audited(results, produced)
    indices = written_indices(simulator, events)
    assert gone_back(indices) == {}
    assert {user: cxone_roles(simulator, user) for user in last_roles(events)} == last_roles(events)
    # The handovers did redeliver a window, read ahead whole before any of it was dispatched.
    reads = {name: caught_up(output) for name, output in outputs.items()}
    redelivered = {
        name: [(entry["partition"], entry["records"], entry["reason"]) for entry in entries]
        for name, entries in reads.items()
    }
    print("read-ahead per owner (partition, records, reason):", redelivered)
    # A record audited more than once was redelivered to a later owner (or to the same one).
    audits = Counter(
        (event.data.source.partition, event.data.source.offset) for event in audit.events
    )
    redelivered = Counter(partition for (partition, _), count in audits.items() if count > 1)
    extra = Counter({partition: 0 for partition in range(PARTITIONS)})
    for (partition, _), count in audits.items():
        extra[partition] += count - 1
    print("records redelivered per partition:", dict(redelivered), "extra audits:", dict(extra))
    puts = Counter({user: len(written) for user, written in indices.items()})
    per_user = defaultdict(int, Counter(event.user_id for event in events))
    print(
        "PUTs per user: min",
        min(puts.values()),
        "max",
        max(puts.values()),
        "total",
        sum(puts.values()),
        "events",
        len(events),
        "stuck user",
        puts[STUCK],
        "of",
        per_user[STUCK],
    )
    assert any(int(entry["records"]) > 0 for entry in reads["second"])  # type: ignore[call-overload]
    assert any(int(entry["records"]) > 500 for entry in reads["third"])  # type: ignore[call-overload]


@pytest.mark.slow
async def test_written_states_never_go_back_with_replays_running_beside_run(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Two replays from the beginning while `run` consumes a steady stream: every user's PUTs,
    the replays' and the live consumer's together, write states in non-decreasing order."""
    simulator = simulator_server.simulator
    busy = {partition: user_ids(120, prefix=f"r{partition}") for partition in range(PARTITIONS)}
    # Users whose few events all come first: their CXone state drifts (roles removed by hand)
    # before each replay, so the replays have something to write back.
    quiet = {partition: user_ids(10, prefix=f"q{partition}") for partition in range(PARTITIONS)}
    everyone = [user for group in (*busy.values(), *quiet.values()) for user in group]
    seed_users(simulator, everyone)
    simulator.set_latency(0.01)
    streams = {
        partition: workload(quiet[partition], 30, seed=70 + partition)
        + workload(busy[partition], 2_400, seed=60 + partition)
        for partition in range(PARTITIONS)
    }
    events = [event for stream in streams.values() for event in stream]
    pipeline = await make_pipeline(
        topics, simulator_server, partitions=PARTITIONS, policy_file=WORKLOAD_POLICY
    )
    stop = asyncio.Event()
    summaries = []
    async with (
        running_service(pipeline.settings(), tuning=fast_tuning()) as service,
        EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await wait_until(lambda: service.health.joined, within=60, what="the service to join")
        feeder = asyncio.create_task(feed(producer, streams, stop, slice_size=15, pace=0.1))
        for audited in (600, 2_000):
            await audit.wait_for_results(audited, within=120)
            seed_users(simulator, [user for group in quiet.values() for user in group])
            summaries.append(
                await replay(
                    pipeline.settings(),
                    ReplayRange(from_beginning=True),
                    dry_run=False,
                    echo=lambda _: None,
                )
            )
        finished_early = feeder.done()
        stop.set()
        await feeder
        produced = producer.produced
        await audit.wait_for_results(len(produced), within=120)
        sent = set(produced.values())
        events = [event for event in events if event in sent]
        await wait_until(
            lambda: (
                {user: cxone_roles(simulator, user) for user in last_roles(events)}
                == last_roles(events)
            ),
            within=60,
            what="CXone to hold every user's last event",
        )

    assert not finished_early, "both replays must run while the stream flows"
    indices = written_indices(simulator, events)
    assert gone_back(indices) == {}
    outcomes = [
        Counter(result.outcome.value for result in summary.results) for summary in summaries
    ]
    print(
        "replays: records",
        [summary.records for summary in summaries],
        "outcomes",
        outcomes,
        "PUTs",
        sum(len(written) for written in indices.values()),
        "events",
        len(events),
    )
    # Each replay wrote back at least the drifted users, and left the busy ones' news to `run`.
    assert all(outcome["synced"] >= 20 for outcome in outcomes)
    assert all(outcome["superseded"] > 0 for outcome in outcomes)


@pytest.mark.slow
async def test_written_states_never_go_back_across_a_handover_with_the_default_settings(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """With the default window (10,000) and held-records limit (10,000), a handover behind a
    stuck head redelivers a full window plus a fetch batch, read ahead whole: nothing goes back."""
    simulator = simulator_server.simulator
    users = user_ids(530, prefix="d")
    seed_users(simulator, [STUCK, *users])
    # The stuck user's event first: it holds the commit point while everything behind it is
    # written, so the next owner gets the whole window (and the batch past it) redelivered.
    stuck = RoleEvent("evt-stuck", STUCK, ("agent_basic",))
    events = [stuck, *workload(users, 20 * len(users), seed=80)]
    simulator.set_stuck(STUCK)
    pipeline = await make_pipeline(topics, simulator_server, policy_file=WORKLOAD_POLICY)
    assert "SYNC_MAX_UNCOMMITTED_PER_PARTITION" not in pipeline.environment
    first = ServiceProcess(pipeline.environment)
    second = ServiceProcess(pipeline.environment)
    try:
        async with (
            EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
            AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
        ):
            first.start()
            await audit.wait_until(
                lambda _: assigned_partitions(first) == {0}, within=120, what="the first owner"
            )
            # A few first, then the rest as a backlog: fetched 500 at a time from offset 250,
            # the fetch that reaches the window passes it by 250 records.
            await producer.send(events[:250])
            await audit.wait_for_results(249, within=120)
            for start in range(250, len(events), 1_000):
                await producer.send(events[start : start + 1_000])
            await audit.wait_until(
                lambda _: bool(logged(first.output, "stream.window_full")),
                within=180,
                what="the window to fill behind the stuck user",
            )
            fetched = int(logged(first.output, "stream.window_full")[0]["uncommitted"])
            # Everything the first owner fetched is done but the stuck head.
            await audit.wait_for_results(fetched - 1, within=180)
            first.signal(signal.SIGTERM)
            assert await first.wait_async(90) == 0
            second.start()
            await audit.wait_until(
                lambda _: bool(caught_up(second.output)),
                within=120,
                what="the new owner's read-ahead",
            )
            simulator.set_stuck(STUCK, on=False)
            results = await audit.wait_for_results(len(events), within=240)
        second.signal(signal.SIGTERM)
        assert await second.wait_async(60) == 0
        reads = [caught_up(first.output), caught_up(second.output)]
    finally:
        first.close()
        second.close()

    assert_every_record_audited(results, producer.produced)
    indices = written_indices(simulator, events)
    went_back = gone_back(indices)
    print("read-aheads:", [[(entry["records"], entry["reason"]) for entry in e] for e in reads])
    print("first owner fetched", fetched, "users whose written states went back:", len(went_back))
    assert went_back == {}
    assert {user: cxone_roles(simulator, user) for user in last_roles(events)} == last_roles(events)
    # The first owner wrote past the 10,000 the process may hold, and the second read all of
    # that window ahead, a fetch batch less one past the window.
    assert fetched > 10_000
    assert (reads[1][0]["records"], reads[1][0]["reason"]) == (10_499, "window_full")
