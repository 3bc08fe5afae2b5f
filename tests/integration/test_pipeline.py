"""The foundation path end to end: Kafka in, CXone over HTTP, audit out, offsets committed.

Every test runs the real service against the real broker and the CXone simulator over HTTP.
Joining a consumer group costs seconds, so the scenarios that need no settings of their own
share one running service (`TestOneRunningService`); each of them uses its own user ids and
finds its own audit events by event id or record key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from structlog.testing import capture_logs

from consumer.events import AuditEvent, Outcome, SyncResult
from consumer.sandbox.feed import AuditReader, TopicReader, produce
from consumer.sandbox.request_log import RequestRecord
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import CxoneSimulator
from tests.conftest import TEST_CREDENTIALS, BrokerEndpoint, Topics
from tests.integration.harness import Pipeline, make_pipeline, running_service, wait_until

pytestmark = pytest.mark.core
"""Runs on every broker of the session: Kafka 4.x, Tansu and Kafka 3.9."""

NICE = "urn:ietf:params:scim:schemas:extension:nice:2.0:User"
WITHIN = 30.0
"""Seconds any one condition may take before a test fails; generous for a loaded machine."""


def role_change(user_id: str, *roles: str, event_id: str = "evt-1") -> bytes:
    """A valid role-change event granting `roles` (first one primary)."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "okta/test",
            "type": "idp.user.roles.changed",
            "subject": user_id,
            "data": {
                "user_id": user_id,
                "roles": [
                    {"role_id": role, "primary": index == 0} for index, role in enumerate(roles)
                ],
            },
        }
    ).encode()


def deactivation(user_id: str, *, event_id: str) -> bytes:
    """A valid deactivation event, without roles."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "okta/test",
            "type": "idp.user.deactivated",
            "subject": user_id,
            "data": {"user_id": user_id},
        }
    ).encode()


def user_requests(simulator: CxoneSimulator, user_id: str) -> list[RequestRecord]:
    """The SCIM requests the simulator received for one user, oldest first."""
    path = f"/scim/v2/Users/{user_id}"
    return [record for record in simulator.requests if record.path == path]


def methods(records: list[RequestRecord]) -> list[tuple[str, int | None]]:
    """Method and answered status of each request."""
    return [(record.method, record.status) for record in records]


def without(document: dict[str, Any], *names: str) -> dict[str, Any]:
    """A copy of a SCIM document without the named attributes."""
    return {key: value for key, value in document.items() if key not in names}


async def committed_offset(pipeline: Pipeline, partition: int = 0) -> int | None:
    """The offset the service's group committed on an input partition."""
    probe = AIOKafkaConsumer(
        bootstrap_servers=pipeline.bootstrap_servers,
        group_id=pipeline.group_id,
        enable_auto_commit=False,
    )
    await probe.start()
    try:
        committed: int | None = await probe.committed(
            TopicPartition(pipeline.input_topic, partition)
        )
        return committed
    finally:
        await probe.stop()


