"""The two processes of docker compose's sandbox profile, run here without Docker."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import socket
import sys

import httpx

from consumer.errors import InvalidEvent
from consumer.events import parse_event
from consumer.sandbox.feed import TopicReader
from consumer.sandbox.traffic import send_traffic, traffic
from tests.conftest import Topics
from tests.integration.harness import ROOT

WITHIN = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_simulator_serves_seeded_users_until_sigterm() -> None:
    """`python -m consumer.sandbox.serve` serves the seeded simulator and exits 0 on SIGTERM."""
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumer.sandbox.serve",
        "--port",
        str(port),
        "--users",
        "3",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(WITHIN):
            line = (await process.stdout.readline()).decode()
        assert line == f"CXone simulator on http://127.0.0.1:{port}/scim/v2 with 3 seeded users\n"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            seeded = (await client.get("/_sim/users/u-1003")).json()
            missing = await client.get("/_sim/users/u-1004")
        assert seeded["roles"][0]["value"] == "agent_basic"
        assert missing.status_code == 404
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WITHIN):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_traffic_sends_its_mix_keyed_by_user(topics: Topics) -> None:
    """The traffic generator puts exactly its mix on the topic, each record keyed by its user."""
    [topic] = await topics.create("traffic", partitions=3)
    stop = asyncio.Event()
    sender = asyncio.create_task(
        send_traffic(topics.bootstrap_servers, topic, per_second=500, users=5, stop=stop, seed=7)
    )
    async with TopicReader(topics.bootstrap_servers, topic) as reader:
        try:
            await reader.wait_until(
                lambda r: len(r.records) >= 100 or sender.done(), within=WITHIN, what="records"
            )
        finally:
            stop.set()
            sent = await sender
        await reader.wait_until(lambda r: len(r.records) >= sent, within=WITHIN, what="the rest")
    expected = list(itertools.islice(traffic(5, random.Random(7)), sent))
    assert sent >= 100
    assert sorted(_comparable(r.key, r.value) for r in expected) == sorted(
        _comparable(key, value) for key, value, _ in reader.records
    )


def _comparable(key: bytes | None, value: bytes | None) -> tuple[bytes, str]:
    """A record's key and its event without the send time; a bad record as its bytes."""
    assert key is not None
    assert value is not None
    try:
        event = parse_event(value)
    except InvalidEvent:
        return key, value.decode()
    assert key == event.user_id.encode()
    return key, event.model_copy(update={"time": None}).model_dump_json()
