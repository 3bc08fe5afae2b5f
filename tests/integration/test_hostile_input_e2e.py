"""Hostile records through the real broker and service: each is dead-lettered and audited invalid.

A bounded, repeatable selection of every kind of hostile record (random bytes, truncated and deeply
nested JSON, wrong types, huge strings, path tricks and odd Unicode in the user id, extra fields,
hostile record keys) goes to the input topic, then one valid event. The service must give every
hostile record a DLQ record holding its exact bytes and an `invalid` audit event, and the
simulator must see SCIM requests for the valid event's user only.
"""

from __future__ import annotations

from consumer.events import Outcome
from consumer.sandbox.feed import AuditReader, TopicReader, produce
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.hostile import encode, fixed_hostile_records, valid_document
from tests.integration.harness import make_pipeline, running_service

WITHIN = 60.0
SENTINEL = "u-sentinel"
REASONS = {"invalid_json", "schema_violation", "too_large"}
HOSTILE_KEYS = (b"../u-1001", b"u-1001\n", b"\xff\xfe", b"")


def hostile_batch() -> list[tuple[bytes | None, bytes]]:
    """Hostile values without a key, and valid events under hostile keys."""
    records: list[tuple[bytes | None, bytes]] = [(None, value) for value in fixed_hostile_records()]
    valid = encode(valid_document("u-1001"))
    records += [(key, valid) for key in HOSTILE_KEYS]
    return records


async def test_every_hostile_record_is_dead_lettered_and_audited_without_a_request(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Each hostile record gets its DLQ record and an invalid audit; CXone sees none of them."""
    simulator_server.simulator.seed_user(
        SENTINEL, f"{SENTINEL}@example.com", roles=[("agent_basic", "Standard Agent", True)]
    )
    hostile = hostile_batch()
    sentinel = encode(valid_document(SENTINEL))
    pipeline = await make_pipeline(topics, simulator_server)
    await produce(
        pipeline.bootstrap_servers, pipeline.input_topic, [*hostile, (SENTINEL.encode(), sentinel)]
    )
    async with (
        running_service(pipeline.settings()) as service,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        results = await audit.wait_for_results(len(hostile) + 1, within=WITHIN)
        await service.shutdown()
    async with TopicReader(pipeline.bootstrap_servers, pipeline.dlq_topic) as dlq:
        await dlq.wait_until(
            lambda reader: len(reader.records) >= len(hostile), within=WITHIN, what="the DLQ"
        )

    offsets = range(len(hostile))
    outcomes = {offset: results[(0, offset)].data.outcome for offset in offsets}
    reasons = {offset: results[(0, offset)].data.reason for offset in offsets}
    dead = {int(headers["x-source-offset"]): value for _, value, headers in dlq.records}
    assert outcomes == dict.fromkeys(offsets, Outcome.INVALID)
    keyless = len(hostile) - len(HOSTILE_KEYS)
    assert {reasons[offset] for offset in range(keyless)} <= REASONS
    # The valid event under a key that is not its user id is refused for the key.
    assert [reasons[offset] for offset in range(keyless, len(hostile))] == ["key_mismatch"] * len(
        HOSTILE_KEYS
    )
    assert dead == {offset: value for offset, (_, value) in enumerate(hostile)}
    assert results[(0, len(hostile))].data.outcome is Outcome.SYNCED
    scim = {
        request.path
        for request in simulator_server.simulator.requests
        if request.path.startswith("/scim/")
    }
    assert scim == {f"/scim/v2/Users/{SENTINEL}"}
