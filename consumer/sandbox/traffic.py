"""`python -m consumer.sandbox.traffic`: a steady stream of IdP events, for a live dashboard.

Mostly everyday role changes, with approved privileged grants, refused escalations, a
separation-of-duties conflict, deactivations and the odd bad record among them, so every panel
of the dashboard has something to show.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from aiokafka import AIOKafkaProducer

from consumer.sandbox.samples import SampleRecord, user_id
from consumer.sandbox.topics import create_topics
from consumer.send import EventRequest, encode, event_document
from consumer.signals import run_until_signalled
from consumer.stream.broker_profile import idempotence_at

EVERYDAY = (
    ("agent_voice",),
    ("agent_digital",),
    ("agent_blended",),
    ("agent_voice", "reporting_viewer"),
    ("team_lead",),
    ("supervisor",),
    ("qa_evaluator", "agent_voice"),
    ("wfm_scheduler",),
)


def traffic(users: int, rng: random.Random) -> Iterator[SampleRecord]:
    """An endless mix of events for users 1..`users`, each with a new event id."""
    for sequence in itertools.count(1):
        user = user_id(rng.randint(1, users))
        draw = rng.random()
        if draw < 0.02:
            yield SampleRecord(user.encode(), b'{"specversion": "1.0", "id": ', "bad record")
            continue
        label, request = _change(draw, rng)
        request = replace(request, user_id=user, event_id=f"evt-traffic-{sequence}")
        yield SampleRecord(user.encode(), encode(event_document(request)), label)


def _change(draw: float, rng: random.Random) -> tuple[str, EventRequest]:
    """The kind of change a draw in [0.02, 1) stands for."""
    if draw < 0.10:
        grant = ("agent_voice", "admin_support")
        return "approved privileged grant", _request(grant, approval="CHG-1:secops")
    if draw < 0.15:
        refused = rng.choice(("super_admin", "wfm_admin"))
        return "escalation", _request(("agent_voice", refused))
    if draw < 0.18:
        conflict = ("billing_admin", "billing_auditor")
        return "separation-of-duties conflict", _request(conflict, approval="CHG-2:secops")
    # Rare, as in life: a steady stream of revocations would trip the mass-revocation guard.
    if draw < 0.19:
        return "deactivation", _request((), deactivate=True)
    return "everyday change", _request(rng.choice(EVERYDAY))


def _request(roles: tuple[str, ...], **flags: Any) -> EventRequest:
    return EventRequest(user_id="", roles=roles, source="sandbox/traffic", **flags)


async def send_traffic(
    bootstrap_servers: str,
    topic: str,
    *,
    per_second: float,
    users: int,
    stop: asyncio.Event,
    seed: int | None = None,
) -> int:
    """Produce the mix at about `per_second` events a second until `stop`; return how many."""
    await create_topics(bootstrap_servers, [topic], partitions=3)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=await idempotence_at(bootstrap_servers),
    )
    await producer.start()
    sent = 0
    try:
        for record in traffic(users, random.Random(seed)):
            if stop.is_set():
                break
            await producer.send_and_wait(topic, value=record.value, key=record.key)
            sent += 1
            # Pacing a load generator, not waiting for a condition.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0 / per_second)
    finally:
        await producer.stop()
    return sent


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and send until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m consumer.sandbox.traffic", description=__doc__)
    parser.add_argument("--bootstrap-servers", default="localhost:9092")
    parser.add_argument("--topic", default="idp.role-changes")
    parser.add_argument("--per-second", type=float, default=2.0)
    parser.add_argument("--users", type=int, default=40)
    options = parser.parse_args(argv)

    run_until_signalled(
        lambda stop: send_traffic(
            options.bootstrap_servers,
            options.topic,
            per_second=options.per_second,
            users=options.users,
            stop=stop,
        )
    )


if __name__ == "__main__":
    main()
