"""A PUT the service gave up on (timed out, cancelled by a shutdown) that CXone applies later is
found on the second look, once such a request can no longer land, and the newest state is put back.

The simulator holds the PUT and applies it after the service gave up on it, as a server finishes a
request whose client left. The tests first show the late state landing (what went back), then the
repair: CXone ends in the user's newest state and `cxone_sync_late_writes_repaired_total` counts it.
"""

from __future__ import annotations

import pytest

from consumer.events import Outcome
from consumer.observability.metrics import REGISTRY
from consumer.sandbox.feed import AuditReader
from consumer.sandbox.request_log import RequestRecord
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import CxoneSimulator
from tests.conftest import Topics
from tests.integration.harness import make_pipeline, running_service, wait_until
from tests.integration.workload import (
    WORKLOAD_POLICY,
    EventProducer,
    RoleEvent,
    cxone_roles,
    seed_users,
)

USER = "late-0001"


def repaired() -> float:
    """The late writes repaired so far in this process."""
    return REGISTRY.get_sample_value("cxone_sync_late_writes_repaired_total") or 0.0


def late_puts(simulator: CxoneSimulator) -> list[RequestRecord]:
    """The PUTs the simulator held to apply later."""
    return [record for record in simulator.requests if record.fault == "late"]


async def landed_then_put_back(
    simulator: CxoneSimulator, newest: RoleEvent, *, within: float
) -> frozenset[str]:
    """Wait for the held PUT to land (200), then for the newest state to be put back; return
    the roles the user had between the two: what went back."""
    await wait_until(
        lambda: all(record.finished for record in late_puts(simulator)),
        within=60,
        what="the held PUT to be applied",
    )
    assert [record.status for record in late_puts(simulator)] == [200]
    went_back = cxone_roles(simulator, newest.user_id)
    await wait_until(
        lambda: cxone_roles(simulator, newest.user_id) == frozenset(newest.roles),
        within=within,
        what="the newest state to be put back",
    )
    return went_back


def audited(audit: AuditReader, event: RoleEvent) -> Outcome | None:
    """The outcome of the newest audit of `event`, if any."""
    outcomes = [e.data.outcome for e in audit.events if e.data.event_id == event.event_id]
    return outcomes[-1] if outcomes else None


async def write_in_turn(producer: EventProducer, audit: AuditReader, *events: RoleEvent) -> None:
    """Send each event once the one before it is audited `synced`."""
    for event in events:
        await producer.send([event])
        await audit.wait_until(
            lambda a, event=event: audited(a, event) is Outcome.SYNCED,
            within=60,
            what=f"{event.event_id} synced",
        )


