"""The audit trail over the real broker and the simulator: each folded event's own decision,
reactivation, the size bound, and the `audit` command's lines, order and output."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from consumer.events import (
    ApprovalReference,
    AuditEvent,
    EventType,
    Outcome,
    SourcePosition,
    SyncResult,
    audit_event_of,
)
from consumer.observability.metrics import ESCALATION_REJECTIONS
from consumer.sandbox.feed import AuditReader, TopicReader, produce
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import ROOT, make_pipeline, running_service
from tests.integration.test_send_and_audit import cli, environment, running_command

WITHIN = 60.0
LIMIT = 16_384


def event(
    user_id: str,
    event_id: str,
    *roles: str,
    kind: EventType = EventType.ROLES_CHANGED,
    approval: dict[str, str] | None = None,
) -> tuple[bytes, bytes]:
    """A record of the input contract, keyed by its user."""
    data: dict[str, Any] = {
        "user_id": user_id,
        "roles": [{"role_id": role, "primary": index == 0} for index, role in enumerate(roles)],
    }
    if approval is not None:
        data["approval"] = approval
    document = {
        "specversion": "1.0",
        "id": event_id,
        "source": "okta/test",
        "type": kind.value,
        "data": data,
    }
    return user_id.encode(), json.dumps(document).encode()


def exactly(size: int, user_id: str, event_id: str) -> tuple[bytes, bytes]:
    """A valid event of exactly `size` bytes (key plus value) asking for long unknown roles."""
    key, value = event(user_id, event_id, "agent_basic")
    document = json.loads(value)
    roles = document["data"]["roles"]
    while len(key) + len(json.dumps(document)) + 140 < size:
        roles.append({"role_id": f"ghost-{len(roles):04d}-" + "x" * 110})
    document["data"]["user_name"] = ""
    padding = size - len(key) - len(json.dumps(document))
    document["data"]["user_name"] = "n" * padding
    encoded = json.dumps(document).encode()
    assert len(key) + len(encoded) == size
    return key, encoded


def escalations(reason: str) -> float:
    """The value of cxone_sync_escalation_rejections_total for `reason` in this process."""
    value: float = ESCALATION_REJECTIONS.labels(reason=reason)._value.get()
    return value


async def test_folded_events_reactivation_and_a_large_refusal_each_keep_their_own_audit(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Read ahead into one write per user, every event keeps its decision; CXone and audit agree."""
    simulator = simulator_server.simulator
    for user in ("u-fold", "u-forbidden", "u-big"):
        simulator.seed_user(user, f"{user}@example.com", roles=[("agent_basic", None, True)])
    simulator.seed_user(
        "u-returner",
        "returner@example.com",
        roles=[("agent_voice", None, True), ("admin_security", None, False)],
        active=False,
    )
    simulator.set_user_rule("u-forbidden", "PUT", 403, detail="User is outside your business unit")
    pipeline = await make_pipeline(topics, simulator_server)
    approval = {"ticket": "CHG-7", "approved_by": "secops"}
    records = [
        event("u-fold", "f1", "agent_basic", "agent_voice"),
        event("u-fold", "f2", "agent_voice", "root_everything"),
        event("u-fold", "f3", "agent_voice", "admin_support", approval=approval),
        event("u-fold", "f4", "agent_voice", "admin_support", "reporting_viewer"),
        event("u-forbidden", "x1", "agent_digital"),
        event("u-forbidden", "x2", "agent_digital", "root_everything"),
        event("u-forbidden", "x3", "reporting_viewer"),
        event("u-returner", "r1", "agent_voice", "admin_security", kind=EventType.REACTIVATED),
        exactly(16_284, "u-big", "b1"),
    ]
    # On the topic before the service starts: its read-ahead hands each user's events to one
    # worker at once, so they fold into one write per user.
    await produce(pipeline.bootstrap_servers, pipeline.input_topic, records)
    unknown, unapproved = escalations("unknown_role"), escalations("approval_required")
    async with (
        running_service(pipeline.settings(kafka_max_record_bytes=LIMIT)) as service,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        found = await audit.wait_for_results(len(records), within=WITHIN)
        await service.shutdown()
    results = {entry.data.event_id: entry.data for entry in found.values()}

    # A queued unknown role is rejected as an escalation; the grant's approval is on its audit.
    assert (results["f1"].outcome, results["f1"].detail) == (Outcome.SUPERSEDED, "superseded_by=f4")
    assert (results["f2"].outcome, results["f2"].reason, results["f2"].escalation) == (
        Outcome.REJECTED,
        "unknown_role",
        True,
    )
    assert results["f2"].detail is not None
    assert results["f2"].detail.endswith("; folded into the write of f4")
    assert (results["f3"].outcome, results["f3"].approval) == (
        Outcome.SUPERSEDED,
        ApprovalReference(ticket="CHG-7", approved_by="secops", accepted=True),
    )
    assert (results["f4"].outcome, results["f4"].roles_after) == (
        Outcome.SYNCED,
        ("agent_voice", "admin_support", "reporting_viewer"),
    )
    held = simulator.get_user("u-fold")["roles"]
    assert [role["value"] for role in held] == ["agent_voice", "admin_support", "reporting_viewer"]

    # Folded into a write CXone refused: nothing was written for any of them.
    assert (results["x1"].outcome, results["x1"].reason, results["x1"].http_status) == (
        Outcome.FAILED,
        "forbidden",
        403,
    )
    assert results["x1"].detail == (
        "folded into the write of x3, which failed: User is outside your business unit"
    )
    assert (results["x2"].outcome, results["x2"].reason, results["x2"].escalation) == (
        Outcome.REJECTED,
        "unknown_role",
        True,
    )
    assert (results["x3"].outcome, results["x3"].reason) == (Outcome.FAILED, "forbidden")
    assert [r["value"] for r in simulator.get_user("u-forbidden")["roles"]] == ["agent_basic"]

    # A privileged role held while disabled is not turned on without an approval.
    returner = results["r1"]
    assert (returner.outcome, returner.reason, returner.escalation) == (
        Outcome.REJECTED,
        "approval_required",
        True,
    )
    assert (returner.event_type, returner.active_before, returner.active_after) == (
        EventType.REACTIVATED,
        False,
        True,
    )
    assert (returner.roles_before, returner.roles_after) == (
        ("agent_voice", "admin_security"),
        ("agent_voice",),
    )
    cxone_returner = simulator.get_user("u-returner")
    assert cxone_returner["active"] is True
    assert [role["value"] for role in cxone_returner["roles"]] == ["agent_voice"]

    # Every escalation is counted, the folded ones too.
    assert escalations("unknown_role") - unknown == 3  # f2, x2, b1
    assert escalations("approval_required") - unapproved == 1  # r1

    # The refusal of a 16,284-byte event fits under a 16,384-byte limit, and says it was cut.
    big = results["b1"]
    assert (big.outcome, big.reason) == (Outcome.REJECTED, "unknown_role")
    assert big.detail is not None
    assert "[detail cut to fit KAFKA_MAX_RECORD_BYTES: " in big.detail
    async with TopicReader(pipeline.bootstrap_servers, pipeline.audit_topic) as reader:
        await reader.wait_until(
            lambda r: len(r.records) >= len(records), within=WITHIN, what="the audit records"
        )
    sizes = [len(key or b"") + len(value or b"") for key, value, _ in reader.records]
    assert max(sizes) <= LIMIT
    assert max(sizes) > LIMIT - 1_000  # the cut one, filled up to the limit

    # The audit command tells the same story, one line per event, in time order.
    env = environment(
        KAFKA_BOOTSTRAP_SERVERS=pipeline.bootstrap_servers,
        KAFKA_AUDIT_TOPIC=pipeline.audit_topic,
    )
    code, out, err = await cli("audit", "--user", "u-fold", env=env)
    assert (code, err) == (0, "")
    lines = {line.rsplit("event ", 1)[1].split()[0]: line for line in out.splitlines()}
    assert sorted(lines) == ["f1", "f2", "f3", "f4"]
    assert "rejected    unknown_role  ESCALATION  roles agent_basic -> " in lines["f2"]
    assert "superseded  roles agent_basic -> " in lines["f3"]
    assert "approved CHG-7 by secops" in lines["f3"]
    code, out, err = await cli("audit", "--user", "u-returner", env=env)
    assert (code, err) == (0, "")
    [line] = out.splitlines()
    assert (
        "rejected    approval_required  ESCALATION  reactivated"
        "  roles agent_voice,admin_security -> agent_voice" in line
    )


def audit_record(partition: int, offset: int, at: datetime, user: str) -> bytes:
    """An audit record of input `partition`@`offset`, processed at `at`."""
    result = SyncResult(
        event_id=f"e-{partition}-{offset}",
        user_id=user,
        outcome=Outcome.SYNCED,
        roles_before=("agent_basic",),
        roles_after=("agent_voice",),
        source=SourcePosition(topic="idp.role-changes", partition=partition, offset=offset),
        processed_at=at,
    )
    return audit_event_of(result).model_dump_json().encode()


async def test_audit_prints_in_time_order_across_partitions(topics: Topics) -> None:
    """Results written partition by partition come out merged in processed_at order."""
    (audit_topic,) = await topics.create("audit", partitions=3)
    start = datetime.now(UTC) - timedelta(minutes=5)
    producer = AIOKafkaProducer(
        bootstrap_servers=topics.bootstrap_servers, enable_idempotence=False
    )
    await producer.start()
    try:
        # Partition 0 holds seconds 0, 3, 6, ..., partition 1 seconds 1, 4, ..., partition 2
        # seconds 2, 5, ...; each partition is written whole before the next.
        for partition in range(3):
            for step in range(4):
                second = partition + 3 * step
                value = audit_record(partition, step, start + timedelta(seconds=second), "u-1")
                await producer.send_and_wait(audit_topic, value, key=b"u-1", partition=partition)
    finally:
        await producer.stop()
    env = environment(
        KAFKA_BOOTSTRAP_SERVERS=topics.bootstrap_servers, KAFKA_AUDIT_TOPIC=audit_topic
    )
    code, out, err = await cli("audit", "--json", env=env)
    assert (code, err) == (0, "")
    events = [AuditEvent.model_validate_json(line) for line in out.splitlines()]
    offsets = [(e.data.source.partition, e.data.source.offset) for e in events]
    assert offsets == [(second % 3, second // 3) for second in range(12)]


async def test_audit_follow_json_gives_a_pipe_only_results_and_exits_cleanly_on_sigint(
    topics: Topics,
) -> None:
    """`audit --follow --json | jq`: every stdout line is an audit event, through Ctrl-C."""
    (audit_topic,) = await topics.create("audit")
    env = environment(
        KAFKA_BOOTSTRAP_SERVERS=topics.bootstrap_servers, KAFKA_AUDIT_TOPIC=audit_topic
    )
    async with running_command("audit", "--follow", "--json", env=env) as process:
        assert process.stdout is not None
        now = datetime.now(UTC)
        for offset in range(2):
            record = audit_record(0, offset, now + timedelta(seconds=offset), "u-9")
            await produce(topics.bootstrap_servers, audit_topic, [(b"u-9", record)])
            async with asyncio.timeout(WITHIN):
                line = await process.stdout.readline()
            assert AuditEvent.model_validate_json(line).data.source.offset == offset
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(WITHIN):
            rest, err = await process.communicate()
        assert process.returncode == 0
        assert rest == b""  # no log line, no notice: only results ever reach stdout
        assert b"service.stopping" not in err


async def test_audit_whose_reader_goes_away_ends_quietly(topics: Topics, tmp_path: Path) -> None:
    """`audit --follow | head -n 1`: once head is gone, audit ends with code 0 and no traceback."""
    (audit_topic,) = await topics.create("audit")
    env = environment(
        KAFKA_BOOTSTRAP_SERVERS=topics.bootstrap_servers, KAFKA_AUDIT_TOPIC=audit_topic
    )
    errors = tmp_path / "audit.err"
    pipeline = (
        f"{shlex.quote(sys.executable)} -m consumer audit --follow 2>{shlex.quote(str(errors))}"
        '; echo "audit exited $?" >&2'
    )
    shell = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        f"{{ {pipeline}; }} | head -n 1",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert shell.stdout is not None
        now = datetime.now(UTC)
        first_record = audit_record(0, 0, now, "u-1")
        await produce(topics.bootstrap_servers, audit_topic, [(b"u-1", first_record)])
        async with asyncio.timeout(WITHIN):
            first = await shell.stdout.readline()
        assert b"u-1" in first
        # head has gone; the next result makes audit write into a closed pipe.
        later = audit_record(0, 1, now + timedelta(seconds=1), "u-1")
        await produce(topics.bootstrap_servers, audit_topic, [(b"u-1", later)])
        async with asyncio.timeout(WITHIN):
            _, said = await shell.communicate()
        assert said.decode().strip() == "audit exited 0"
        assert errors.read_text() == ""
    finally:
        if shell.returncode is None:
            shell.kill()
            await shell.wait()
