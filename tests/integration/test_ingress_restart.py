"""The ingress's state survives a restart; what a crash left unemitted is emitted after it."""

from __future__ import annotations

import json

import pytest
from aiokafka import AIOKafkaProducer

from consumer.ingress.store import resource_key
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import wait_until
from tests.integration.ingress_harness import (
    event_log,
    idp_client,
    ingress_pipeline,
    patch,
    provision,
    running_ingress,
)

pytestmark = pytest.mark.timeout(120)


async def test_a_restart_rebuilds_users_and_groups_and_emits_nothing_for_unchanged_users(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """After a restart the IdP reads what it wrote (ids, versions), and no duplicate is emitted."""
    simulator_server.simulator.seed_user("u-1001", "jdoe@example.com")
    pipeline = await ingress_pipeline(topics, simulator_server)
    async with event_log(pipeline) as log:
        async with running_ingress(pipeline) as first, idp_client(first) as idp:
            user_id, group = await provision(idp, "jdoe@example.com", "CC Agents")
            await log.settle(first, 1)
            before = [(await idp.get(f"/Users/{user_id}")).json(), group]
        async with running_ingress(pipeline) as second, idp_client(second) as idp:
            assert second.emitter is not None
            await second.emitter.settled()
            after_user = (await idp.get(f"/Users/{user_id}")).json()
            after_group = (await idp.get(f"/Groups/{group['id']}")).json()
            # The same resource; only the port in meta.location moved with the new instance.
            assert after_user["meta"].pop("location") != before[0]["meta"].pop("location")
            assert after_user == before[0]
            assert after_group["members"] == before[1]["members"]
            assert after_group["meta"]["version"] == before[1]["meta"]["version"]
            # A change after the restart gets a version never given out before.
            renamed = await idp.patch(
                f"/Groups/{group['id']}",
                json=patch({"op": "replace", "path": "displayName", "value": "CC Voice Agents"}),
            )
            assert renamed.status_code in (200, 204)
            now = (await idp.get(f"/Groups/{group['id']}")).json()
            assert now["meta"]["version"] not in {
                before[0]["meta"]["version"],
                before[1]["meta"]["version"],
            }
            await log.settle(second, 2)
        await log.poll()
        assert log.summary() == [
            ("roles.changed", "u-1001", ("agent_basic",), None),
            ("roles.changed", "u-1001", ("agent_voice",), None),
        ]


async def test_a_change_persisted_before_a_crash_but_not_emitted_is_emitted_after_restart(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """The state topic holds a group change with no emitted record for it: the restart emits it."""
    simulator_server.simulator.seed_user("u-1001", "jdoe@example.com")
    pipeline = await ingress_pipeline(topics, simulator_server)
    async with event_log(pipeline) as log:
        async with running_ingress(pipeline) as first, idp_client(first) as idp:
            _, group = await provision(idp, "jdoe@example.com", "CC Agents")
            await log.settle(first, 1)
            leads = group | {"displayName": "CC Team Leads"}
        # What a crash right after the acknowledged write and before the emit leaves behind:
        # the group's new record on the state topic, and no event, no emitted record for it.
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap_servers)
        await producer.start()
        try:
            leads["meta"] = {**leads["meta"], "version": 'W/"99"'}
            key = f"Group/{leads['id']}"
            await producer.send_and_wait(
                pipeline.environment["INGRESS_STATE_TOPIC"],
                key=key.encode(),
                value=json.dumps(leads).encode(),
            )
        finally:
            await producer.stop()
        async with running_ingress(pipeline) as second:
            await log.settle(second, 2)
            assert second.storage is not None
            assert key in {resource_key(r) for r in second.storage.resources()}
        assert log.summary() == [
            ("roles.changed", "u-1001", ("agent_basic",), None),
            ("roles.changed", "u-1001", ("team_lead",), None),
        ]


async def test_a_user_not_yet_in_cxone_is_emitted_once_cxone_has_it(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Unresolved by userName, nothing is emitted; the retry timer emits once CXone has the user."""
    pipeline = await ingress_pipeline(topics, simulator_server)
    async with running_ingress(pipeline) as ingress, event_log(pipeline) as log:
        async with idp_client(ingress) as idp:
            user_id, _ = await provision(idp, "late@example.com", "CC Agents")
        assert ingress.emitter is not None
        await ingress.emitter.settled()
        assert ingress.emitter.unresolved == {user_id}
        await log.poll()
        assert log.events == []
        simulator_server.simulator.seed_user("u-2001", "late@example.com")
        await wait_until(lambda: not ingress.emitter.unresolved, within=10, what="the retry")  # type: ignore[union-attr]
        await log.settle(ingress, 1)
        assert log.summary() == [("roles.changed", "u-2001", ("agent_basic",), None)]
