"""Creating topics on any Kafka-protocol broker, and waiting until they are usable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

TOPIC_ALREADY_EXISTS = 36


async def create_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    *,
    partitions: int = 1,
    replication_factor: int = 1,
    configs: Mapping[str, str] | None = None,
    ready_within: float = 15.0,
) -> None:
    """Create topics (existing ones are left alone) and wait until each partition has a leader."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(name, partitions, replication_factor, topic_configs=dict(configs or {}))
                for name in wanted
            ],
            timeout_ms=int(ready_within * 1000),
        )
        # aiokafka reports per-topic failures in the response instead of raising.
        failures = [
            f"{topic}: {message or code}"
            for topic, code, message in _topic_errors(response)
            if code not in (0, TOPIC_ALREADY_EXISTS)
        ]
        if failures:
            raise RuntimeError("could not create topics: " + "; ".join(failures))
        await _wait_until_led(admin, set(wanted), ready_within)
    finally:
        await admin.close()


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    """Return (topic, error code, message) of a CreateTopics response of any version."""
    errors: list[tuple[str, int, str | None]] = []
    for entry in getattr(response, "topic_errors", []):
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        errors.append((str(topic), int(code), message))
    return errors


async def _wait_until_led(admin: AIOKafkaAdminClient, wanted: set[str], within: float) -> None:
    """Poll metadata until every partition of every topic has a leader.

    A real Kafka creates topics asynchronously: listed first, then each partition gets its
    leader, and a produce before that answers LEADER_NOT_AVAILABLE.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        described = await admin.describe_topics(sorted(wanted))
        led = {
            topic["topic"]
            for topic in described
            if topic["error_code"] == 0
            and topic["partitions"]
            and all(partition["leader"] >= 0 for partition in topic["partitions"])
        }
        if wanted <= led:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"topics without a leader in time: {sorted(wanted - led)}")
        await asyncio.sleep(0.05)
