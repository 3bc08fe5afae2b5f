"""The stream tests' workload: role-change streams whose every step the workload policy allows,
producing them with their positions, and reading back what the simulator was written and what
the group committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumer.events import AuditEvent
from consumer.sandbox.simulator import CxoneSimulator
from consumer.stream.broker_profile import idempotence_at

WORKLOAD_POLICY = Path(__file__).parents[2] / "bench" / "workload-policy.yaml"
"""The example catalog without the mass-revocation guard, which would count the workload's swaps."""

ROLES = (
    "agent_voice",
    "agent_digital",
    "qa_evaluator",
    "reporting_analyst",
    "wfm_scheduler",
    "agent_basic",
)
"""Non-privileged roles of examples/policy.yaml that any two of may be held together."""

ROLE_SETS: tuple[tuple[str, ...], ...] = tuple((role,) for role in ROLES) + tuple(
    itertools.combinations(ROLES, 2)
)
"""21 distinct role sets; each adds a role to every set before it, so no step is a revocation."""

Position = tuple[int, int]
"""(partition, offset) of an input record."""


@dataclass(frozen=True)
class RoleEvent:
    """One role-change event of the workload."""

    event_id: str
    user_id: str
    roles: tuple[str, ...]

    def value(self) -> bytes:
        """The event as the IdP would publish it."""
        return json.dumps(
            {
                "specversion": "1.0",
                "id": self.event_id,
                "source": "okta/stream-test",
                "type": "idp.user.roles.changed",
                "subject": self.user_id,
                "data": {
                    "user_id": self.user_id,
                    "roles": [
                        {"role_id": role, "primary": index == 0}
                        for index, role in enumerate(self.roles)
                    ],
                },
            }
        ).encode()


def user_ids(count: int, prefix: str = "u") -> list[str]:
    """`count` distinct user ids."""
    return [f"{prefix}-{index:04d}" for index in range(count)]


def workload(users: Sequence[str], events: int, *, seed: int) -> list[RoleEvent]:
    """`events` role changes spread evenly over `users` in a shuffled order.

    Each user's events walk forward through `ROLE_SETS` from a random start, so the role sets
    of one user are all different and every step is allowed.
    """
    rng = random.Random(seed)
    owners = [users[index % len(users)] for index in range(events)]
    rng.shuffle(owners)
    counts = Counter(owners)
    assert max(counts.values()) <= len(ROLE_SETS), "too many events per user for distinct sets"
    step = {user: rng.randrange(len(ROLE_SETS) - counts[user] + 1) for user in counts}
    stream = []
    for index, user in enumerate(owners):
        stream.append(RoleEvent(f"evt-{seed}-{index:05d}", user, ROLE_SETS[step[user]]))
        step[user] += 1
    return stream


def seed_users(simulator: CxoneSimulator, users: Iterable[str]) -> None:
    """Store each user in CXone with a name, an email and no roles."""
    for user in users:
        simulator.seed_user(
            user, f"{user}@example.com", given_name=user, emails=[f"{user}@example.com"]
        )


class EventProducer:
    """A producer of workload events that reports where each one landed."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._producer: AIOKafkaProducer | None = None
        self.produced: dict[Position, RoleEvent] = {}

    async def __aenter__(self) -> EventProducer:
        # Idempotent where the broker has it: a batch retried after a broker failure is kept once.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            acks="all",
            enable_idempotence=await idempotence_at(self._bootstrap_servers),
            linger_ms=5,
        )
        await self._producer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def send(
        self, events: Sequence[RoleEvent], *, partition: int | None = None
    ) -> dict[Position, RoleEvent]:
        """Produce events keyed by user id, in order; return each one's acknowledged position."""
        assert self._producer is not None, "use EventProducer as an async context manager"
        futures = [
            await self._producer.send(
                self._topic, value=event.value(), key=event.user_id.encode(), partition=partition
            )
            for event in events
        ]
        sent = await asyncio.gather(*futures)
        positions = {
            (metadata.partition, metadata.offset): event
            for metadata, event in zip(sent, events, strict=True)
        }
        self.produced.update(positions)
        return positions