async def wait_for_commit(pipeline: Pipeline, offset: int, *, within: float = WITHIN) -> int:
    """Wait until the group committed at least `offset` on partition 0; return the commit."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        committed = await committed_offset(pipeline)
        if committed is not None and committed >= offset:
            return committed
        if loop.time() > deadline:
            raise TimeoutError(f"the group committed {committed}, not {offset}, within {within}s")
        await asyncio.sleep(0.1)  # poll interval, not a synchronisation


async def read_whole_topic(bootstrap_servers: str, topic: str) -> list[AuditEvent]:
    """Every audit event on a topic, read up to an end marker this function appends."""
    # Tansu's high watermark is no reliable end, so a marker written last shows where it is.
    marker = b"end-of-topic-marker"
    await produce(bootstrap_servers, topic, [(marker, b"")])
    async with AuditReader(bootstrap_servers, topic) as reader:
        await reader.wait_until(
            lambda seen: any(key == marker for key, _, _ in seen.records),
            within=WITHIN,
            what="the end marker",
        )
        return list(reader.events)


@pytest.mark.parametrize(
    ("transport", "password_grant"),
    [("aiohttp", True), ("httpx", True), ("aiohttp", False)],
    ids=["aiohttp-password", "httpx-password", "aiohttp-client_credentials"],
)
async def test_happy_path_replaces_roles_audits_and_commits(
    topics: Topics, simulator_server: SimulatorServer, transport: str, password_grant: bool
) -> None:
    """A role change is written to CXone, audited as synced, and its offset committed."""
    simulator = simulator_server.simulator
    simulator.seed_user(
        "u-1",
        "a@example.com",
        given_name="Ada",
        emails=["a@example.com"],
        roles=[("agent_basic", "Standard Agent", True)],
    )
    pipeline = await make_pipeline(
        topics, simulator_server, password_grant=password_grant, CXONE_HTTP_TRANSPORT=transport
    )
    settings = pipeline.settings()
    assert settings.cxone_http_transport.value == transport
    # An access key is what makes the client use the password grant (asserted below).
    assert (settings.cxone_access_key_id is not None) is password_grant
    await produce(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        [(b"u-1", role_change("u-1", "agent_voice"))],
    )
    with capture_logs() as logs:
        async with (
            running_service(settings) as service,
            AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
        ):
            results = await audit.wait_for_results(1, within=WITHIN)
            await service.shutdown()
    [event] = results.values()
    assert event.data.outcome is Outcome.SYNCED
    assert event.data.event_id == "evt-1"
    assert event.data.user_id == "u-1"
    assert event.data.roles_before == ("agent_basic",)
    assert event.data.roles_after == ("agent_voice",)
    assert event.data.http_status == 200
    assert event.data.escalation is False
    assert event.data.source.topic == pipeline.input_topic
    assert (event.data.source.partition, event.data.source.offset) == (0, 0)
    user = simulator.get_user("u-1")
    assert user["roles"] == [{"value": "agent_voice", "display": "Voice Agent", "primary": True}]
    assert user["name"]["givenName"] == "Ada"
    [get, put] = user_requests(simulator, "u-1")
    assert (get.method, get.status, put.method, put.status) == ("GET", 200, "PUT", 200)
    assert event.data.payload_sha256 == hashlib.sha256(put.body).hexdigest()
    grants = [entry["grant_type"] for entry in logs if entry["event"] == "auth.token_refreshed"]
    assert grants == ["password" if password_grant else "client_credentials"]
    assert await committed_offset(pipeline) == 1


async def test_dry_run_decides_and_audits_but_writes_nothing(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """With SYNC_DRY_RUN=true the result is dry_run with the roles it would write, and no PUT."""
    simulator = simulator_server.simulator
    seeded = simulator.seed_user(
        "u-dry", "dry@example.com", given_name="Dee", roles=[("agent_basic", None, True)]
    )
    pipeline = await make_pipeline(topics, simulator_server, SYNC_DRY_RUN="true")
    settings = pipeline.settings()
    assert settings.sync_dry_run is True
    await produce(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        [(b"u-dry", role_change("u-dry", "agent_voice", "reporting_viewer", event_id="evt-dry"))],
    )
    async with (
        running_service(settings) as service,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        results = await audit.wait_for_results(1, within=WITHIN)
        await service.shutdown()
    [event] = results.values()
    assert event.data.outcome is Outcome.DRY_RUN
    assert event.data.event_id == "evt-dry"
    assert event.data.roles_before == ("agent_basic",)
    assert event.data.roles_after == ("agent_voice", "reporting_viewer")
    assert event.data.http_status is None
    assert event.data.payload_sha256 is not None
    assert len(event.data.payload_sha256) == 64
    assert methods(user_requests(simulator, "u-dry")) == [("GET", 200)]
    assert simulator.get_user("u-dry") == seeded
    assert await committed_offset(pipeline) == 1


async def test_restart_after_a_clean_stop_rereads_nothing_committed(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A service restarted after a clean stop resumes after its commit: one audit per record."""
    simulator = simulator_server.simulator
    for user_id in ("u-r1", "u-r2", "u-r3"):
        simulator.seed_user(user_id, f"{user_id}@example.com", roles=[("agent_basic", None, True)])
    pipeline = await make_pipeline(topics, simulator_server)
    settings = pipeline.settings()

    await produce(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        [
            (b"u-r1", role_change("u-r1", "agent_voice", event_id="evt-r1")),
            (b"u-r2", role_change("u-r2", "agent_digital", event_id="evt-r2")),
        ],
    )
    async with (
        running_service(settings) as service,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await audit.wait_for_results(2, within=WITHIN)
        await service.shutdown()
    assert await committed_offset(pipeline) == 2

    await produce(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        [
            (b"u-r3", role_change("u-r3", "reporting_viewer", event_id="evt-r3")),
            (b"u-r1", role_change("u-r1", "agent_blended", event_id="evt-r4")),
        ],
    )
    async with (
        running_service(settings) as service,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
    ):
        await audit.wait_for_results(4, within=WITHIN)
        await service.shutdown()
    assert await committed_offset(pipeline) == 4

    events = await read_whole_topic(pipeline.bootstrap_servers, pipeline.audit_topic)
    # Different users run concurrently, so their audits may be published in any order.
    audited = sorted((event.data.source.offset, event.data.event_id) for event in events)
    assert audited == [
        (0, "evt-r1"),
        (1, "evt-r2"),
        (2, "evt-r3"),
        (3, "evt-r4"),
    ]
    assert {event.data.outcome for event in events} == {Outcome.SYNCED}
    puts = {
        user_id: [record.method for record in user_requests(simulator, user_id)].count("PUT")
        for user_id in ("u-r1", "u-r2", "u-r3")
    }
    assert puts == {"u-r1": 2, "u-r2": 1, "u-r3": 1}
    assert [role["value"] for role in simulator.get_user("u-r1")["roles"]] == ["agent_blended"]


@dataclass
class LiveService:
    """One service running for a whole test class, with readers of its audit and DLQ topics."""

    simulator: CxoneSimulator
    pipeline: Pipeline
    audit: AuditReader
    dlq: TopicReader

    async def send(self, *records: tuple[bytes, bytes]) -> None:
        """Produce records to the input topic."""
        await produce(self.pipeline.bootstrap_servers, self.pipeline.input_topic, records)

    async def result(self, *, event_id: str | None = None, key: str | None = None) -> SyncResult:
        """The one audit result of an event (by id) or of an unreadable record (by key)."""

        def matches(event: AuditEvent) -> bool:
            if event_id is not None:
                return event.data.event_id == event_id
            return event.data.event_id is None and event.data.user_id == key

        await self.audit.wait_until(
            lambda reader: any(matches(event) for event in self.audit.events),
            within=WITHIN,
            what=f"the audit of {event_id or key}",
        )
        [found] = [event.data for event in self.audit.events if matches(event)]
        return found

    async def dead_letter(self, key: bytes) -> tuple[bytes | None, dict[str, bytes]]:
        """The one DLQ record with this key: its value and headers."""

        def has_key(reader: TopicReader) -> bool:
            return any(record_key == key for record_key, _, _ in reader.records)

        await self.dlq.wait_until(has_key, within=WITHIN, what=f"the dead letter {key!r}")
        [found] = [(value, headers) for k, value, headers in self.dlq.records if k == key]
        return found


@pytest_asyncio.fixture(scope="class", loop_scope="class")
async def live(broker: BrokerEndpoint) -> AsyncIterator[LiveService]:
    """A simulator and one service with the example policy, shared by a test class."""
    topics = Topics(broker.bootstrap_servers, "one-running-service")
    async with SimulatorServer(CxoneSimulator(TEST_CREDENTIALS)) as server:
        pipeline = await make_pipeline(topics, server)
        async with (
            running_service(pipeline.settings()),
            AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
            TopicReader(pipeline.bootstrap_servers, pipeline.dlq_topic) as dlq,
        ):
            yield LiveService(server.simulator, pipeline, audit, dlq)


@pytest.mark.asyncio(loop_scope="class")
class TestOneRunningService:
    """Scenarios that share one service run; each owns its users and finds its own audits."""

    async def test_event_equal_to_current_state_is_unchanged(self, live: LiveService) -> None:
        """An event asking for the roles the user already holds writes nothing: unchanged."""
        live.simulator.seed_user(
            "u-same", "same@example.com", roles=[("agent_voice", "Voice Agent", True)]
        )
        await live.send((b"u-same", role_change("u-same", "agent_voice", event_id="evt-same")))
        result = await live.result(event_id="evt-same")
        assert result.outcome is Outcome.UNCHANGED
        assert result.reason is None
        assert result.roles_before == ("agent_voice",)
        assert result.roles_after == ("agent_voice",)
        assert result.http_status is None
        assert result.payload_sha256 is None
        assert methods(user_requests(live.simulator, "u-same")) == [("GET", 200)]

    async def test_unknown_role_is_rejected_as_an_escalation(self, live: LiveService) -> None:
        """A role the catalog does not know is rejected as unknown_role, flagged, not written."""
        seeded = live.simulator.seed_user(
            "u-esc", "esc@example.com", roles=[("agent_basic", "Standard Agent", True)]
        )
        await live.send(
            (b"u-esc", role_change("u-esc", "agent_basic", "god_mode", event_id="evt-esc"))
        )
        result = await live.result(event_id="evt-esc")
        assert result.outcome is Outcome.REJECTED
        assert result.reason == "unknown_role"
        assert result.escalation is True
        assert result.detail is not None
        assert "god_mode" in result.detail
        assert result.roles_before == ("agent_basic",)
        assert result.roles_after == ("agent_basic",)
        assert methods(user_requests(live.simulator, "u-esc")) == [("GET", 200)]
        assert live.simulator.get_user("u-esc") == seeded

    async def test_unknown_user_fails_as_user_not_found(self, live: LiveService) -> None:
        """An event for a user CXone does not have fails for good as user_not_found."""
        await live.send((b"u-ghost", role_change("u-ghost", "agent_basic", event_id="evt-ghost")))
        result = await live.result(event_id="evt-ghost")
        assert result.outcome is Outcome.FAILED
        assert result.reason == "user_not_found"
        assert result.http_status == 404
        assert result.escalation is False
        # Never read: nothing is known of the user's roles or `active`.
        assert (result.roles_before, result.active_before, result.roles_after) == (None, None, None)
        assert methods(user_requests(live.simulator, "u-ghost")) == [("GET", 404)]

    async def test_deactivation_sets_inactive_and_removes_roles(self, live: LiveService) -> None:
        """A deactivation writes active=false and no roles, keeping the rest of the user."""
        seeded = live.simulator.seed_user(
            "u-leaver",
            "leaver@example.com",
            given_name="Lee",
            emails=["leaver@example.com"],
            team="Blue",
            roles=[("agent_basic", "Standard Agent", True), ("reporting_viewer", None, False)],
        )
        await live.send((b"u-leaver", deactivation("u-leaver", event_id="evt-leaver")))
        result = await live.result(event_id="evt-leaver")
        assert result.outcome is Outcome.SYNCED
        assert result.roles_before == ("agent_basic", "reporting_viewer")
        assert result.roles_after == ()
        assert result.escalation is False
        user = live.simulator.get_user("u-leaver")
        assert user["active"] is False
        assert user.get("roles", []) == []
        assert without(user, "roles", "active", "meta") == without(
            seeded, "roles", "active", "meta"
        )
        [put] = [r for r in user_requests(live.simulator, "u-leaver") if r.method == "PUT"]
        assert put.json()["active"] is False
        assert put.json()["roles"] == []

    async def test_invalid_records_go_to_the_dlq_and_consumption_goes_on(
        self, live: LiveService
    ) -> None:
        """Invalid JSON and a schema violation are dead-lettered and audited; later events sync."""
        live.simulator.seed_user(
            "u-after", "after@example.com", roles=[("agent_basic", None, True)]
        )
        broken_json = b'{"specversion": "1.0", "id": '
        unknown_field = json.loads(role_change("u-schema", "agent_basic", event_id="evt-schema"))
        unknown_field["priority"] = "high"
        schema_violation = json.dumps(unknown_field).encode()
        await live.send(
            (b"k-broken", broken_json),
            (b"u-schema", schema_violation),
            (b"u-after", role_change("u-after", "agent_voice", event_id="evt-after")),
        )

        after = await live.result(event_id="evt-after")
        assert after.outcome is Outcome.SYNCED
        assert after.roles_after == ("agent_voice",)

        cases = [
            ("k-broken", broken_json, "invalid_json", None),
            ("u-schema", schema_violation, "schema_violation", "evt-schema"),
        ]
        offsets = []
        for key, value, reason, event_id in cases:
            # The id of a record whose JSON parsed is carried; a broken one has none.
            audited = await live.result(event_id=event_id, key=key)
            assert (audited.event_id, audited.user_id) == (event_id, key)
            assert audited.outcome is Outcome.INVALID
            assert audited.reason == reason
            assert audited.detail
            assert audited.roles_after is None
            dead_value, headers = await live.dead_letter(key.encode())
            assert dead_value == value
            assert headers == {
                "x-error-reason": reason.encode(),
                "x-error-detail": audited.detail.encode(),
                "x-source-topic": live.pipeline.input_topic.encode(),
                "x-source-partition": b"0",
                "x-source-offset": str(audited.source.offset).encode(),
            }
            offsets.append(audited.source.offset)
        assert offsets[0] < offsets[1] < after.source.offset
        assert "priority" in str((await live.result(event_id="evt-schema")).detail)
        assert user_requests(live.simulator, "u-schema") == []
        assert await wait_for_commit(live.pipeline, after.source.offset + 1) >= (
            after.source.offset + 1
        )

    async def test_a_record_not_keyed_by_its_user_is_dead_lettered_and_never_applied(
        self, live: LiveService
    ) -> None:
        """No key, or another user's key: invalid (key_mismatch), dead-lettered, never applied."""
        for user_id in ("u-keyless", "u-miskeyed"):
            live.simulator.seed_user(
                user_id, f"{user_id}@example.com", roles=[("agent_basic", None, True)]
            )
        await live.send(
            (None, role_change("u-keyless", "agent_voice", event_id="evt-keyless")),  # type: ignore[arg-type]
            (b"u-someone-else", role_change("u-miskeyed", "agent_voice", event_id="evt-miskeyed")),
        )
        for event_id, key, why in (
            ("evt-keyless", None, "record has no key"),
            ("evt-miskeyed", b"u-someone-else", "record has a key other than data.user_id"),
        ):
            result = await live.result(event_id=event_id)
            assert (result.outcome, result.reason, result.detail) == (
                Outcome.INVALID,
                "key_mismatch",
                f"{why}; the key must be the user id",
            )
            _, headers = await live.dead_letter(key)  # type: ignore[arg-type]
            assert headers["x-error-reason"] == b"key_mismatch"
        for user_id in ("u-keyless", "u-miskeyed"):
            assert user_requests(live.simulator, user_id) == []
            roles = live.simulator.get_user(user_id)["roles"]
            assert [role["value"] for role in roles] == ["agent_basic"]

    async def test_user_id_that_could_escape_the_path_is_never_requested(
        self, live: LiveService
    ) -> None:
        """A user id with '/' or '..' is invalid input, dead-lettered, and never sent to CXone."""
        for user_id in ("evil/admin", "evil..x", "../evil"):
            event_id = f"evt-{user_id}"
            await live.send(
                (user_id.encode(), role_change(user_id, "agent_basic", event_id=event_id))
            )
            result = await live.result(event_id=event_id)
            # A key that is no valid user id stays out of the audit (the DLQ copy keeps it).
            assert result.user_id is None
            assert result.outcome is Outcome.INVALID
            assert result.reason == "schema_violation"
            assert result.detail is not None
            assert result.detail.startswith("data.user_id: ")
            _, headers = await live.dead_letter(user_id.encode())
            assert headers["x-error-reason"] == b"schema_violation"
        # The simulator logs paths percent-decoded, so an encoded '/' would show up here too.
        assert [record.path for record in live.simulator.requests if "evil" in record.path] == []

    async def test_unmanaged_attributes_survive_a_write(self, live: LiveService) -> None:
        """Name, emails, phone numbers, title and the NICE extension are unchanged by a write."""
        seeded = live.simulator.seed_user(
            "u-full",
            "full@example.com",
            given_name="Grace",
            family_name="Hopper",
            emails=["full@example.com", "grace@example.org"],
            phone_numbers=["+1 555 0100", "+1 555 0199"],
            title="Senior Agent",
            team="Night Shift",
            login_authenticator="SSO-Okta",
            roles=[("agent_basic", "Standard Agent", True)],
        )
        await live.send(
            (
                b"u-full",
                role_change("u-full", "agent_voice", "reporting_viewer", event_id="evt-full"),
            )
        )
        result = await live.result(event_id="evt-full")
        assert result.outcome is Outcome.SYNCED
        user = live.simulator.get_user("u-full")
        assert [role["value"] for role in user["roles"]] == ["agent_voice", "reporting_viewer"]
        assert without(user, "roles", "meta") == without(seeded, "roles", "meta")
        assert user["name"] == {"givenName": "Grace", "familyName": "Hopper"}
        assert [email["value"] for email in user["emails"]] == [
            "full@example.com",
            "grace@example.org",
        ]
        assert [phone["value"] for phone in user["phoneNumbers"]] == ["+1 555 0100", "+1 555 0199"]
        assert user["title"] == "Senior Agent"
        assert user[NICE] == {"team": "Night Shift", "loginAuthenticator": "SSO-Okta"}
        [put] = [r for r in user_requests(live.simulator, "u-full") if r.method == "PUT"]
        assert put.json()[NICE] == {"team": "Night Shift", "loginAuthenticator": "SSO-Okta"}
        assert result.payload_sha256 == hashlib.sha256(put.body).hexdigest()

    async def test_queued_deactivation_sticks_when_a_roles_change_follows(
        self, live: LiveService
    ) -> None:
        """e1 in flight, then deactivated and roles.changed [] queued: the user ends inactive."""
        live.simulator.seed_user(
            "u-offboard", "offboard@example.com", roles=[("agent_basic", "Standard Agent", True)]
        )
        # Slow CXone down so e1 is still in flight when the other two arrive.
        live.simulator.faults.set_latency(1.5)
        try:
            await live.send(
                (b"u-offboard", role_change("u-offboard", "agent_voice", event_id="f1"))
            )
            await wait_until(
                lambda: any(r.method == "GET" for r in user_requests(live.simulator, "u-offboard")),
                within=WITHIN,
                what="e1's read of the user",
            )
            await live.send(
                (b"u-offboard", deactivation("u-offboard", event_id="f2")),
                (b"u-offboard", role_change("u-offboard", event_id="f3")),
            )
            last = await live.result(event_id="f3")
        finally:
            live.simulator.faults.set_latency(0.0)
        superseded = await live.result(event_id="f2")
        assert (superseded.outcome, superseded.detail) == (Outcome.SUPERSEDED, "superseded_by=f3")
        assert (await live.result(event_id="f1")).outcome is Outcome.SYNCED
        assert (last.outcome, last.roles_before, last.roles_after) == (
            Outcome.SYNCED,
            ("agent_voice",),
            (),
        )
        user = live.simulator.get_user("u-offboard")
        assert user["active"] is False
        assert user.get("roles", []) == []

    async def test_a_refused_change_still_removes_what_it_removes(self, live: LiveService) -> None:
        """A refused [billing_admin, billing_auditor] still drops agent_basic; the audit says so."""
        live.simulator.seed_user(
            "u-sod",
            "sod@example.com",
            roles=[("agent_basic", "Standard Agent", True), ("reporting_viewer", None, False)],
        )
        event = json.loads(role_change("u-sod", "billing_admin", "billing_auditor", event_id="s1"))
        event["data"]["approval"] = {"ticket": "CHG-9", "approved_by": "secops"}
        await live.send((b"u-sod", json.dumps(event).encode()))
        result = await live.result(event_id="s1")
        assert (result.outcome, result.reason, result.escalation) == (
            Outcome.REJECTED,
            "sod_conflict",
            False,
        )
        assert result.roles_before == ("agent_basic", "reporting_viewer")
        assert result.roles_after == ("reporting_viewer",)
        [put] = [r for r in user_requests(live.simulator, "u-sod") if r.method == "PUT"]
        assert result.payload_sha256 == hashlib.sha256(put.body).hexdigest()
        assert result.http_status == 200
        assert result.detail is not None
        assert result.detail.endswith("removals still applied: agent_basic")
        roles = live.simulator.get_user("u-sod")["roles"]
        assert [(role["value"], role["primary"]) for role in roles] == [("reporting_viewer", True)]
