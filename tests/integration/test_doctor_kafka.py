"""`doctor` on Apache Kafka: each permission probe under SASL/SCRAM and an authorizer passes for a
principal that holds the permission and fails for one that does not; topic settings the broker
reports are judged."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from consumer.doctor.diagnose import DoctorOptions, diagnose
from consumer.doctor.findings import Finding, Verdict
from consumer.sandbox.server import SimulatorServer
from consumer.settings import Settings, load_settings
from tests.conftest import TEST_CREDENTIALS, ClusterFactory
from tests.integration.harness import EXAMPLE_POLICY
from tests.kafka_acls import Grant, Operation, ResourceType
from tests.secured_kafka import (
    ADMIN,
    ADMIN_SECRET,
    APP,
    APP_SECRET,
    SCRAM,
    SecuredKafka,
    grant,
    sasl_options,
    start_secured,
    until_visible,
)

pytestmark = pytest.mark.asyncio

INPUT, AUDIT, DLQ, GROUP = (
    "idp.role-changes",
    "cxone.role-sync.audit",
    "idp.role-changes.dlq",
    "cxone-role-sync",
)
UNREADABLE, OTHER_GROUP = "idp.role-changes.unreadable", "someone-elses-group"


@pytest.fixture(scope="module")
def secured(
    kafka_module_clusters: ClusterFactory, tmp_path_factory: pytest.TempPathFactory
) -> SecuredKafka:
    """One node with SASL/SCRAM and the standard authorizer: no ACL, no access."""
    return start_secured(kafka_module_clusters, tmp_path_factory.mktemp("secured-kafka"))


async def _prepare(kafka: SecuredKafka) -> None:
    """The topics, and ACLs for `app`: read the input, use the group, write the audit only.

    Idempotent: the tests of the module share the node.
    """
    bootstrap = kafka.bootstrap_servers()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **sasl_options(ADMIN, ADMIN_SECRET))
    await admin.start()
    try:
        # An existing topic is reported in the answer, not raised.
        await admin.create_topics(
            [NewTopic(name, 2, 1) for name in (INPUT, AUDIT, DLQ, UNREADABLE)]
        )
    finally:
        await admin.close()
    await grant(
        bootstrap,
        [
            Grant(f"User:{APP}", ResourceType.TOPIC, INPUT, Operation.READ),
            Grant(f"User:{APP}", ResourceType.TOPIC, INPUT, Operation.DESCRIBE_CONFIGS),
            Grant(f"User:{APP}", ResourceType.GROUP, GROUP, Operation.READ),
            Grant(f"User:{APP}", ResourceType.TOPIC, AUDIT, Operation.WRITE),
            # Seen, but neither written nor read.
            Grant(f"User:{APP}", ResourceType.TOPIC, DLQ, Operation.DESCRIBE),
            Grant(f"User:{APP}", ResourceType.TOPIC, UNREADABLE, Operation.DESCRIBE),
        ],
    )
    await until_visible(bootstrap, {INPUT, AUDIT, DLQ, UNREADABLE})


def _settings(
    kafka: SecuredKafka, server: SimulatorServer, user: str, secret: str, **extra: object
) -> Settings:
    fields: dict[str, object] = {
        "kafka_bootstrap_servers": kafka.bootstrap_servers(),
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": SCRAM,
        "kafka_sasl_username": user,
        "kafka_sasl_password": secret,
        "cxone_scim_base_url": server.scim_base_url,
        "cxone_token_url": server.token_url,
        "cxone_client_id": TEST_CREDENTIALS.client_id,
        "cxone_client_secret": TEST_CREDENTIALS.client_secret,
        "policy_file": EXAMPLE_POLICY,
    }
    return load_settings(**(fields | extra))


def _verdicts(findings: list[Finding]) -> dict[str, Verdict]:
    return {finding.check: finding.verdict for finding in findings}


async def test_each_permission_probe_passes_with_the_permission_and_fails_without(
    secured: SecuredKafka, simulator_server: SimulatorServer
) -> None:
    """`app` may read the input, use the group, write the audit, not write the DLQ: so it says."""
    await _prepare(secured)

    findings = await diagnose(
        _settings(secured, simulator_server, APP, APP_SECRET), DoctorOptions()
    )

    verdicts = _verdicts(findings)
    assert verdicts["read input"] is Verdict.OK
    assert verdicts["group"] is Verdict.OK
    assert verdicts["write audit"] is Verdict.OK
    assert verdicts["write dlq"] is Verdict.FAIL
    write_dlq = next(f for f in findings if f.check == "write dlq")
    assert write_dlq.detail == f"the principal may not WRITE to {DLQ} (TOPIC_AUTHORIZATION_FAILED)"
    # DESCRIBE_CONFIGS was granted on the input only.
    assert verdicts["topic input"] is not Verdict.FAIL
    audit = next(f for f in findings if f.check == "topic audit")
    assert "configs not readable (TOPIC_AUTHORIZATION_FAILED)" in audit.detail


async def test_a_group_and_an_input_the_principal_may_not_read_fail(
    secured: SecuredKafka, simulator_server: SimulatorServer
) -> None:
    """Another group id, and an input topic `app` may only describe, fail their checks."""
    await _prepare(secured)
    settings = _settings(
        secured,
        simulator_server,
        APP,
        APP_SECRET,
        kafka_group_id=OTHER_GROUP,
        kafka_input_topic=UNREADABLE,
    )

    findings = await diagnose(settings, DoctorOptions())

    verdicts = _verdicts(findings)
    assert verdicts["group"] is Verdict.FAIL
    assert verdicts["read input"] is Verdict.FAIL
    read = next(f for f in findings if f.check == "read input")
    assert read.detail.startswith(f"the principal may not READ {UNREADABLE}")


async def test_the_super_user_passes_every_permission_probe(
    secured: SecuredKafka, simulator_server: SimulatorServer
) -> None:
    """A principal allowed everything passes every Kafka permission check."""
    await _prepare(secured)

    findings = await diagnose(
        _settings(secured, simulator_server, ADMIN, ADMIN_SECRET), DoctorOptions()
    )

    verdicts = _verdicts(findings)
    for check in ("kafka", "read input", "group", "write audit", "write dlq"):
        assert verdicts[check] is Verdict.OK, check


async def test_topic_settings_that_do_not_fit_fail_on_a_real_broker(
    kafka_clusters: ClusterFactory, simulator_server: SimulatorServer
) -> None:
    """A compacted audit topic, a DLQ below KAFKA_MAX_RECORD_BYTES fail; short retention warns."""
    cluster = kafka_clusters()
    bootstrap = cluster.bootstrap_servers()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(INPUT, 2, 1, topic_configs={"retention.ms": str(3 * 86_400_000)}),
                NewTopic(AUDIT, 2, 1, topic_configs={"cleanup.policy": "compact"}),
                NewTopic(DLQ, 1, 1, topic_configs={"max.message.bytes": "65536"}),
            ]
        )
    finally:
        await admin.close()
    settings = load_settings(
        kafka_bootstrap_servers=bootstrap,
        cxone_scim_base_url=simulator_server.scim_base_url,
        cxone_token_url=simulator_server.token_url,
        cxone_client_id=TEST_CREDENTIALS.client_id,
        cxone_client_secret=TEST_CREDENTIALS.client_secret,
        policy_file=EXAMPLE_POLICY,
    )

    findings = {f.check: f for f in await diagnose(settings, DoctorOptions(instances=2))}

    assert findings["topic input"].verdict is Verdict.WARN
    assert findings["topic input"].detail == (
        f"{INPUT}: 2 partitions, replication 1, retention 3 d, cleanup.policy delete: "
        "retention below 7 d"
    )
    assert findings["topic audit"].verdict is Verdict.FAIL
    assert "cleanup.policy compact keeps only each user's newest audit event" in (
        findings["topic audit"].detail
    )
    assert findings["topic dlq"].verdict is Verdict.FAIL
    assert "max.message.bytes 65536 is below KAFKA_MAX_RECORD_BYTES 1048576" in (
        findings["topic dlq"].detail
    )