async def produce_events(
    bootstrap_servers: str, topic: str, events: Sequence[RoleEvent]
) -> dict[Position, RoleEvent]:
    """Produce events keyed by user id, in order; return each one's acknowledged position."""
    async with EventProducer(bootstrap_servers, topic) as producer:
        return await producer.send(events)


def last_roles(events: Iterable[RoleEvent]) -> dict[str, frozenset[str]]:
    """Each user's roles as their last event sets them."""
    return {event.user_id: frozenset(event.roles) for event in events}


def cxone_roles(simulator: CxoneSimulator, user: str) -> frozenset[str]:
    """The role values CXone holds for a user."""
    return frozenset(role["value"] for role in simulator.get_user(user).get("roles") or ())


def written_roles(simulator: CxoneSimulator) -> dict[str, list[frozenset[str]]]:
    """The role sets of every successful PUT of each user, in the order CXone received them."""
    writes: dict[str, list[frozenset[str]]] = defaultdict(list)
    for record in simulator.requests:
        if record.method == "PUT" and record.status == 200:
            body: dict[str, Any] = record.json()
            user = record.path.rsplit("/", 1)[-1]
            writes[user].append(frozenset(role["value"] for role in body.get("roles") or ()))
    return writes


def assert_every_record_audited(
    results: Mapping[Position, AuditEvent], produced: Mapping[Position, RoleEvent]
) -> None:
    """Every produced record has an audit event for its own event id."""
    missing = sorted(set(produced) - set(results))
    assert missing == [], f"{len(missing)} records without an audit event, first {missing[:5]}"
    mismatched = [
        position
        for position, event in produced.items()
        if results[position].data.event_id != event.event_id
    ]
    assert mismatched == []


async def committed_offsets(
    bootstrap_servers: str, group_id: str, topic: str, partitions: int
) -> dict[int, int | None]:
    """The group's committed offset of each partition, read by a probe outside the group."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group_id)
    await probe.start()
    try:
        return {
            partition: await probe.committed(TopicPartition(topic, partition))
            for partition in range(partitions)
        }
    finally:
        await probe.stop()


def expected_commits(produced: Iterable[Position], partitions: int) -> dict[int, int | None]:
    """The commit value of each partition once every produced record is finished."""
    ends: dict[int, int | None] = dict.fromkeys(range(partitions))
    for partition, offset in produced:
        current = ends[partition]
        ends[partition] = max(offset + 1, current or 0)
    return ends


def written_indices(
    simulator: CxoneSimulator, events: Iterable[RoleEvent]
) -> dict[str, list[int | None]]:
    """Per user, the index (in the user's own event order) of the event each PUT wrote."""
    index_of: dict[tuple[str, frozenset[str]], int] = {}
    counts: Counter[str] = Counter()
    for event in events:
        key = (event.user_id, frozenset(event.roles))
        assert key not in index_of, f"{event.user_id} has two events with the roles {event.roles}"
        index_of[key] = counts[event.user_id]
        counts[event.user_id] += 1
    return {
        user: [index_of.get((user, roles)) for roles in sets]
        for user, sets in written_roles(simulator).items()
    }


def gone_back(indices: Mapping[str, Sequence[int | None]]) -> dict[str, Sequence[int | None]]:
    """The users whose written states are not a non-decreasing run of known event indices."""
    return {
        user: written
        for user, written in indices.items()
        if None in written or list(written) != sorted(written)  # type: ignore[type-var]
    }


async def feed(
    producer: EventProducer,
    streams: Mapping[int, Sequence[RoleEvent]],
    stop: asyncio.Event,
    *,
    slice_size: int = 30,
    pace: float = 0.15,
) -> None:
    """Produce each partition's events in slices, both partitions at a steady pace, until done."""
    longest = max(len(events) for events in streams.values())
    for start in range(0, longest, slice_size):
        for partition, events in streams.items():
            await producer.send(events[start : start + slice_size], partition=partition)
        # Pacing, not synchronisation: the stream keeps flowing while the group changes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pace)
        if stop.is_set():
            return
