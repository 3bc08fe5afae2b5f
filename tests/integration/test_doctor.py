"""`doctor` against the real broker and the CXone simulator over HTTP, healthy and broken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumer.doctor.diagnose import DoctorOptions, diagnose
from consumer.doctor.findings import Finding, Verdict, exit_code
from consumer.sandbox.feed import produce
from consumer.sandbox.samples import seed_users
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import CxoneSimulator
from consumer.settings import Settings
from consumer.stream.guard_ledger import ensure_ledger_topic
from tests.conftest import TEST_CREDENTIALS, BrokerEndpoint, Topics
from tests.integration.harness import Pipeline, make_pipeline
from tests.integration.test_pipeline import committed_offset
from tests.integration.test_send_and_audit import cli, environment

pytestmark = pytest.mark.asyncio

USERS = ("u-1001", "u-1002", "u-1003")


def _event(user_id: str, role: str) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": f"evt-doctor-{user_id}",
            "source": "okta/test",
            "type": "idp.user.roles.changed",
            "data": {"user_id": user_id, "roles": [{"role_id": role, "primary": True}]},
        }
    ).encode()


async def _pipeline(
    topics: Topics, server: SimulatorServer, *, partitions: int = 1, **extra: str
) -> Pipeline:
    """Topics with a few events naming seeded users, and the settings pointing at them."""
    seed_users(server.simulator, 5)
    pipeline = await make_pipeline(topics, server, partitions=partitions, **extra)
    await produce(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        [(user_id.encode(), _event(user_id, "agent_voice")) for user_id in USERS],
    )
    return pipeline


def _by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.check: finding for finding in findings}


async def _topic_state(settings: Settings) -> tuple[set[str], dict[TopicPartition, int]]:
    """Every topic's name, and the end offset of each partition of the three service topics."""
    wanted = {settings.kafka_input_topic, settings.kafka_audit_topic, settings.kafka_dlq_topic}
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        listed = await admin.describe_topics()
    finally:
        await admin.close()
    names = {str(entry["topic"]) for entry in listed}
    partitions = [
        TopicPartition(entry["topic"], partition["partition"])
        for entry in listed
        if entry["topic"] in wanted
        for partition in entry["partitions"]
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    assert ends, "no partition to compare"
    return names, ends


async def test_healthy_installation_passes_and_writes_nothing(
    topics: Topics,
    simulator_server: SimulatorServer,
    simulator: CxoneSimulator,
    broker: BrokerEndpoint,
) -> None:
    """A healthy installation fails no check, and the doctor leaves Kafka and CXone unchanged."""
    pipeline = await _pipeline(topics, simulator_server)
    settings = pipeline.settings()
    # On a new cluster the first group lookup of any client makes the broker create its offsets
    # topic; this one happens before the doctor runs.
    assert await committed_offset(pipeline) is None
    before = await _topic_state(settings)
    simulator.clear_requests()

    findings = await diagnose(settings, DoctorOptions())

    checks = _by_check(findings)
    assert [f for f in findings if f.verdict is Verdict.FAIL] == []
    assert exit_code(findings) == 0
    for name in ("policy", "kafka", "read input", "group", "cxone token", "scim search"):
        assert checks[name].verdict is Verdict.OK, checks[name]
    assert checks["scim read"].detail == "read 3 users"
    assert checks["roles unknown"].verdict is Verdict.OK
    assert "3 users" in checks["read input"].detail
    if broker.kind == "kafka":
        # Apache Kafka checks WRITE before it refuses the empty probe, and reports the configs.
        assert checks["write audit"].verdict is Verdict.OK, checks["write audit"]
        assert checks["write dlq"].verdict is Verdict.OK, checks["write dlq"]
        assert "retention 7 d, cleanup.policy delete" in checks["topic input"].detail
    # Writes nothing: no record, no new topic, no committed offset, no SCIM write.
    assert await _topic_state(settings) == before
    assert await committed_offset(pipeline) is None
    methods = {(r.method, r.path.split("/")[1]) for r in simulator.requests}
    assert methods == {("POST", "auth"), ("GET", "scim")}


async def test_wrong_token_credentials_fail_the_token_check_and_skip_scim(
    topics: Topics, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """A client secret the token endpoint refuses fails `cxone token`; SCIM is not asked."""
    pipeline = await _pipeline(topics, simulator_server)
    simulator.clear_requests()

    findings = await diagnose(
        pipeline.settings(cxone_client_secret="not-the-secret"), DoctorOptions()
    )

    checks = _by_check(findings)
    assert checks["cxone token"].verdict is Verdict.FAIL
    assert "SCIM checks not run" in checks["cxone token"].detail
    assert "not-the-secret" not in "\n".join(f.detail for f in findings)
    assert "scim search" not in checks
    assert all(not r.path.startswith("/scim") for r in simulator.requests)
    assert exit_code(findings) == 1


async def test_missing_scope_fails_the_token_check(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A token without a scope CXONE_REQUIRED_SCOPES names fails `cxone token`, naming it."""
    pipeline = await _pipeline(topics, simulator_server)

    findings = await diagnose(
        pipeline.settings(cxone_required_scopes="AdminApi RealTimeApi"), DoctorOptions()
    )

    token = _by_check(findings)["cxone token"]
    assert token.verdict is Verdict.FAIL
    assert "RealTimeApi" in token.detail


async def test_scim_url_down_fails_search_and_read(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A SCIM base URL where nothing listens fails both SCIM checks; the token still passes."""
    pipeline = await _pipeline(topics, simulator_server)

    findings = await diagnose(
        pipeline.settings(cxone_scim_base_url="http://127.0.0.1:9/scim/v2"), DoctorOptions()
    )

    checks = _by_check(findings)
    assert checks["cxone token"].verdict is Verdict.OK
    assert checks["scim search"].verdict is Verdict.FAIL
    assert checks["scim read"].verdict is Verdict.FAIL
    assert "3 of 3 user reads failed" in checks["scim read"].detail


async def test_a_scim_base_url_that_is_no_scim_service_fails_the_search(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A base URL on the right host but the wrong path fails `scim search`, saying what is wrong."""
    pipeline = await _pipeline(topics, simulator_server)
    wrong = f"{simulator_server.base_url}/tenant/scim/v2"

    findings = await diagnose(pipeline.settings(cxone_scim_base_url=wrong), DoctorOptions())

    search = _by_check(findings)["scim search"]
    assert search.verdict is Verdict.FAIL
    assert search.detail == (
        f"GET {wrong}/Users answered 404: CXONE_SCIM_BASE_URL is not the tenant's SCIM base "
        "(it ends in /scim/v2)"
    )


async def test_forbidden_user_reads_fail_the_read_check(
    topics: Topics, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """A 403 on a user read (the API user lacks a permission) fails `scim read`."""
    pipeline = await _pipeline(topics, simulator_server)
    simulator.set_user_rule("u-1002", "GET", "403")

    findings = await diagnose(pipeline.settings(), DoctorOptions())

    read = _by_check(findings)["scim read"]
    assert read.verdict is Verdict.FAIL
    assert "1 of 3 user reads failed" in read.detail
    assert "403" in read.detail


async def test_missing_topic_fails_and_is_not_created(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A DLQ topic that does not exist fails `topic dlq`, and the doctor does not create it."""
    pipeline = await _pipeline(topics, simulator_server)
    missing = topics.name("dlq-missing")
    settings = pipeline.settings(kafka_dlq_topic=missing)

    findings = await diagnose(settings, DoctorOptions())

    checks = _by_check(findings)
    assert checks["topic dlq"].verdict is Verdict.FAIL
    assert checks["topic dlq"].detail.startswith(f"{missing} does not exist")
    assert "write dlq" not in checks
    names, _ = await _topic_state(settings)
    assert missing not in names


async def test_too_few_partitions_for_the_planned_instances_fail(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """An input topic with fewer partitions than `--instances` fails `topic input`."""
    pipeline = await _pipeline(topics, simulator_server, partitions=2)

    findings = await diagnose(pipeline.settings(), DoctorOptions(instances=3))

    topic = _by_check(findings)["topic input"]
    assert topic.verdict is Verdict.FAIL
    assert "fewer partitions than the 3 instances planned: 1 would sit idle" in topic.detail


async def test_unknown_role_on_a_tenant_user_fails_naming_the_user(
    topics: Topics, simulator_server: SimulatorServer, simulator: CxoneSimulator, tmp_path: Path
) -> None:
    """A role value a tenant user holds that the policy lacks fails `roles unknown`."""
    pipeline = await _pipeline(topics, simulator_server)
    simulator.seed_user("u-2001", "legacy@example.com", roles=[("night_shift_lead", None, True)])
    listed = tmp_path / "users.txt"
    listed.write_text("# users the IdP does not send events for\nu-2001\n")

    findings = await diagnose(pipeline.settings(), DoctorOptions(users_file=listed))

    checks = _by_check(findings)
    assert checks["roles unknown"].verdict is Verdict.FAIL
    assert "night_shift_lead" in checks["roles unknown"].detail
    assert "u-2001" in checks["roles unknown"].detail
    assert checks["scim read"].detail == "read 4 users"


async def test_unheld_catalog_roles_warn(topics: Topics, simulator_server: SimulatorServer) -> None:
    """Policy roles none of the users read hold are a warning listing them."""
    pipeline = await _pipeline(topics, simulator_server)

    findings = await diagnose(pipeline.settings(), DoctorOptions())

    unheld = _by_check(findings)["roles unheld"]
    assert unheld.verdict is Verdict.WARN
    assert "held by none of the 3 users read" in unheld.detail
    assert "agent_basic" not in unheld.detail.split(":", 1)[1]


async def test_broker_down_fails_kafka_and_still_checks_cxone(
    simulator_server: SimulatorServer, topics: Topics
) -> None:
    """Bootstrap servers where no broker listens fail `kafka`; the CXone checks still run."""
    pipeline = await _pipeline(topics, simulator_server)

    findings = await diagnose(
        pipeline.settings(kafka_bootstrap_servers="127.0.0.1:9"), DoctorOptions()
    )

    checks = _by_check(findings)
    assert checks["kafka"].verdict is Verdict.FAIL
    assert "topic input" not in checks
    assert checks["cxone token"].verdict is Verdict.OK
    assert checks["scim read"].verdict is Verdict.WARN  # no topic to name users


async def test_broken_policy_fails_the_policy_check(
    topics: Topics, simulator_server: SimulatorServer, tmp_path: Path
) -> None:
    """A policy whose separation-of-duties pair names an undefined role fails `policy`."""
    pipeline = await _pipeline(topics, simulator_server)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "max_roles_per_user: 3\nmax_hierarchy_depth: 2\n"
        "roles:\n  agent_basic: {display_name: Agent}\n"
        "separation_of_duties:\n  - [agent_basic, ghost]\n"
    )

    findings = await diagnose(pipeline.settings(policy_file=policy), DoctorOptions())

    checks = _by_check(findings)
    assert checks["policy"].verdict is Verdict.FAIL
    assert "ghost" in checks["policy"].detail
    assert "roles unknown" not in checks


async def test_command_prints_one_line_per_check_and_exits_by_verdict(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """`cxone-role-sync doctor` prints a line per check and a summary; exit 0 healthy, 1 broken."""
    pipeline = await _pipeline(topics, simulator_server)
    # A guard topic of its own: the default one exists once any service ran on the shared
    # broker, and then two more checks (read and write guard) are printed.
    own = {"KAFKA_GUARD_TOPIC": topics.name("guard")}

    async def doctor(**settings: str) -> tuple[int, list[str]]:
        env = environment(**(pipeline.environment | own | settings))
        code, out, err = await cli("doctor", env=env)
        assert err == ""
        return code, out.splitlines()

    code, lines = await doctor()
    assert code == 0
    printed = "\n".join(lines)
    for secret in (TEST_CREDENTIALS.client_secret, TEST_CREDENTIALS.access_key_secret):
        assert secret not in printed
    assert lines[-1].startswith("doctor: 15 checks: ")
    assert lines[-1].endswith(", 0 fail")
    assert all(line.split()[0] in {"ok", "warn", "fail"} for line in lines[:-1])

    code, lines = await doctor(CXONE_CLIENT_SECRET="wrong-secret")
    assert code == 1
    assert [line.split()[:3] for line in lines if line.startswith("fail")] == [
        ["fail", "cxone", "token"]
    ]


async def test_the_guard_ledger_topic_is_checked_when_the_policy_has_a_guard(
    topics: Topics, simulator_server: SimulatorServer, tmp_path: Path
) -> None:
    """Missing, the guard topic is a warning (run creates it); present, it is read and written."""
    pipeline = await _pipeline(topics, simulator_server)
    guard_topic = topics.name("guard")
    settings = pipeline.settings(kafka_guard_topic=guard_topic)

    missing = _by_check(await diagnose(settings, DoctorOptions()))
    assert missing["topic guard"].verdict is Verdict.WARN
    assert missing["topic guard"].detail.startswith(f"{guard_topic} does not exist: run creates")
    assert "write guard" not in missing

    await ensure_ledger_topic({"bootstrap_servers": pipeline.bootstrap_servers}, guard_topic)
    present = _by_check(await diagnose(settings, DoctorOptions()))
    assert present["topic guard"].detail.startswith(f"{guard_topic}: 1 partitions")
    assert present["read guard"].verdict is Verdict.OK
    assert present["write guard"].verdict is not Verdict.FAIL

    unguarded = tmp_path / "policy.yaml"
    unguarded.write_text(
        "max_roles_per_user: 3\nmax_hierarchy_depth: 2\n"
        "roles:\n  agent_basic: {display_name: Agent}\n"
    )
    without = _by_check(await diagnose(pipeline.settings(policy_file=unguarded), DoctorOptions()))
    assert not {"topic guard", "read guard", "write guard"} & set(without)
