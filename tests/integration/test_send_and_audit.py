"""`send` and `audit` as an operator runs them: child processes against the real broker.

They are given only the Kafka settings, which also shows they need no CXone or policy settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumer.events import (
    ApprovalReference,
    AuditEvent,
    Outcome,
    SourcePosition,
    SyncResult,
    audit_event_of,
    parse_event,
)
from consumer.sandbox.feed import TopicReader, produce
from consumer.sandbox.server import SimulatorServer
from consumer.settings import Settings
from tests.conftest import Topics
from tests.integration.harness import ROOT, make_pipeline, running_service

WITHIN = 60.0
"""Seconds any one command or condition may take before a test fails; generous under load."""


def environment(**settings: str) -> dict[str, str]:
    """The test's own environment without any setting, plus the given ones."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in Settings.model_fields
    }
    return {**inherited, **settings}


async def cli(
    *arguments: str,
    env: dict[str, str],
    stdin: bytes | None = None,
    cwd: Path = ROOT,
    within: float = WITHIN,
) -> tuple[int, str, str]:
    """Run `python -m consumer ARGUMENTS` without blocking the loop; return code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumer",
        *arguments,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(within):
        out, err = await process.communicate(stdin or b"")
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def running_command(
    *arguments: str, env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m consumer ARGUMENTS` running with piped output; killed if still running after."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumer",
        *arguments,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def input_records(bootstrap: str, topic: str, count: int) -> list[tuple[bytes | None, bytes]]:
    """The first `count` records of a topic as (key, value)."""
    async with TopicReader(bootstrap, topic) as reader:
        await reader.wait_until(lambda r: len(r.records) >= count, within=WITHIN, what="records")
    return [(key, value or b"") for key, value, _ in reader.records]


def result(user_id: str, outcome: Outcome, offset: int, **fields: object) -> bytes:
    """An audit record as the service publishes it."""
    values: dict[str, object] = {
        "event_id": f"evt-{user_id}-{offset}",
        "user_id": user_id,
        "outcome": outcome,
        "roles_before": ("agent_basic",),
        "roles_after": ("agent_voice",),
        "source": SourcePosition(topic="idp.role-changes", partition=0, offset=offset),
        "processed_at": datetime.now(UTC),
        **fields,
    }
    return audit_event_of(SyncResult.model_validate(values)).model_dump_json().encode()


async def test_send_from_flags_publishes_a_valid_event_keyed_by_user(topics: Topics) -> None:
    """`send --user --roles --primary --approval` puts one valid event on the input topic, keyed."""
    (input_topic,) = await topics.create("input")
    env = environment(
        KAFKA_BOOTSTRAP_SERVERS=topics.bootstrap_servers, KAFKA_INPUT_TOPIC=input_topic
    )
    code, out, err = await cli(
        "send",
        "--user",
        "u-1001",
        "--roles",
        "agent_voice,reporting_viewer",
        "--primary",
        "agent_voice",
        "--approval",
        "CHG-1:secops",
        env=env,
    )
    assert (code, err) == (0, "")
    [(key, value)] = await input_records(topics.bootstrap_servers, input_topic, 1)
    event = parse_event(value)
    assert key == b"u-1001"
    assert out.startswith(f"sent {event.id} (idp.user.roles.changed, user u-1001) to {input_topic}")
    assert [(r.role_id, r.primary) for r in event.desired_roles] == [
        ("agent_voice", True),
        ("reporting_viewer", False),
    ]
    assert event.data.approval is not None
    assert event.data.approval.ticket == "CHG-1"


async def test_send_refuses_an_invalid_event_and_sends_a_valid_file_as_is(topics: Topics) -> None:
    """An invalid event from stdin exits 2 with the consumer's reason and is not sent; a file is."""
    (input_topic,) = await topics.create("input")
    env = environment(
        KAFKA_BOOTSTRAP_SERVERS=topics.bootstrap_servers, KAFKA_INPUT_TOPIC=input_topic
    )
    bad = {
        "specversion": "1.0",
        "id": "e-bad",
        "source": "s",
        "type": "idp.user.roles.changed",
        "data": {"user_id": "../admin", "roles": []},
    }
    code, out, err = await cli("send", "--file", "-", env=env, stdin=json.dumps(bad).encode())
    assert (code, out) == (2, "")
    assert err.startswith("invalid event (schema_violation): data.user_id: String should match")
    assert len(err.splitlines()) == 1

    good = (
        b'{"specversion": "1.0", "id": "e-good", "source": "okta/test",'
        b' "type": "idp.user.deactivated", "data": {"user_id": "u-2002"}}'
    )
    code, out, err = await cli("send", "--file", "-", env=env, stdin=good)
    assert (code, err) == (0, "")
    # The refused event never reached the topic: the first record is the valid one, byte for byte.
    [(key, value)] = await input_records(topics.bootstrap_servers, input_topic, 1)
    assert (key, value) == (b"u-2002", good)


