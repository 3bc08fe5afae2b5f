"""The mass-revocation guard end to end: the running service holds a burst until released.

A policy allowing three revocations per window, six users losing a role at once: three are
applied, the guard trips and holds the other three (neither skipped nor audited), and an
operator's `POST /guard/release` on the metrics port lets them through.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from consumer.events import Outcome
from consumer.sandbox.feed import AuditReader, produce
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import EXAMPLE_POLICY, make_pipeline, running_service

WITHIN = 45.0
ADMIN_TOKEN = "guard-e2e-admin-token-6d1f0c2a"
HELD = ["agent_basic", "reporting_viewer"]
KEPT = ["agent_basic"]


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def guarded_policy(directory: Path) -> Path:
    """A copy of the example policy whose guard trips past three revocations in five minutes."""
    policy = yaml.safe_load(EXAMPLE_POLICY.read_text())
    policy["mass_revocation_guard"] = {"max_revocations": 3, "window_seconds": 300}
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def removal(user_id: str) -> bytes:
    """An event that takes the reporting role away and keeps the agent role: a pure revocation."""
    event = {
        "specversion": "1.0",
        "id": f"evt-{user_id}",
        "source": "okta/test",
        "type": "idp.user.roles.changed",
        "subject": user_id,
        "data": {"user_id": user_id, "roles": [{"role_id": "agent_basic", "primary": True}]},
    }
    return json.dumps(event).encode()


def seed_holders(server: SimulatorServer, prefix: str) -> list[str]:
    """Six CXone users holding the agent and the reporting role; returns their ids."""
    users = [f"{prefix}-{number}" for number in range(1, 7)]
    for user in users:
        server.simulator.seed_user(
            user,
            f"{user}@example.com",
            given_name=user,
            emails=[f"{user}@example.com"],
            roles=[
                ("agent_basic", "Standard Agent", True),
                ("reporting_viewer", "Reporting Viewer", False),
            ],
        )
    return users


def role_values(server: SimulatorServer, user_id: str) -> list[str]:
    """The role values CXone holds for a user."""
    return [role["value"] for role in server.simulator.get_user(user_id).get("roles") or []]


async def scraped(http: httpx.AsyncClient) -> dict[str, float]:
    """The service's unlabelled samples, as its /metrics serves them."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    return {
        sample.name: float(sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if not sample.labels
    }


async def wait_for_metrics(http: httpx.AsyncClient, **expected: float) -> dict[str, float]:
    """Poll /metrics until the named samples hold the expected values; return the last scrape."""
    deadline = time.monotonic() + WITHIN
    while True:
        try:
            samples = await scraped(http)
        except httpx.ConnectError:
            # The metrics port binds once the consumer has started its Kafka client.
            samples = {}
        if all(samples.get(name) == value for name, value in expected.items()):
            return samples
        if time.monotonic() >= deadline:
            seen = {name: samples.get(name) for name in expected}
            raise TimeoutError(f"/metrics shows {seen}, expected {expected}")
        await asyncio.sleep(0.05)


async def test_guard_holds_a_mass_revocation_until_an_operator_releases_it(
    topics: Topics, simulator_server: SimulatorServer, tmp_path: Path
) -> None:
    """Past three revocations the guard holds the rest, and a release applies and audits them."""
    users = seed_holders(simulator_server, "u")
    port = free_port()
    pipeline = await make_pipeline(topics, simulator_server, policy_file=guarded_policy(tmp_path))
    async with (
        running_service(pipeline.settings(metrics_port=port, admin_token=ADMIN_TOKEN)) as service,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as http,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await produce(
            pipeline.bootstrap_servers,
            pipeline.input_topic,
            [(user.encode(), removal(user)) for user in users],
        )
        tripped = await wait_for_metrics(http, cxone_sync_guard_tripped=1)
        first = dict(await audit.wait_for_results(3, within=WITHIN))
        # A held revocation cannot finish before the release; one more fetch shows none did.
        await audit.poll()
        held_back = dict(audit.results)
        roles_while_held = {user: role_values(simulator_server, user) for user in users}
        readiness = await http.get("/readyz")

        release = await http.post(
            "/guard/release", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        results = await audit.wait_for_results(len(users), within=WITHIN)
        released = await wait_for_metrics(http, cxone_sync_guard_tripped=0, cxone_sync_inflight=0)
        readiness_after = (await http.get("/readyz")).json()
        await service.shutdown()

    assert tripped["cxone_sync_guard_tripped"] == 1.0
    first_users = {event.data.user_id for event in first.values()}
    assert len(first_users) == 3
    assert {event.data.outcome for event in first.values()} == {Outcome.SYNCED}
    assert held_back == first
    assert roles_while_held == {user: KEPT if user in first_users else HELD for user in users}
    assert readiness.json() == {
        "ready": True,
        "guard_tripped": True,
        "guard": {
            "tripped": True,
            "share": "1/1",
            "budget": 3,
            "spent": 3,
            "max_revocations": 3,
            "window_seconds": 300.0,
        },
    }

    assert release.status_code == 200
    assert release.json() == {"released": True}
    assert len(results) == len(users)
    assert {event.data.user_id for event in results.values()} == set(users)
    assert {event.data.outcome for event in results.values()} == {Outcome.SYNCED}
    assert all(event.data.roles_after == ("agent_basic",) for event in results.values())
    assert {user: role_values(simulator_server, user) for user in users} == {
        user: KEPT for user in users
    }
    assert released["cxone_sync_guard_tripped"] == 0.0
    assert readiness_after["guard_tripped"] is False
    # The release forgot the window; the three it let through are the window's new spend.
    assert readiness_after["guard"]["tripped"] is False
    assert readiness_after["guard"]["spent"] == 3


async def test_a_dry_run_never_parks_on_the_guard_and_reports_what_it_would_have_held(
    topics: Topics, simulator_server: SimulatorServer, tmp_path: Path
) -> None:
    """Six revocations in a dry run with a limit of three: all six audited, three would be held."""
    users = seed_holders(simulator_server, "u-dry")
    port = free_port()
    pipeline = await make_pipeline(topics, simulator_server, policy_file=guarded_policy(tmp_path))
    async with (
        running_service(pipeline.settings(metrics_port=port, sync_dry_run=True)) as service,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as http,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        # The counter belongs to the process, which other tests may have counted in before.
        before = (await wait_for_metrics(http)).get("cxone_sync_guard_would_hold_total", 0.0)
        await produce(
            pipeline.bootstrap_servers,
            pipeline.input_topic,
            [(user.encode(), removal(user)) for user in users],
        )
        results = await audit.wait_for_results(len(users), within=WITHIN)
        samples = await wait_for_metrics(http, cxone_sync_guard_would_hold_total=before + 3)
        readiness = (await http.get("/readyz")).json()
        await service.shutdown()

    assert {event.data.outcome for event in results.values()} == {Outcome.DRY_RUN}
    assert samples["cxone_sync_guard_tripped"] == 0.0
    assert readiness["guard_tripped"] is False
    assert readiness["guard"]["would_have_held"] == 3
    assert readiness["guard"]["tripped"] is False
    # Nothing was written: every user still holds both roles.
    assert {user: role_values(simulator_server, user) for user in users} == {
        user: HELD for user in users
    }
