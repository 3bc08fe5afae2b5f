"""`dlq list` and `dlq redrive` against the real broker, beside the real service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.dead_letters import (
    REDRIVEN_FROM,
    DeadLetter,
    fetch_dead_letter,
    read_dead_letters,
    redrive,
    redrive_value,
)
from consumer.errors import ConfigurationError
from consumer.sandbox.feed import AuditReader, TopicReader, produce
from consumer.sandbox.samples import seed_users
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import Pipeline, make_pipeline, running_service
from tests.integration.test_send_and_audit import cli, environment

pytestmark = pytest.mark.asyncio


def _event(user_id: str, event_id: str, role: str = "agent_voice") -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "okta/test",
        "type": "idp.user.roles.changed",
        "data": {"user_id": user_id, "roles": [{"role_id": role, "primary": True}]},
    }


BROKEN = b'{"specversion": "1.0", "id": "evt-cut", "data": {"user_id": "u-1001"'
MISKEYED = json.dumps(_event("u-1002", "evt-miskeyed")).encode()


async def _dead_letters(pipeline: Pipeline, simulator_server: SimulatorServer) -> list[DeadLetter]:
    """Run the service over a broken record and a miskeyed one; return the two dead letters."""
    seed_users(simulator_server.simulator, 5)
    await produce(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        [(b"u-1001", BROKEN), (b"u-9999", MISKEYED)],
    )
    async with (
        running_service(pipeline.settings()),
        TopicReader(pipeline.bootstrap_servers, pipeline.dlq_topic) as dlq,
    ):
        await dlq.wait_until(lambda r: len(r.records) >= 2, within=60, what="two dead letters")
    return [letter async for letter in read_dead_letters(pipeline.settings())]


async def test_list_reads_every_dead_letter_with_its_reason_and_origin(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Both dead letters are listed with reason, key and the input position they came from."""
    pipeline = await make_pipeline(topics, simulator_server)
    letters = await _dead_letters(pipeline, simulator_server)

    assert sorted(letter.reason for letter in letters) == ["invalid_json", "key_mismatch"]
    by_reason = {letter.reason: letter for letter in letters}
    assert by_reason["invalid_json"].value == BROKEN
    assert by_reason["invalid_json"].source == f"{pipeline.input_topic}/0@0"
    assert by_reason["key_mismatch"].key == b"u-9999"
    filtered = [
        letter async for letter in read_dead_letters(pipeline.settings(), reason="key_mismatch")
    ]
    assert [letter.offset for letter in filtered] == [by_reason["key_mismatch"].offset]


