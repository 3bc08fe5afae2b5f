"""Two ingress instances on one state topic: one writer serves, the other waits and takes over."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from consumer.ingress.service import Ingress, IngressTuning
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import fast_tuning, wait_until
from tests.integration.ingress_harness import (
    USER_SCHEMA,
    event_log,
    idp_client,
    ingress_pipeline,
    ingress_settings,
    provision,
)

pytestmark = pytest.mark.timeout(150)


async def wait_for_members(bootstrap_servers: str, group: str, count: int) -> None:
    """Wait until the consumer group is stable with `count` members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60.0
        while True:
            [response] = await admin.describe_consumer_groups([group])
            [(_, _, state, _, _, members, *_)] = response.groups
            if state == "Stable" and len(members) == count:
                return
            if loop.time() > deadline:
                raise TimeoutError(f"{group}: {state} with {len(members)} members")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def test_one_instance_serves_and_the_other_takes_over_with_its_state(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """The standby answers 503 until the writer stops, then serves what the writer stored."""
    simulator_server.simulator.seed_user("u-1001", "jdoe@example.com")
    pipeline = await ingress_pipeline(topics, simulator_server)
    tuning = IngressTuning(metrics_host="127.0.0.1", service=fast_tuning())
    instances = [Ingress(ingress_settings(pipeline), tuning) for _ in range(2)]
    try:
        async with event_log(pipeline) as log:
            for instance in instances:
                await instance.start()
            # Both in the group (a real broker lets the first serve alone before the second
            # joins): exactly one holds the state topic.
            group = f"{ingress_settings(pipeline).kafka_group_id}.ingress"
            await wait_for_members(pipeline.bootstrap_servers, group, 2)
            await wait_until(
                lambda: sum(instance.health.joined for instance in instances) == 1,
                within=30.0,
                what="one writer",
            )
            serving = [instance.health.joined for instance in instances]
            assert sorted(serving) == [False, True]
            writer, standby = instances if serving[0] else instances[::-1]
            async with idp_client(standby) as idp:
                refused = await idp.post(
                    "/Users", json={"schemas": [USER_SCHEMA], "userName": "jdoe@example.com"}
                )
                assert refused.status_code == 503
                assert refused.json()["status"] == "503"
                assert (await idp.get("/ServiceProviderConfig")).status_code == 200
            async with idp_client(writer) as idp:
                user_id, _ = await provision(idp, "jdoe@example.com", "CC Agents")
            await log.settle(writer, 1)
            await writer.stop()
            assert await standby.serving_within(30.0)
            async with idp_client(standby) as idp:
                found = await idp.get(f"/Users/{user_id}")
                assert found.json()["userName"] == "jdoe@example.com"
                groups = await idp.get("/Groups", params={"filter": 'displayName eq "CC Agents"'})
                assert groups.json()["totalResults"] == 1
            assert standby.emitter is not None
            await standby.emitter.settled()
            await log.poll()
            # The new writer emitted nothing again: the first one's emitted state was on the topic.
            assert log.summary() == [("roles.changed", "u-1001", ("agent_basic",), None)]
    finally:
        for instance in instances:
            await instance.stop()
