"""Which brokers a test session runs the integration suite on, and which tests run on each.

Every test that takes the `broker` fixture runs on the session's primary broker. Tests marked
`core` (the pipeline, crash and rebalance tests) run on every broker of the plan. The
primary is, in order: the cluster of `KAFKA_BOOTSTRAP_SERVERS`; Apache Kafka 4.x when Java 17
and Maven are here; a testcontainers Kafka when a Docker engine answers; the embedded Tansu.
With Apache Kafka, the core tests also run on Tansu (still a supported broker) and on Kafka 3.9
(which still accepts the protocol versions 4.0 removed: a green 3.9 run proves nothing about
4.x, nor the reverse). `--brokers a,b` names the brokers instead, the first being the primary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.apache_kafka.release import KAFKA_3, KAFKA_4, RELEASES

TANSU = "tansu"
ENVIRONMENT = "env"
TESTCONTAINERS = "testcontainers"
KNOWN = (*RELEASES, TANSU, ENVIRONMENT, TESTCONTAINERS)


@dataclass(frozen=True)
class BrokerPlan:
    """The brokers of one session: everything on `primary`, `core` tests on `others` too."""

    primary: str
    others: tuple[str, ...] = ()
    note: str | None = None
    """One line saying why Apache Kafka is not used, when it is not."""

    def brokers_for(self, core: bool) -> list[str]:
        """The broker labels a test runs on."""
        return [self.primary, *self.others] if core else [self.primary]

    def describe(self) -> str:
        """The plan in one line, for the report header."""
        line = f"brokers: everything on {self.primary}"
        if self.others:
            line += f"; core tests also on {', '.join(self.others)}"
        return line


def parse_brokers(value: str) -> BrokerPlan:
    """A plan from `--brokers`: a comma-separated list of labels, the first the primary."""
    labels = [label.strip() for label in value.split(",") if label.strip()]
    unknown = [label for label in labels if label not in KNOWN]
    if not labels or unknown:
        raise ValueError(
            f"--brokers: unknown broker {', '.join(unknown) or '(none)'}; known: {', '.join(KNOWN)}"
        )
    return BrokerPlan(labels[0], tuple(dict.fromkeys(labels[1:])))


def choose_plan(
    *,
    bootstrap_servers: str | None,
    missing_tools: Callable[[], str | None],
    docker_answers: Callable[[], bool],
) -> BrokerPlan:
    """The default plan for this machine (see the module's docstring)."""
    if bootstrap_servers:
        return BrokerPlan(ENVIRONMENT)
    missing = missing_tools()
    if missing is None:
        return BrokerPlan(KAFKA_4.label, (TANSU, KAFKA_3.label))
    if docker_answers():
        return BrokerPlan(TESTCONTAINERS, (TANSU,), note=f"Apache Kafka jars not used: {missing}")
    return BrokerPlan(
        TANSU, note=f"Apache Kafka not available ({missing}): the integration tests run on Tansu"
    )
