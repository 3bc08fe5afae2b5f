"""The per-event flow done right, one event at a time: the yardstick the service is held against.

Run as `python -m bench.sequential_peer` (a process of its own, so its CPU is read from /proc
like the service's): a plain aiokafka consumer in its own group reads the input topic and, for
each record in turn, reads the user (GET), writes its roles back with every other attribute
kept (PUT, with If-Match when there is an ETag), publishes one audit event and waits for the
broker's acknowledgement, and only then commits the record's offset + 1. Nothing overlaps: no
concurrency, no batching, no folding, no policy beyond what the event asks. It keeps one
keep-alive HTTP connection and one token, over the service's own HTTP stack (httpx over the
aiohttp transport), configured by the same CXONE_* variables. It stops after `--records`
records and prints one JSON line: counts, and the wall-clock and CPU seconds from the first
record in hand to the last commit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, datetime

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import SecretStr

from consumer.events import (
    Outcome,
    RoleChangeEvent,
    SourcePosition,
    SyncResult,
    audit_event_of,
    parse_event,
)
from consumer.scim import mapping
from consumer.scim.auth import CxoneAuth, TokenProvider
from consumer.scim.client import SCIM_MEDIA_TYPE, build_http_client, user_path
from consumer.settings import HttpTransport


def desired_roles(event: RoleChangeEvent) -> list[mapping.DesiredRole]:
    """The event's roles as written, primary first; no catalog, no policy."""
    roles = sorted(event.desired_roles, key=lambda role: not role.primary)
    return [
        mapping.DesiredRole(value=role.role_id, display=role.display_name, primary=role.primary)
        for role in roles
    ]


async def _apply(
    http: httpx.AsyncClient, base_url: str, event: RoleChangeEvent
) -> tuple[Outcome, int]:
    """GET the user, PUT it back with the event's roles; the outcome and the last status."""
    url = base_url + user_path(event.user_id)
    headers = {"Accept": SCIM_MEDIA_TYPE}
    got = await http.get(url, headers=headers)
    if got.status_code != 200:
        return Outcome.FAILED, got.status_code
    document = got.json()
    active = mapping.is_active(document) if event.active is None else event.active
    roles = desired_roles(event)
    if not mapping.needs_write(document, roles, active=active):
        return Outcome.UNCHANGED, got.status_code
    payload = mapping.payload_with_roles(document, roles, active=active)
    put_headers = {**headers, "Content-Type": SCIM_MEDIA_TYPE}
    if (etag := got.headers.get("ETag")) is not None:
        put_headers["If-Match"] = etag
    put = await http.put(url, content=payload, headers=put_headers)
    return (Outcome.SYNCED if put.status_code == 200 else Outcome.FAILED), put.status_code


async def run(arguments: argparse.Namespace) -> dict[str, float]:
    """Process `arguments.records` records one at a time; return counts and timings."""
    http = build_http_client(HttpTransport.AIOHTTP, timeout=30.0, max_connections=1)
    # Credentials come in the environment, as the service's do, never on the command line.
    tokens = TokenProvider(
        http,
        token_url=os.environ["CXONE_TOKEN_URL"],
        client_id=os.environ["CXONE_CLIENT_ID"],
        client_secret=SecretStr(os.environ["CXONE_CLIENT_SECRET"]),
        access_key_id=os.environ["CXONE_ACCESS_KEY_ID"],
        access_key_secret=SecretStr(os.environ["CXONE_ACCESS_KEY_SECRET"]),
    )
    http.auth = CxoneAuth(tokens)
    base_url = os.environ["CXONE_SCIM_BASE_URL"].rstrip("/") + "/"
    consumer = AIOKafkaConsumer(
        arguments.input,
        bootstrap_servers=arguments.bootstrap_servers,
        group_id=arguments.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=arguments.bootstrap_servers, acks="all", enable_idempotence=False
    )
    await producer.start()
    await consumer.start()
    outcomes: dict[str, int] = {}
    # Timed from the first record in hand, so joining the group is not counted.
    started_at = started_cpu = 0.0
    try:
        await tokens.token()
        done = 0
        while done < arguments.records:
            record = await consumer.getone()
            received = time.monotonic()
            if done == 0:
                started_at, started_cpu = received, time.process_time()
            event = parse_event(record.value)
            outcome, status = await _apply(http, base_url, event)
            result = SyncResult(
                event_id=event.id,
                user_id=event.user_id,
                outcome=outcome,
                http_status=status,
                attempts=1,
                source=SourcePosition(
                    topic=record.topic, partition=record.partition, offset=record.offset
                ),
                latency_ms=round((time.monotonic() - received) * 1000.0, 3),
                processed_at=datetime.now(UTC),
            )
            audit = audit_event_of(result).model_dump_json().encode()
            await producer.send_and_wait(arguments.audit, value=audit, key=record.key)
            tp = TopicPartition(record.topic, record.partition)
            await consumer.commit({tp: record.offset + 1})
            outcomes[outcome.value] = outcomes.get(outcome.value, 0) + 1
            done += 1
        seconds = time.monotonic() - started_at
        cpu_seconds = time.process_time() - started_cpu
    finally:
        await consumer.stop()
        await producer.stop()
        await http.aclose()
    return {"records": done, "seconds": seconds, "cpu_seconds": cpu_seconds, **outcomes}


def main() -> None:
    """Parse the arguments, process the records, print the counts as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.sequential_peer")
    for name in ("bootstrap-servers", "input", "audit", "group"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--records", type=int, required=True)
    counts = asyncio.run(run(parser.parse_args()))
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
