"""The real service through CXone and token-endpoint trouble: the breaker recovers by itself.

The breaker probes on its own timer, so an outage ends for the service even when no work is
left to try it (partitions paused, in-flight work cancelled by a rebalance). A token endpoint
that refuses the credentials mid-run keeps the process alive but not ready until it stops.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import replace

import pytest

from consumer.events import Outcome
from consumer.observability.http import HealthState
from consumer.sandbox.faults import Fault
from consumer.sandbox.feed import AuditReader, produce
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import TOKEN_PATH, CxoneSimulator
from consumer.scim.auth import TokenBackoff
from tests.conftest import Topics
from tests.integration.harness import (
    ROOT,
    Pipeline,
    fast_tuning,
    make_pipeline,
    running_service,
    wait_until,
)
from tests.integration.test_outage import role_change


def seed_users(simulator: CxoneSimulator, users: list[str]) -> None:
    """Seed each user holding `agent_basic`, with attributes the service does not own."""
    for user_id in users:
        simulator.seed_user(
            user_id,
            f"{user_id}@example.com",
            given_name="Ada",
            phone_numbers=["+1 555 0100"],
            roles=[("agent_basic", "Standard Agent", True)],
        )


def roles_of(simulator: CxoneSimulator, user_id: str) -> list[str]:
    """The role ids CXone holds for a user."""
    return [role["value"] for role in simulator.get_user(user_id).get("roles") or []]


async def open_with_work_queued(
    simulator: CxoneSimulator, pipeline: Pipeline, health: HealthState, users: list[str]
) -> None:
    """Start an outage, give each user an event, and wait until the service's circuit opens."""
    simulator.set_outage(True)
    await produce(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        [role_change(user_id, f"evt-{user_id}", "agent_voice") for user_id in users],
    )
    await wait_until(lambda: health.circuit_open, within=60, what="the circuit to open")