@pytest.mark.parametrize("etags", [False, True], ids=["no-etags", "etags-checked-on-receipt"])
async def test_a_timed_out_put_that_lands_after_a_newer_write_is_put_back(
    topics: Topics, simulator_server: SimulatorServer, etags: bool
) -> None:
    """A PUT that timed out (2 s) lands 3.5 s after it was sent, after the user's next event was
    written: 4 s after the service gave up, the user is read again and the newest state written."""
    simulator = simulator_server.simulator
    simulator.etags = etags
    seed_users(simulator, [USER])
    first = RoleEvent("evt-late-1", USER, ("agent_voice",))
    second = RoleEvent("evt-late-2", USER, ("agent_digital",))
    pipeline = await make_pipeline(
        topics,
        simulator_server,
        policy_file=WORKLOAD_POLICY,
        CXONE_REQUEST_TIMEOUT_SECONDS="2",
    )
    before = repaired()
    async with (
        running_service(pipeline.settings()) as service,
        EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await wait_until(lambda: service.health.joined, within=60, what="the service to join")
        # With ETags checked on receipt, the held write passes its If-Match check on arrival:
        # the newer writes cannot fence it.
        simulator.hold_puts_then_apply(USER, 3.5, checked_on_receipt=etags)
        await write_in_turn(producer, audit, first, second)
        went_back = await landed_then_put_back(simulator, second, within=30)
    assert went_back == frozenset(first.roles)
    assert repaired() - before == 1


@pytest.mark.parametrize("etags", [False, True], ids=["no-etags", "etags"])
async def test_a_put_cancelled_by_shutdown_that_lands_after_the_restart_is_put_back(
    topics: Topics, simulator_server: SimulatorServer, etags: bool
) -> None:
    """A PUT cancelled by a shutdown lands after the restarted service found the user as its newest
    event wants (nothing to write): the restarted service reads the redelivered user again and
    puts the newest state back."""
    simulator = simulator_server.simulator
    simulator.etags = etags
    simulator.seed_user(USER, f"{USER}@example.com", roles=[("agent_basic", None, True)])
    first = RoleEvent("evt-late-1", USER, ("agent_voice",))
    # The user's newest event asks for what CXone holds as long as the first write has not landed.
    second = RoleEvent("evt-late-2", USER, ("agent_basic",))
    pipeline = await make_pipeline(
        topics,
        simulator_server,
        policy_file=WORKLOAD_POLICY,
        CXONE_REQUEST_TIMEOUT_SECONDS="20",
        SYNC_SHUTDOWN_GRACE_SECONDS="0.5",
    )
    before = repaired()
    async with (
        EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        async with running_service(pipeline.settings()) as service:
            await wait_until(lambda: service.health.joined, within=60, what="the service to join")
            # Long enough for the restart to read the user first (a group join and a read-ahead),
            # within the bound: applied less than the timeout after the shutdown gave up on it.
            simulator.hold_puts_then_apply(USER, 18.0)
            await producer.send([first])
            await wait_until(
                lambda: bool(late_puts(simulator)), within=30, what="the first PUT to be held"
            )
            await producer.send([second])
        # Stopped: the held PUT was cancelled past the grace; both records are redelivered.
        assert not late_puts(simulator)[0].finished
        async with running_service(pipeline.settings()) as restarted:
            await wait_until(lambda: restarted.health.joined, within=60, what="the restart to join")
            await audit.wait_until(
                lambda a: audited(a, second) is not None, within=60, what="the second event"
            )
            # The restarted service read the user before the given-up write landed.
            assert audited(audit, second) is Outcome.UNCHANGED
            went_back = await landed_then_put_back(simulator, second, within=60)
    assert went_back == frozenset(first.roles)
    assert repaired() - before == 1


async def test_a_look_still_due_at_a_stop_is_taken_by_the_restart(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A PUT that timed out (5 s) lands 3 s after the service gave up on it, after the service
    wrote the user's next event and stopped, before its look was due (10 s after giving up). The
    timed-out write's record was kept uncommitted for that look: the restart is redelivered both
    records and writes the newest state again."""
    simulator = simulator_server.simulator
    seed_users(simulator, [USER])
    first = RoleEvent("evt-late-1", USER, ("agent_voice",))
    second = RoleEvent("evt-late-2", USER, ("agent_digital",))
    pipeline = await make_pipeline(
        topics,
        simulator_server,
        policy_file=WORKLOAD_POLICY,
        CXONE_REQUEST_TIMEOUT_SECONDS="5",
    )
    before = repaired()
    async with (
        EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        async with running_service(pipeline.settings()) as service:
            await wait_until(lambda: service.health.joined, within=60, what="the service to join")
            simulator.hold_puts_then_apply(USER, 8.0)
            await write_in_turn(producer, audit, first, second)
        # Stopped before the look: nothing was put back, and the held PUT has not landed yet.
        assert repaired() == before
        assert not late_puts(simulator)[0].finished
        await wait_until(
            lambda: late_puts(simulator)[0].finished, within=30, what="the held PUT to land"
        )
        assert late_puts(simulator)[0].status == 200
        assert cxone_roles(simulator, USER) == frozenset(first.roles)
        async with running_service(pipeline.settings()) as restarted:
            await wait_until(lambda: restarted.health.joined, within=60, what="the restart to join")
            await wait_until(
                lambda: cxone_roles(simulator, USER) == frozenset(second.roles),
                within=60,
                what="the newest state to be written again",
            )
            await audit.wait_until(
                lambda a: [e.data.event_id for e in a.events].count(second.event_id) == 2,
                within=60,
                what="the second event audited again",
            )
