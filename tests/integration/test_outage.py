"""A long CXone outage with the real service: the circuit opens, work is held, nothing is lost."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from consumer.events import Outcome
from consumer.observability.metrics import REGISTRY
from consumer.sandbox.feed import AuditReader, produce
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import CxoneSimulator
from tests.conftest import Topics
from tests.integration.harness import make_pipeline, running_service, wait_until

# Failed probes to wait for while CXone stays down: with the probe interval doubling from
# 0.2 s, four of them keep the circuit open for about three seconds.
FAILED_PROBES = 4


def role_change(user_id: str, event_id: str, *roles: str) -> tuple[bytes, bytes]:
    """A keyed role-change record granting `roles` (the first one primary)."""
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "okta/test",
        "type": "idp.user.roles.changed",
        "subject": user_id,
        "data": {
            "user_id": user_id,
            "roles": [{"role_id": role, "primary": index == 0} for index, role in enumerate(roles)],
        },
    }
    return user_id.encode(), json.dumps(event).encode()


def circuit_gauge() -> float | None:
    """The value of `cxone_sync_circuit_open` right now."""
    return REGISTRY.get_sample_value("cxone_sync_circuit_open")


def unavailable_since(simulator: CxoneSimulator, index: int) -> int:
    """How many SCIM requests got the outage's 503 after the first `index` requests."""
    return sum(
        1
        for record in simulator.requests[index:]
        if record.path.startswith("/scim/") and record.status == 503
    )


@pytest.mark.slow
async def test_long_outage_opens_the_circuit_holds_work_and_applies_every_event(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Through an outage the circuit opens and the service holds; after it, every event lands."""
    simulator = simulator_server.simulator
    early = [f"u-early-{n}" for n in range(10)]
    stranded = [f"u-down-{n}" for n in range(30)]
    for user_id in early + stranded:
        simulator.seed_user(
            user_id,
            f"{user_id}@example.com",
            given_name="Ada",
            phone_numbers=["+1 555 0100"],
            roles=[("agent_basic", "Standard Agent", True)],
        )
    pipeline = await make_pipeline(topics, simulator_server, partitions=2)

    with capture_logs() as logs:
        async with (
            running_service(pipeline.settings()) as service,
            AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
        ):
            await produce(
                pipeline.bootstrap_servers,
                pipeline.input_topic,
                [role_change(user_id, f"evt-a-{user_id}", "agent_voice") for user_id in early],
            )
            await audit.wait_for_results(len(early), within=60)

            simulator.set_outage(True)
            await produce(
                pipeline.bootstrap_servers,
                pipeline.input_topic,
                [role_change(user_id, f"evt-b-{user_id}", "agent_digital") for user_id in stranded],
            )
            await wait_until(lambda: circuit_gauge() == 1.0, within=60, what="the circuit to open")
            assert service.health.not_ready_reason() == "circuit_open"
            # Second events for the early users, produced while the service holds its partitions.
            await produce(
                pipeline.bootstrap_servers,
                pipeline.input_topic,
                [
                    role_change(user_id, f"evt-c-{user_id}", "agent_voice", "reporting_viewer")
                    for user_id in early
                ],
            )
            # The breaker's own probes, not the retries of work in flight when it opened.
            await wait_until(
                lambda: (
                    [entry["event"] for entry in logs].count("circuit.probe_failed")
                    >= FAILED_PROBES
                ),
                within=60,
                what="the circuit's probes to fail",
            )
            await audit.poll()
            results_during_outage = len(audit.results)
            unavailable = unavailable_since(simulator, 0)
            simulator.set_outage(False)

            total = len(early) * 2 + len(stranded)
            results = await audit.wait_for_results(total, within=120)
            await wait_until(lambda: circuit_gauge() == 0.0, within=30, what="the circuit to close")
            assert service.health.not_ready_reason() is None
            await service.shutdown()

    print(f"outage: {unavailable} requests answered 503 while CXone was down")
    # Nothing was given up on while CXone was down: no result came out of the outage.
    assert results_during_outage == len(early)
    # Without the breaker, 16 workers retrying every half second would answer hundreds of 503s.
    assert unavailable < 60
    outcomes = [event.data.outcome for event in results.values()]
    assert outcomes == [Outcome.SYNCED] * total
    by_event = {event.data.event_id: event.data for event in results.values()}
    assert max(by_event[f"evt-b-{user_id}"].attempts for user_id in stranded) >= 2
    for user_id in early:
        roles = [role["value"] for role in simulator.get_user(user_id)["roles"]]
        assert roles == ["agent_voice", "reporting_viewer"]
        assert by_event[f"evt-c-{user_id}"].roles_before == ("agent_voice",)
    for user_id in stranded:
        user = simulator.get_user(user_id)
        assert [role["value"] for role in user["roles"]] == ["agent_digital"]
        assert user["phoneNumbers"][0]["value"] == "+1 555 0100"
    held = [entry.get("reason") for entry in logs if entry["event"] == "stream.hold"]
    assert held == ["circuit_open"]
    assert [entry["event"] for entry in logs if entry["event"] == "stream.release"] == [
        "stream.release"
    ]
    changes = ("circuit.open", "circuit.closed")
    assert [entry["event"] for entry in logs if entry["event"] in changes] == list(changes)
    # The breaker's own probes said why they failed, and the last one found CXone back.
    probes = [entry["event"] for entry in logs if entry["event"].startswith("circuit.probe_")]
    assert probes.count("circuit.probe_failed") >= FAILED_PROBES
    assert probes[-1] == "circuit.probe_succeeded"
