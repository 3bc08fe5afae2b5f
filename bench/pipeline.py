"""One benchmark run's Kafka side: its own topics and group on the embedded broker, and waiting."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from bench.audit import AuditTally
from bench.service_process import ServiceProcess
from bench.workload import event_id, role_change
from consumer.sandbox.broker import EmbeddedBroker
from consumer.stream.broker_profile import idempotence_at


@dataclass(frozen=True)
class RunTopics:
    """Fresh topic names and a fresh group id, so runs never see each other's records."""

    bootstrap_servers: str
    run: str
    input: str
    audit: str
    dlq: str
    group: str

    def environment(self) -> dict[str, str]:
        """The KAFKA_* variables that point the service at these topics."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KAFKA_INPUT_TOPIC": self.input,
            "KAFKA_AUDIT_TOPIC": self.audit,
            "KAFKA_DLQ_TOPIC": self.dlq,
            "KAFKA_GROUP_ID": self.group,
        }


async def create_run_topics(broker: EmbeddedBroker, name: str, *, partitions: int) -> RunTopics:
    """Create the input, audit and DLQ topics of one run, each with `partitions` partitions."""
    run = f"{name}-{uuid.uuid4().hex[:8]}"
    topics = RunTopics(
        bootstrap_servers=broker.bootstrap_servers,
        run=run,
        input=f"bench.{run}.input",
        audit=f"bench.{run}.audit",
        dlq=f"bench.{run}.dlq",
        group=f"bench.{run}",
    )
    await broker.create_topics([topics.input, topics.audit, topics.dlq], partitions=partitions)
    return topics


async def wait_for_audits(
    tally: AuditTally, count: int, *, services: list[ServiceProcess], within: float
) -> None:
    """Poll until `count` input records have an audit; fail if a service dies or time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while await tally.poll() < count:
        for service in services:
            service.check_alive()
        if loop.time() > deadline:
            raise TimeoutError(
                f"only {tally.distinct:,} of {count:,} records had an audit after {within:g} s"
            )


async def produce_paced(
    topics: RunTopics,
    *,
    start: int,
    users: int,
    rate: float,
    seconds: float,
    sent_at: dict[str, float] | None = None,
) -> int:
    """Produce events `start`.. at `rate` per second for `seconds`; returns how many were sent.

    `sent_at`, when given, receives the wall-clock time each event id was handed to the producer.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=topics.bootstrap_servers,
        acks="all",
        enable_idempotence=await idempotence_at(topics.bootstrap_servers),
        linger_ms=5,
    )
    await producer.start()
    total = int(rate * seconds)
    sent = 0
    try:
        acknowledgements = []
        loop = asyncio.get_running_loop()
        began = loop.time()
        while sent < total:
            due = min(total, int((loop.time() - began) * rate) + 1)
            while sent < due:
                key, value = role_change(start + sent, users, run=topics.run)
                if sent_at is not None:
                    sent_at[event_id(topics.run, start + sent)] = time.time()
                acknowledgements.append(await producer.send(topics.input, value=value, key=key))
                sent += 1
            await asyncio.sleep(0.01)
        await asyncio.gather(*acknowledgements)
    finally:
        await producer.stop()
    return sent