async def test_a_redriven_fix_is_applied_and_its_audit_leads_back_to_the_dead_letter(
    topics: Topics, simulator_server: SimulatorServer, tmp_path: Path
) -> None:
    """A fixed event re-driven is synced; its audit's input record names the dead letter."""
    pipeline = await make_pipeline(topics, simulator_server)
    letters = await _dead_letters(pipeline, simulator_server)
    broken = next(letter for letter in letters if letter.reason == "invalid_json")
    settings = pipeline.settings()

    letter = await fetch_dead_letter(settings, broken.partition, broken.offset)
    fixed = json.dumps(_event("u-1001", "evt-cut", "agent_voice")).encode()
    event, value = redrive_value(letter, fixed, max_record_bytes=settings.kafka_max_record_bytes)
    done = await redrive(settings, letter, event, value)

    async with (
        running_service(pipeline.settings()),
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await audit.wait_until(
            lambda r: any(e.data.event_id == "evt-cut" for e in r.events),
            within=60,
            what="the audit of the re-driven event",
        )
    [result] = [e for e in audit.events if e.data.event_id == "evt-cut"]
    assert result.data.outcome.value == "synced"
    assert (result.data.source.partition, result.data.source.offset) == (
        done.partition,
        done.offset,
    )
    assert simulator_server.simulator.get_user("u-1001")["roles"][0]["value"] == "agent_voice"
    # The input record the audit names carries the dead letter's position, and its key is the user.
    reader = AIOKafkaConsumer(bootstrap_servers=pipeline.bootstrap_servers, group_id=None)
    await reader.start()
    try:
        tp = TopicPartition(pipeline.input_topic, done.partition)
        reader.assign([tp])
        reader.seek(tp, done.offset)
        record = await asyncio.wait_for(reader.getone(), 30)
    finally:
        await reader.stop()
    assert record.key == b"u-1001"
    assert dict(record.headers)[REDRIVEN_FROM] == (
        f"{pipeline.dlq_topic}/{broken.partition}@{broken.offset}".encode()
    )
    # Nothing was written to the dead-letter topic.
    assert len([letter async for letter in read_dead_letters(settings)]) == 2


async def test_redrive_refuses_what_the_consumer_would_refuse(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """The record as it is (invalid JSON) or a bad fix is refused with the consumer's reason."""
    pipeline = await make_pipeline(topics, simulator_server)
    letters = await _dead_letters(pipeline, simulator_server)
    broken = next(letter for letter in letters if letter.reason == "invalid_json")

    with pytest.raises(ConfigurationError, match=r"^invalid event \(invalid_json\)"):
        redrive_value(broken, None, max_record_bytes=1_048_576)
    bad_fix = json.dumps(_event("../admin", "evt-x")).encode()
    with pytest.raises(ConfigurationError, match=r"^invalid event \(schema_violation\)"):
        redrive_value(broken, bad_fix, max_record_bytes=1_048_576)
    with pytest.raises(ConfigurationError, match="too_large"):
        redrive_value(broken, b" " * 20_000 + bad_fix, max_record_bytes=16_384)
    with pytest.raises(ConfigurationError, match=r"partition 0 ends at \d+$"):
        await fetch_dead_letter(pipeline.settings(), broken.partition, 7)


async def test_the_commands_list_and_redrive_in_one_line_each(
    topics: Topics, simulator_server: SimulatorServer, tmp_path: Path
) -> None:
    """`dlq list` prints a line per dead letter; `dlq redrive` one line; bad input exits 2."""
    pipeline = await make_pipeline(topics, simulator_server)
    letters = await _dead_letters(pipeline, simulator_server)
    miskeyed = next(letter for letter in letters if letter.reason == "key_mismatch")

    async def dlq(*arguments: str) -> tuple[int, str, str]:
        return await cli("dlq", *arguments, env=environment(**pipeline.environment))

    code, out, err = await dlq("list")
    assert code == 0
    assert len(out.splitlines()) == 2
    assert f"{miskeyed.partition}:{miskeyed.offset}" in out
    assert "key_mismatch" in out
    assert err == f"2 dead letters in {pipeline.dlq_topic}\n"

    code, out, _ = await dlq("list", "--json", "--reason", "key_mismatch")
    [line] = out.splitlines()
    assert json.loads(line)["headers"]["x-error-reason"] == "key_mismatch"

    # The miskeyed event is valid as it is: the re-drive keys it by its user id.
    code, out, err = await dlq("redrive", "--offset", f"{miskeyed.partition}:{miskeyed.offset}")
    assert (code, err) == (0, "")
    assert out.startswith(
        f"re-drove {pipeline.dlq_topic} {miskeyed.partition}:{miskeyed.offset} (key_mismatch) "
        f"as event evt-miskeyed of user u-1002 to {pipeline.input_topic} partition 0 offset 2"
    )

    bad = tmp_path / "fixed.json"
    bad.write_text('{"specversion": "1.0"}')
    for arguments, expected in [
        (("redrive", "--offset", "zero"), "--offset 'zero' is not PARTITION:OFFSET, e.g. 0:42"),
        (
            ("redrive", "--offset", "0:0", "--from-file", str(bad)),
            "invalid event (schema_violation)",
        ),
        (("redrive", "--offset", "0:0", "--from-file", str(tmp_path / "no.json")), "No such file"),
    ]:
        code, out, err = await dlq(*arguments)
        assert (code, out) == (2, "")
        [line] = err.splitlines()
        assert expected in line