@pytest.mark.slow
async def test_an_outage_through_a_rebalance_ends_with_every_event_synced(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Outage, open circuit, a member joins and leaves, outage over: the breaker's own probe
    closes the circuit and every event is synced."""
    simulator = simulator_server.simulator
    users = [f"u-r-{n}" for n in range(20)]
    seed_users(simulator, users)
    pipeline = await make_pipeline(topics, simulator_server, partitions=2)
    # A short revoke grace: the work held behind the open circuit is cancelled, not finished.
    tuning = fast_tuning(revoke_grace=0.5)

    async with (
        running_service(pipeline.settings(), tuning=tuning) as first,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await wait_until(lambda: first.health.joined, within=60, what="the first member to join")
        await open_with_work_queued(simulator, pipeline, first.health, users)

        # Its work waits behind its own open circuit: a short grace lets it leave soon.
        leaving = pipeline.settings(sync_shutdown_grace_seconds=1)
        async with running_service(leaving, tuning=tuning) as second:
            await wait_until(lambda: second.health.joined, within=60, what="a second member")
            await second.shutdown()
        await audit.poll()
        during_outage = len(audit.results)
        scim_before = len(simulator.requests)

        simulator.set_outage(False)
        results = await audit.wait_for_results(len(users), within=90)
        await wait_until(
            lambda: not first.health.circuit_open, within=30, what="the circuit to close"
        )

    assert during_outage == 0
    outcomes = {event.data.event_id: event.data.outcome for event in results.values()}
    assert outcomes == {f"evt-{user_id}": Outcome.SYNCED for user_id in users}
    assert all(roles_of(simulator, user_id) == ["agent_voice"] for user_id in users)
    # The first request after the outage is the breaker's probe, a read of a user it asked about.
    probe = next(r for r in simulator.requests[scim_before:] if r.path.startswith("/scim/"))
    assert (probe.method, probe.status) == ("GET", 200)
    assert probe.path.removeprefix("/scim/v2/Users/") in users


@pytest.mark.slow
async def test_a_short_outage_ends_for_an_api_user_that_may_not_search(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Searches forbidden, users readable: after a short outage the probe reads a user the
    service needs, gets 200 and closes the circuit, and every event is synced."""
    simulator = simulator_server.simulator
    simulator.searches_forbidden = True
    users = [f"u-s-{n}" for n in range(12)]
    seed_users(simulator, users)
    pipeline = await make_pipeline(topics, simulator_server)

    async with (
        running_service(pipeline.settings(), tuning=fast_tuning()) as service,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await wait_until(lambda: service.health.joined, within=60, what="the member to join")
        await open_with_work_queued(simulator, pipeline, service.health, users)
        scim_before = len(simulator.requests)
        simulator.set_outage(False)
        results = await audit.wait_for_results(len(users), within=60)
        await wait_until(
            lambda: not service.health.circuit_open, within=30, what="the circuit to close"
        )

    outcomes = {event.data.event_id: event.data.outcome for event in results.values()}
    assert outcomes == {f"evt-{user_id}": Outcome.SYNCED for user_id in users}
    assert all(roles_of(simulator, user_id) == ["agent_voice"] for user_id in users)
    after = [r for r in simulator.requests[scim_before:] if r.path.startswith("/scim/")]
    # The first request after the outage is the probe: a read of a user waiting to be written.
    assert (after[0].method, after[0].status) == ("GET", 200)
    assert after[0].path.removeprefix("/scim/v2/Users/") in users
    assert [r for r in after if r.path == "/scim/v2/Users"] == []


@pytest.mark.slow
async def test_refused_credentials_mid_run_make_the_service_not_ready_until_they_work(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """invalid_client mid-run: alive, /readyz auth_failed, slow token retries; then it recovers."""
    simulator = simulator_server.simulator
    users = [f"u-a-{n}" for n in range(4)]
    seed_users(simulator, users)
    pipeline = await make_pipeline(topics, simulator_server)
    tuning = replace(fast_tuning(), token_backoff=TokenBackoff(rejected=1.0))

    async with (
        running_service(pipeline.settings(), tuning=tuning) as service,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await wait_until(lambda: service.health.joined, within=60, what="the member to join")
        simulator.token_faults.set_probability(1.0, Fault.INVALID_CLIENT)
        simulator.revoke_tokens()
        await produce(
            pipeline.bootstrap_servers,
            pipeline.input_topic,
            [role_change(user_id, f"evt-{user_id}", "agent_voice") for user_id in users],
        )
        await wait_until(
            lambda: service.health.not_ready_reason() == "auth_failed",
            within=60,
            what="readiness to say auth_failed",
        )
        refused = sum(1 for r in simulator.requests if r.path == TOKEN_PATH and r.status == 401)
        alive = not service.task.done()
        simulator.token_faults.clear()
        results = await audit.wait_for_results(len(users), within=90)
        await wait_until(
            lambda: service.health.not_ready_reason() is None, within=60, what="readiness"
        )

    assert alive is True
    assert refused >= 1
    assert {event.data.outcome for event in results.values()} == {Outcome.SYNCED}
    assert all(roles_of(simulator, user_id) == ["agent_voice"] for user_id in users)


@pytest.mark.parametrize(
    ("setting", "refusal"),
    [
        ("CXONE_CLIENT_SECRET", "401 invalid_client"),
        ("CXONE_ACCESS_KEY_SECRET", "400 invalid_grant"),
    ],
)
async def test_refused_credentials_at_start_up_stop_it_with_one_line_and_exit_2(
    topics: Topics, simulator_server: SimulatorServer, setting: str, refusal: str
) -> None:
    """A wrong secret stops `run` at start-up: exit 2, one line naming the credential settings."""
    pipeline = await make_pipeline(topics, simulator_server)
    environment = {**os.environ, **pipeline.environment, setting: "not-the-secret-value"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumer",
        "run",
        env=environment,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 2
    # Beside the JSON log lines, the one line for the operator.
    plain = [line for line in stderr.decode().splitlines() if not line.startswith("{")]
    assert plain == [
        f"configuration error: token endpoint refused the credentials: {refusal}; check "
        "CXONE_CLIENT_ID, CXONE_CLIENT_SECRET, CXONE_ACCESS_KEY_ID, CXONE_ACCESS_KEY_SECRET"
    ]
    assert "Traceback" not in stdout.decode() + stderr.decode()
    assert "not-the-secret-value" not in stdout.decode() + stderr.decode()