async def test_send_argument_errors_are_one_line_and_exit_2() -> None:
    """Missing or contradictory flags exit 2 with one line, before any broker is contacted."""
    env = environment(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    for arguments, message in [
        (("send",), "give --user USER_ID (with --roles ...), or --file FILE"),
        (("send", "--user", "u-1"), "give --roles ROLE,... (or --deactivate)"),
        (("send", "--user", "u-1", "--roles", "a", "--deactivate"), "--deactivate takes no"),
        (("send", "--file", "-", "--id", "e-1"), "--file is sent as it is: it takes no event"),
        (
            ("send", "--user", "u 1", "--roles", "a"),
            "invalid event (schema_violation): data.user_id",
        ),
    ]:
        code, out, err = await cli(*arguments, env=env)
        assert (code, out) == (2, "")
        assert len(err.splitlines()) == 1
        assert err.startswith(message)


async def test_audit_filters_and_renders_results(topics: Topics) -> None:
    """`audit --user --outcome` prints one line per matching result, `--json` prints the events."""
    (audit_topic,) = await topics.create("audit", partitions=2)
    await produce(
        topics.bootstrap_servers,
        audit_topic,
        [
            (b"u-1", result("u-1", Outcome.SYNCED, 1)),
            (
                b"u-2",
                result("u-2", Outcome.REJECTED, 2, reason="approval_required", escalation=True),
            ),
            (
                b"u-1",
                result(
                    "u-1",
                    Outcome.REJECTED,
                    3,
                    reason="sod_conflict",
                    approval=ApprovalReference(
                        ticket="CHG-9", approved_by="secops", accepted=False
                    ),
                ),
            ),
        ],
    )
    env = environment(
        KAFKA_BOOTSTRAP_SERVERS=topics.bootstrap_servers, KAFKA_AUDIT_TOPIC=audit_topic
    )

    code, out, err = await cli("audit", "--user", "u-1", "--outcome", "REJECTED", env=env)
    assert (code, err) == (0, "")
    [line] = out.splitlines()
    assert "u-1 " in line
    assert (
        "rejected    sod_conflict  roles agent_basic -> agent_voice"
        "  approval CHG-9 by secops NOT ACCEPTED" in line
    )
    assert "\x1b[" not in line  # not a terminal: no colour

    code, out, err = await cli("audit", "--json", env=env)
    assert (code, err) == (0, "")
    events = [AuditEvent.model_validate_json(line) for line in out.splitlines()]
    assert sorted(e.data.event_id or "" for e in events) == ["evt-u-1-1", "evt-u-1-3", "evt-u-2-2"]

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    code, out, err = await cli("audit", "--since", tomorrow, env=env)
    assert (code, out, err) == (0, "", "")


async def test_audit_rejects_an_unknown_outcome() -> None:
    """`audit --outcome nonsense` exits 2 naming the outcomes there are."""
    code, out, err = await cli("audit", "--outcome", "nonsense", env=environment())
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "--outcome 'nonsense' is not one of synced, unchanged, rejected, failed, invalid, "
        "superseded, dry_run"
    ]


async def test_audit_follow_prints_new_results_and_stops_on_ctrl_c(topics: Topics) -> None:
    """`audit --follow` keeps printing results as they are published, and exits 0 on SIGINT."""
    (audit_topic,) = await topics.create("audit")
    env = environment(
        KAFKA_BOOTSTRAP_SERVERS=topics.bootstrap_servers, KAFKA_AUDIT_TOPIC=audit_topic
    )
    async with running_command("audit", "--follow", env=env) as process:
        assert process.stdout is not None
        for user in ("u-7", "u-8"):
            # The second result is sent only after the first was printed: it shows the
            # command kept reading past the end of the topic instead of exiting.
            record = result(user, Outcome.SYNCED, 7)
            await produce(topics.bootstrap_servers, audit_topic, [(user.encode(), record)])
            async with asyncio.timeout(WITHIN):
                line = (await process.stdout.readline()).decode()
            assert f"{user} " in line
            assert "synced" in line
        assert process.returncode is None
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(WITHIN):
            assert await process.wait() == 0


async def test_an_event_sent_reaches_cxone_and_its_audit_line_names_the_approval(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A privileged grant sent with `send --approval` is synced; `audit` shows who approved it."""
    simulator_server.simulator.seed_user(
        "u-3003", "ann@example.com", roles=[("agent_basic", "Standard Agent", True)]
    )
    pipeline = await make_pipeline(topics, simulator_server)
    env = environment(
        KAFKA_BOOTSTRAP_SERVERS=pipeline.bootstrap_servers,
        KAFKA_INPUT_TOPIC=pipeline.input_topic,
        KAFKA_AUDIT_TOPIC=pipeline.audit_topic,
    )
    async with running_service(pipeline.settings()):
        code, _, err = await cli(
            "send",
            "--user",
            "u-3003",
            "--roles",
            "agent_voice,admin_support",
            "--approval",
            "CHG-77:secops",
            env=env,
        )
        assert (code, err) == (0, "")
        async with TopicReader(pipeline.bootstrap_servers, pipeline.audit_topic) as reader:
            await reader.wait_until(lambda r: len(r.records) >= 1, within=WITHIN, what="the audit")
    code, out, err = await cli("audit", "--user", "u-3003", env=env)
    assert (code, err) == (0, "")
    [line] = out.splitlines()
    assert "synced" in line
    assert "roles agent_basic -> agent_voice,admin_support  approved CHG-77 by secops" in line
    roles = simulator_server.simulator.get_user("u-3003")["roles"]
    assert {role["value"] for role in roles} == {"agent_voice", "admin_support"}
