"""The mass-revocation guard holds for the whole consumer group, also across a rebalance.

Two real services in one group on a four-partition topic, a policy allowing three revocations
per window: whatever the members and however the partitions move, CXone sees at most three
users deactivated before every member that got more has tripped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import yaml
from aiokafka.partitioner import DefaultPartitioner

from consumer.events import Outcome
from consumer.sandbox.feed import AuditReader, produce
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import (
    EXAMPLE_POLICY,
    InProcessService,
    Pipeline,
    make_pipeline,
    running_service,
    wait_until,
)

WITHIN = 60.0
PARTITIONS = 4
LIMIT = 3


def guarded_policy(directory: Path) -> Path:
    """The example policy with a guard of three revocations in five minutes."""
    policy = yaml.safe_load(EXAMPLE_POLICY.read_text())
    policy["mass_revocation_guard"] = {"max_revocations": LIMIT, "window_seconds": 300}
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def deactivation(user_id: str) -> tuple[bytes, bytes]:
    """A deactivation of one user, keyed by the user."""
    event = {
        "specversion": "1.0",
        "id": f"evt-off-{user_id}",
        "source": "okta/test",
        "type": "idp.user.deactivated",
        "subject": user_id,
        "data": {"user_id": user_id},
    }
    return user_id.encode(), json.dumps(event).encode()


def users_per_partition(count: int, prefix: str) -> list[str]:
    """`count` user ids per partition, chosen by the producer's own partitioner."""
    partitioner = DefaultPartitioner()
    chosen: dict[int, list[str]] = {partition: [] for partition in range(PARTITIONS)}
    number = 0
    while any(len(users) < count for users in chosen.values()):
        number += 1
        user = f"{prefix}-{number}"
        partition = partitioner(user.encode(), list(range(PARTITIONS)), list(range(PARTITIONS)))
        if len(chosen[partition]) < count:
            chosen[partition].append(user)
    return [user for users in chosen.values() for user in users]


def seed(server: SimulatorServer, users: Sequence[str]) -> None:
    """Active CXone users holding the agent role."""
    for user in users:
        server.simulator.seed_user(
            user,
            f"{user}@example.com",
            given_name=user,
            emails=[f"{user}@example.com"],
            roles=[("agent_basic", "Standard Agent", True)],
        )


def deactivated(server: SimulatorServer, users: Sequence[str]) -> set[str]:
    """The users CXone holds as inactive."""
    return {user for user in users if server.simulator.get_user(user).get("active") is False}


def owned(service: InProcessService) -> int:
    """How many partitions the service's guard spends the budget of (0 before it joined)."""
    status = service.health.guard_status_probe()
    return 0 if status is None else int(str(status["share"]).split("/")[0])


async def deactivate_once_split(
    pipeline: Pipeline, first: InProcessService, second: InProcessService, users: list[str]
) -> None:
    """Once the two members own two partitions each, deactivate `users`; wait for both trips."""
    await wait_until(
        lambda: owned(first) == owned(second) == PARTITIONS // 2,
        within=WITHIN,
        what="both members to own two partitions each",
    )
    await produce(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        [deactivation(user) for user in users],
    )
    await wait_until(
        lambda: first.health.guard_tripped and second.health.guard_tripped,
        within=WITHIN,
        what="both members' guards to trip",
    )


async def guarded_pipeline(topics: Topics, server: SimulatorServer, tmp_path: Path) -> Pipeline:
    """Four partitions and the three-revocation policy."""
    return await make_pipeline(
        topics, server, partitions=PARTITIONS, policy_file=guarded_policy(tmp_path)
    )


async def test_two_members_apply_no_more_than_the_groups_limit(
    topics: Topics, simulator_server: SimulatorServer, tmp_path: Path
) -> None:
    """Twelve deactivations to two members of one group: three are applied, not three each."""
    users = users_per_partition(3, "g")
    seed(simulator_server, users)
    pipeline = await guarded_pipeline(topics, simulator_server, tmp_path)
    async with (
        running_service(pipeline.settings(sync_shutdown_grace_seconds=1)) as first,
        running_service(pipeline.settings(sync_shutdown_grace_seconds=1)) as second,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await deactivate_once_split(pipeline, first, second, users)
        applied = await audit.wait_for_results(LIMIT, within=WITHIN)
        await audit.poll()
        audited = dict(audit.results)
        done = deactivated(simulator_server, users)

    assert len(done) == LIMIT
    assert {event.data.user_id for event in audited.values()} == done
    assert {event.data.outcome for event in applied.values()} == {Outcome.SYNCED}


async def test_a_handover_carries_the_windows_spend_to_the_new_owner(
    topics: Topics, simulator_server: SimulatorServer, tmp_path: Path
) -> None:
    """A lone member applies two revocations, a second joins: the group applies one more only."""
    early = users_per_partition(1, "early")[:2]
    late = users_per_partition(3, "late")
    seed(simulator_server, [*early, *late])
    pipeline = await guarded_pipeline(topics, simulator_server, tmp_path)
    async with (
        running_service(pipeline.settings(sync_shutdown_grace_seconds=1)) as first,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await wait_until(
            lambda: owned(first) == PARTITIONS, within=WITHIN, what="the lone member to join"
        )
        await produce(
            pipeline.bootstrap_servers,
            pipeline.input_topic,
            [deactivation(user) for user in early],
        )
        await audit.wait_for_results(len(early), within=WITHIN)
        async with running_service(pipeline.settings(sync_shutdown_grace_seconds=1)) as second:
            await deactivate_once_split(pipeline, first, second, late)
            await audit.poll()
            done = deactivated(simulator_server, [*early, *late])

    assert deactivated(simulator_server, early) == set(early)
    assert len(done) == LIMIT
