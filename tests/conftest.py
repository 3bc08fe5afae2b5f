"""Shared fixtures: real Kafka-protocol brokers, unique topics, and the CXone simulator over HTTP.

The `broker` fixture is the session's shared broker, chosen by `tests/broker_plan.py`: Apache
Kafka 4.x from its Maven jars when Java 17 and Maven are here (the `core` tests also on Tansu and
Kafka 3.9), else Tansu. A test taking it runs once per broker of its plan, the broker's label in
its id (`[kafka-4.4.0]`); the run ends with a line naming the brokers used, and a failed test's
report carries the tail of its broker's log. It is shared, so every test takes unique topic names
and group ids from the `topics` fixture. Tests that freeze, kill or restart a broker use a
private one: `embedded_broker` (Tansu) or `kafka_clusters` (Apache Kafka, one or three nodes).

The broker fixtures are synchronous (a process and a socket probe), so they need no event
loop; the simulator runs under uvicorn in the test's own event loop, so tests drive it
in-process without locks.
"""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from consumer.sandbox.broker import EmbeddedBroker, resolve_tansu_binary
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import CxoneSimulator
from consumer.sandbox.tokens import Credentials
from consumer.sandbox.topics import create_topics
from tests.apache_kafka.cluster import KafkaCluster
from tests.apache_kafka.release import RELEASES, KafkaRelease, missing_tools
from tests.broker_plan import (
    ENVIRONMENT,
    TANSU,
    TESTCONTAINERS,
    BrokerPlan,
    choose_plan,
    parse_brokers,
)

TEST_CREDENTIALS = Credentials(
    client_id="test-client",
    client_secret="test-client-secret",
    access_key_id="test-access-key",
    access_key_secret="test-access-key-secret",
)
"""The credentials the `simulator` fixture accepts."""


PLAN = pytest.StashKey[BrokerPlan]()
USED = pytest.StashKey[Counter[str]]()
LOG_LINES = 120


@dataclass(frozen=True)
class BrokerEndpoint:
    """Where the session's broker listens, and what it is.

    `kind` is `kafka` (Apache Kafka started from its jars), `tansu`, `env` or `testcontainers`;
    `label` names it in test ids and reports (`kafka-4.4.0`, `tansu`).
    """

    bootstrap_servers: str
    kind: str
    label: str = ""
    log_tail: Callable[[], str] = field(default=lambda: "", compare=False, repr=False)

    @property
    def supports_idempotence(self) -> bool:
        """Whether producers may enable idempotence (Tansu 0.6 cannot)."""
        return self.kind != TANSU


