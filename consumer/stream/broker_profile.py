"""What the brokers behind the bootstrap servers can do, asked once when a client starts.

Apache Kafka grants an idempotent producer its producer id and answers ListOffsets(latest)
with the log end. Tansu 0.6 advertises InitProducerId but answers it UNKNOWN_SERVER_ERROR, and
answers ListOffsets(latest) with the base offset of the last batch + 1 (an undercount). Both
gaps are recognised here, by that one answer, and nowhere else: producers turn idempotence on
where producer ids are granted, and `LogEnd` allows for the undercount only on such a broker.
A broker that refuses producer ids for another reason (an ACL without IDEMPOTENT_WRITE or
WRITE) gets a non-idempotent producer, with a warning, and exact ends.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.transaction import InitProducerIdRequest

log = structlog.get_logger(__name__)

UNKNOWN_SERVER_ERROR = -1
PROBE_TRANSACTION_TIMEOUT_MS = 60_000
PROBE_RETRY_SECONDS = 0.2


@dataclass(frozen=True)
class BrokerProfile:
    """The broker behaviours the clients adapt to."""

    idempotence: bool = True
    """Producers may enable idempotence: the broker grants producer ids."""
    end_undercounted: bool = False
    """ListOffsets(latest) may answer less than the log end (Tansu 0.6)."""


APACHE_KAFKA = BrokerProfile()
TANSU = BrokerProfile(idempotence=False, end_undercounted=True)


def profile_from_answer(error_code: int) -> BrokerProfile:
    """The profile of a broker that answered InitProducerId with `error_code`."""
    if error_code == 0:
        return APACHE_KAFKA
    if error_code == UNKNOWN_SERVER_ERROR:
        return TANSU
    return BrokerProfile(idempotence=False)


async def probe_broker(connection: dict[str, Any], *, within: float = 30.0) -> BrokerProfile:
    """Ask a broker for a producer id (what an idempotent producer does first) and profile it.

    `connection` is `connection_options(settings)`. A retriable answer (a broker still loading
    its transaction state answers COORDINATOR_LOAD_IN_PROGRESS) is asked again within `within`
    seconds; connection errors reach the caller, which retries the broker as it retries any
    client start.
    """
    client = AIOKafkaClient(**connection, client_id="cxone-role-sync-probe")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    try:
        await client.bootstrap()
        while True:
            answer = await client.send(
                client.get_random_node(), InitProducerIdRequest(None, PROBE_TRANSACTION_TIMEOUT_MS)
            )
            error = for_code(answer.error_code)
            if answer.error_code in (0, UNKNOWN_SERVER_ERROR) or not error.retriable:
                break
            if loop.time() > deadline:
                break
            await asyncio.sleep(PROBE_RETRY_SECONDS)
    finally:
        await client.close()
    profile = profile_from_answer(answer.error_code)
    if not profile.idempotence and not profile.end_undercounted:
        log.warning(
            "kafka.idempotence_off",
            error=error.__name__,
            hint="grant IDEMPOTENT_WRITE on the cluster or WRITE on the audit and DLQ topics",
        )
    return profile


async def idempotence_at(bootstrap_servers: str) -> bool:
    """Whether a producer to these plaintext brokers may be idempotent (the sandbox, the
    benchmark's and the tests' producers, which have no settings to build from)."""
    return (await probe_broker({"bootstrap_servers": bootstrap_servers})).idempotence
