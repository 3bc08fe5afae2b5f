"""What Apache Kafka refuses, handled as documented: ACLs of the standard authorizer and a topic's
size limit. Runs on the Apache Kafka of the broker plan only (`kafka_release`), one secured node
(`tests/secured_kafka.py`) for the module; the service logs in as `app` (SCRAM-SHA-512) and holds
only the ACLs a test grants.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from consumer.events import Outcome
from consumer.observability.metrics import REGISTRY
from consumer.sandbox.feed import AuditReader, produce
from consumer.sandbox.server import SimulatorServer
from consumer.settings import Settings
from consumer.stream.publisher import DeliveryPolicy
from tests.conftest import ClusterFactory, Topics
from tests.integration.harness import (
    Pipeline,
    fast_tuning,
    make_pipeline,
    running_service,
    wait_until,
)
from tests.integration.test_kafka_tls import roles_of
from tests.integration.test_no_secrets import run_with_bad_settings
from tests.integration.test_pipeline import committed_offset, role_change
from tests.integration.test_stream_engine import wait_for_commits
from tests.kafka_acls import Grant, Operation, ResourceType
from tests.secured_kafka import APP, APP_SECRET, SCRAM, SecuredKafka, grant, start_secured

pytestmark = pytest.mark.asyncio

WITHIN = 60.0
USER = "u-refused-1"
TUNING = replace(
    fast_tuning(),
    delivery=DeliveryPolicy(wait_initial=0.05, wait_max=0.2, blocked_wait=0.5),
    producer_request_timeout_ms=2_000,
)
"""A blocked record is tried again every 0.5 s instead of 30 s; the logic is the same."""


@pytest.fixture(scope="module")
def secured(
    kafka_module_clusters: ClusterFactory, tmp_path_factory: pytest.TempPathFactory
) -> SecuredKafka:
    """The module's secured Apache Kafka node."""
    return start_secured(kafka_module_clusters, tmp_path_factory.mktemp("secured-kafka"))


def blocked_gauge() -> float:
    """`cxone_sync_publish_blocked`, which the PublishBlocked alert watches."""
    value = REGISTRY.get_sample_value("cxone_sync_publish_blocked")
    assert value is not None
    return value


async def pipeline_on(
    kafka: SecuredKafka,
    server: SimulatorServer,
    request: pytest.FixtureRequest,
    audit_configs: Mapping[str, str] | None = None,
) -> Pipeline:
    """Topics (the audit topic with `audit_configs`) and one event waiting on the input."""
    topics = Topics(kafka.bootstrap_servers("PLAINTEXT"), request.node.name)
    (audit_topic,) = await topics.create("audit", configs=audit_configs)
    (guard_topic,) = await topics.create("guard", configs={"cleanup.policy": "compact"})
    pipeline = await make_pipeline(
        topics, server, KAFKA_AUDIT_TOPIC=audit_topic, KAFKA_GUARD_TOPIC=guard_topic
    )
    pipeline = replace(pipeline, audit_topic=audit_topic)
    server.simulator.seed_user(USER, f"{USER}@example.com", roles=[("agent_basic", None, True)])
    await produce(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        [(USER.encode(), role_change(USER, "agent_voice", event_id="evt-refused-1"))],
    )
    return pipeline


def as_app(kafka: SecuredKafka, pipeline: Pipeline) -> Settings:
    """The service's settings: the SASL listener, logged in as `app`."""
    return pipeline.settings(
        kafka_bootstrap_servers=kafka.bootstrap_servers("SASL_PLAINTEXT"),
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=SCRAM,
        kafka_sasl_username=APP,
        kafka_sasl_password=APP_SECRET,
    )


def app_may(operation: Operation, resource: ResourceType, name: str) -> Grant:
    """An ACL allowing `app` one operation on one resource."""
    return Grant(f"User:{APP}", resource, name, operation)


def guard_ledger_grants(pipeline: Pipeline) -> list[Grant]:
    """What the service needs on the guard's ledger topic: read and write."""
    ledger = pipeline.environment["KAFKA_GUARD_TOPIC"]
    return [
        app_may(Operation.READ, ResourceType.TOPIC, ledger),
        app_may(Operation.WRITE, ResourceType.TOPIC, ledger),
    ]


@dataclass(frozen=True)
class BlockedRun:
    """What was seen while the audit record was blocked, and after the cause was fixed."""

    gauge_before: float
    gauge_blocked: float
    committed_while_blocked: int | None
    commits_after: dict[int, int | None]
    gauge_after: float
    audited: list[tuple[str, Outcome]]