class Topics:
    """Unique topic names and group ids for one test on the shared broker."""

    def __init__(
        self, bootstrap_servers: str, test_name: str, *, replication_factor: int = 1
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.replication_factor = replication_factor
        # Kafka topic names allow [a-zA-Z0-9._-], at most 249 characters.
        self._slug = re.sub(r"[^a-zA-Z0-9]+", "-", test_name).strip("-")[:60]

    def name(self, prefix: str = "topic") -> str:
        """Return a topic name no other test uses; it is not created."""
        return f"{prefix}.{self._slug}.{uuid.uuid4().hex[:8]}"

    def group_id(self, prefix: str = "group") -> str:
        """Return a consumer group id no other test uses."""
        return self.name(prefix)

    async def create(
        self, *prefixes: str, partitions: int = 1, configs: Mapping[str, str] | None = None
    ) -> list[str]:
        """Create one unique topic per prefix (with topic `configs`); return their names."""
        names = [self.name(prefix) for prefix in prefixes]
        await create_topics(
            self.bootstrap_servers,
            names,
            partitions=partitions,
            replication_factor=self.replication_factor,
            configs=configs,
        )
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


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--brokers`: the brokers to run on, comma-separated, the first running everything."""
    parser.addoption(
        "--brokers",
        default=None,
        help="brokers for the integration tests, e.g. kafka-4.4.0,tansu,kafka-3.9.2 "
        "(the first runs every test, the others the `core` tests)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Decide the session's broker plan once."""
    chosen = config.getoption("--brokers")
    try:
        plan = (
            parse_brokers(chosen)
            if chosen
            else choose_plan(
                bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
                missing_tools=missing_tools,
                docker_answers=_docker_answers,
            )
        )
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[PLAN] = plan
    config.stash[USED] = Counter()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Say in one line why Apache Kafka is not used, when it is not."""
    note = session.config.stash[PLAN].note
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if note and reporter is not None:
        reporter.write_line(note)


def pytest_report_header(config: pytest.Config) -> str:
    """The broker plan, in the verbose report header."""
    return config.stash[PLAN].describe()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that needs the shared broker once per broker of its plan."""
    if "broker" not in metafunc.fixturenames:
        return
    core = metafunc.definition.get_closest_marker("core") is not None
    labels = metafunc.config.stash[PLAN].brokers_for(core)
    metafunc.parametrize("broker", labels, indirect=True, scope="session", ids=labels)


PRIVATE_TANSU = "tansu-private"
"""The label of a test's own embedded broker (`embedded_broker`)."""


def _brokers_of(item: pytest.Item) -> list[BrokerEndpoint | KafkaCluster | EmbeddedBroker]:
    """The brokers a test took: the shared one, its private clusters, its embedded Tansu."""
    found: list[BrokerEndpoint | KafkaCluster | EmbeddedBroker] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, ClusterFactory):
            found.extend(value.started)
        elif isinstance(value, BrokerEndpoint | KafkaCluster | EmbeddedBroker):
            found.append(value)
    return found


def _label(broker: BrokerEndpoint | KafkaCluster | EmbeddedBroker) -> str:
    return PRIVATE_TANSU if isinstance(broker, EmbeddedBroker) else broker.label


def _log_tail(broker: BrokerEndpoint | KafkaCluster | EmbeddedBroker) -> str:
    if isinstance(broker, EmbeddedBroker):
        return _tail(broker.output)
    if isinstance(broker, BrokerEndpoint):
        return broker.log_tail()
    return broker.log_tail(LOG_LINES)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Name and count the brokers each test ran on; show their logs' tails when it fails."""
    brokers = _brokers_of(item)
    if call.when == "call" and brokers:
        # In the JUnit report of every test, beside the id that names the shared broker.
        item.user_properties.append(("brokers", ",".join(_label(each) for each in brokers)))
        for each in brokers:
            item.config.stash[USED][_label(each)] += 1
    report = yield
    if report.failed:
        for each in brokers:
            report.sections.append((f"broker log: {_label(each)}", _log_tail(each) or "(empty)"))
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """End the run with the brokers it used."""
    used = config.stash[USED]
    named = ", ".join(f"{label} ({count} tests)" for label, count in used.most_common())
    terminalreporter.write_line(f"brokers used: {named or 'none'}")


def _tail(text: str, lines: int = LOG_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> Iterator[BrokerEndpoint]:
    """The session's shared broker of this test's parameter (see `pytest_generate_tests`)."""
    label: str = getattr(request, "param", request.config.stash[PLAN].primary)
    if label == ENVIRONMENT:
        yield BrokerEndpoint(os.environ["KAFKA_BOOTSTRAP_SERVERS"], ENVIRONMENT, ENVIRONMENT)
        return
    if label == TESTCONTAINERS:
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # testcontainers before 4.10
            from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield BrokerEndpoint(kafka.get_bootstrap_server(), TESTCONTAINERS, TESTCONTAINERS)
        return
    if label == TANSU:
        with EmbeddedBroker(resolve_tansu_binary(os.environ.get("TANSU_BIN"))) as tansu:
            yield BrokerEndpoint(tansu.bootstrap_servers, TANSU, TANSU, lambda: _tail(tansu.output))
        return
    with KafkaCluster(RELEASES[label]) as cluster:
        yield BrokerEndpoint(
            cluster.bootstrap_servers(), "kafka", cluster.label, lambda: cluster.log_tail(LOG_LINES)
        )


class ClusterFactory:
    """Starts private Apache Kafka clusters for one test or module, and closes them after."""

    def __init__(self, release: KafkaRelease) -> None:
        self.release = release
        self.started: list[KafkaCluster] = []

    def __call__(self, *, nodes: int = 1, **options: Any) -> KafkaCluster:
        """Start a cluster of `nodes` nodes (`KafkaCluster`'s options) and return it, ready."""
        cluster = KafkaCluster(self.release, nodes=nodes, **options)
        self.started.append(cluster)
        cluster.start()
        return cluster

    def close(self) -> None:
        """Stop every cluster started here and delete its files."""
        for cluster in self.started:
            cluster.close()


@pytest.fixture(scope="session")
def kafka_release(request: pytest.FixtureRequest) -> KafkaRelease:
    """The Apache Kafka release private clusters run: the plan's, or skip without Java or Maven."""
    plan = request.config.stash[PLAN]
    for label in (plan.primary, *plan.others):
        if label in RELEASES:
            return RELEASES[label]
    pytest.skip(plan.note or "this session runs no Apache Kafka from its jars")


@pytest.fixture
def kafka_clusters(kafka_release: KafkaRelease) -> Iterator[ClusterFactory]:
    """Private Apache Kafka clusters for one test: `kafka_clusters(nodes=3)` starts one."""
    factory = ClusterFactory(kafka_release)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def kafka_module_clusters(kafka_release: KafkaRelease) -> Iterator[ClusterFactory]:
    """Private Apache Kafka clusters shared by the tests of one module (stopped after it)."""
    factory = ClusterFactory(kafka_release)
    try:
        yield factory
    finally:
        factory.close()


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