async def blocked_until_fixed(
    settings: Settings, pipeline: Pipeline, fix: Callable[[], Awaitable[None]]
) -> BlockedRun:
    """Run the service until its audit record is blocked, `fix()` the cause, and run it until
    the record is audited, committed and readiness is back."""
    before = blocked_gauge()
    async with (
        running_service(settings, tuning=TUNING) as service,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await wait_until(
            lambda: service.health.not_ready_reason() == "publish_blocked",
            within=WITHIN,
            what="readiness to say publish_blocked",
        )
        blocked = blocked_gauge()
        committed_while_blocked = await committed_offset(pipeline)
        await fix()
        await audit.wait_until(
            lambda reader: len(reader.events) >= 1, within=WITHIN, what="the audit event"
        )
        commits = await wait_for_commits(
            pipeline.bootstrap_servers,
            pipeline.group_id,
            pipeline.input_topic,
            {0: 1},
            within=WITHIN,
        )
        await wait_until(
            lambda: service.health.not_ready_reason() is None,
            within=WITHIN,
            what="readiness to recover",
        )
        after = blocked_gauge()
        assert not service.task.done()
        await service.shutdown()
    return BlockedRun(
        before,
        blocked,
        committed_while_blocked,
        commits,
        after,
        [(event.data.event_id, event.data.outcome) for event in audit.events],
    )


def assert_blocked_then_delivered_once(run: BlockedRun) -> None:
    """Blocked (gauge up, nothing committed), then audited once, committed, the gauge down."""
    assert run.gauge_blocked == run.gauge_before + 1
    assert run.committed_while_blocked is None
    assert run.commits_after == {0: 1}
    assert run.gauge_after == run.gauge_before
    assert run.audited == [("evt-refused-1", Outcome.SYNCED)]


async def test_an_audit_topic_the_service_may_not_write_blocks_until_granted(
    secured: SecuredKafka, simulator_server: SimulatorServer, request: pytest.FixtureRequest
) -> None:
    """Without WRITE on the audit topic the record is blocked; granted, it goes on, nothing lost."""
    pipeline = await pipeline_on(secured, simulator_server, request)
    sasl = secured.bootstrap_servers("SASL_PLAINTEXT")
    await grant(
        sasl,
        [
            app_may(Operation.READ, ResourceType.TOPIC, pipeline.input_topic),
            app_may(Operation.READ, ResourceType.GROUP, pipeline.group_id),
            app_may(Operation.WRITE, ResourceType.TOPIC, pipeline.dlq_topic),
            *guard_ledger_grants(pipeline),
        ],
    )
    run = await blocked_until_fixed(
        as_app(secured, pipeline),
        pipeline,
        lambda: grant(sasl, [app_may(Operation.WRITE, ResourceType.TOPIC, pipeline.audit_topic)]),
    )

    assert_blocked_then_delivered_once(run)
    assert roles_of(simulator_server, USER) == ["agent_voice"]


@pytest.mark.parametrize("missing", ["group", "input"])
async def test_a_group_or_input_the_service_may_not_read_stops_run_with_one_line(
    secured: SecuredKafka,
    simulator_server: SimulatorServer,
    request: pytest.FixtureRequest,
    missing: str,
) -> None:
    """Without READ on the group, or on the input topic: exit 2, one line naming what it lacks."""
    pipeline = await pipeline_on(secured, simulator_server, request)
    sasl = secured.bootstrap_servers("SASL_PLAINTEXT")
    grants = [
        app_may(Operation.WRITE, ResourceType.TOPIC, pipeline.audit_topic),
        app_may(Operation.WRITE, ResourceType.TOPIC, pipeline.dlq_topic),
        *guard_ledger_grants(pipeline),
    ]
    if missing == "group":
        grants.append(app_may(Operation.READ, ResourceType.TOPIC, pipeline.input_topic))
    else:  # the topic is seen, so the group is joined, but not read
        grants.append(app_may(Operation.READ, ResourceType.GROUP, pipeline.group_id))
        grants.append(app_may(Operation.DESCRIBE, ResourceType.TOPIC, pipeline.input_topic))
    await grant(sasl, grants)
    settings = as_app(secured, pipeline)
    environment = {
        **pipeline.environment,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": SCRAM,
        "KAFKA_SASL_USERNAME": APP,
        "KAFKA_SASL_PASSWORD": APP_SECRET,
    }

    code, output = await run_with_bad_settings(environment)

    expected = {
        "group": "configuration error: KAFKA_GROUP_ID: the broker refuses this principal READ on "
        f"the consumer group {pipeline.group_id} (GROUP_AUTHORIZATION_FAILED); grant it READ "
        "on the group",
        "input": "configuration error: KAFKA_INPUT_TOPIC: the broker refuses this principal READ "
        f"on the topic {pipeline.input_topic} (TOPIC_AUTHORIZATION_FAILED); grant it READ on "
        "the topic",
    }[missing]
    assert code == 2
    assert [line for line in output.splitlines() if "error:" in line] == [expected]
    assert "Traceback" not in output
    assert await committed_offset(pipeline) is None
    assert roles_of(simulator_server, USER) == ["agent_basic"]


async def test_an_audit_event_above_the_topic_size_limit_blocks_until_the_limit_is_raised(
    secured: SecuredKafka, simulator_server: SimulatorServer, request: pytest.FixtureRequest
) -> None:
    """MESSAGE_TOO_LARGE from the broker blocks the record; a raised limit lets it through."""
    pipeline = await pipeline_on(
        secured, simulator_server, request, audit_configs={"max.message.bytes": "200"}
    )

    async def raise_the_limit() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.bootstrap_servers)
        await admin.start()
        try:
            await admin.alter_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC,
                        pipeline.audit_topic,
                        {"max.message.bytes": "1048588"},
                    )
                ]
            )
        finally:
            await admin.close()

    # The PLAINTEXT listener: no ACL in the way.
    run = await blocked_until_fixed(pipeline.settings(), pipeline, raise_the_limit)

    assert_blocked_then_delivered_once(run)
