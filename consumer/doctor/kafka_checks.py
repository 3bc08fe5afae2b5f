"""The Kafka checks: the brokers answer, the topics fit, and the principal may do its work.

Every request here reads or is refused: metadata is asked for all topics at once (asking for
one by name lets a broker with `auto.create.topics.enable` create it), and the permission
probes are the write-nothing requests `access.py` describes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient, ConnectionGroup, CoordinationType
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    KafkaError,
    NotCoordinatorError,
    TopicAuthorizationFailedError,
)
from aiokafka.protocol.group import HeartbeatRequest
from aiokafka.protocol.produce import ProduceRequest

from consumer.doctor.access import error_name, judge_group, judge_write
from consumer.doctor.findings import Finding, fail, ok, warn
from consumer.doctor.topics import Expectations, TopicFacts, TopicRole, check_topic
from consumer.events import is_valid_user_id
from consumer.settings import LOCAL_HOSTS, Settings
from consumer.stream.kafka import TLS_PROTOCOLS, connection_options

CLIENT_ID = "cxone-role-sync-doctor"
REQUEST_TIMEOUT_MS = 10_000
# A probe member id no real member has; the broker answers UNKNOWN_MEMBER_ID.
PROBE_MEMBER = "cxone-role-sync-doctor-probe"
# A new cluster creates its offsets topic on the first coordinator lookup and answers "not
# available" until it is loaded.
COORDINATOR_PENDING = frozenset(
    {
        CoordinatorNotAvailableError.errno,
        NotCoordinatorError.errno,
        CoordinatorLoadInProgressError.errno,
    }
)
COORDINATOR_WITHIN_SECONDS = 10.0


@dataclass(frozen=True)
class Window:
    """How users are found on the input topic: its newest records, up to a number of users."""

    records_per_partition: int
    max_users: int
    within_seconds: float = 20.0


@dataclass
class KafkaReport:
    """The Kafka findings, and the user ids the input topic's recent window names."""

    findings: list[Finding] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)


async def check_kafka(
    settings: Settings, *, instances: int, window: Window, guard: bool
) -> KafkaReport:
    """Every Kafka check, in order; a broker that does not answer stops the rest.

    With `guard` (the policy has a mass-revocation guard) the guard's ledger topic is checked too.
    """
    report = KafkaReport()
    admin = AIOKafkaAdminClient(
        **connection_options(settings),
        client_id=CLIENT_ID,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        listed = await admin.describe_topics()
    except (KafkaError, OSError) as error:
        report.findings.append(
            fail(
                "kafka",
                f"no broker answers at {settings.kafka_bootstrap_servers} ({_reason(error)}); "
                "topic and permission checks not run",
            )
        )
        await admin.close()
        return report
    try:
        brokers = len(cluster.get("brokers") or [])
        report.findings.append(judge_connection(settings, brokers, cluster.get("cluster_id")))
        topics = {str(entry["topic"]): entry for entry in listed if entry.get("error_code") == 0}
        roles = {
            TopicRole.INPUT: settings.kafka_input_topic,
            TopicRole.AUDIT: settings.kafka_audit_topic,
            TopicRole.DLQ: settings.kafka_dlq_topic,
        }
        if guard:
            roles[TopicRole.GUARD] = settings.kafka_guard_topic
        present = [name for name in roles.values() if name in topics]
        configs = await _configs(admin, present)
        expected = Expectations(instances, max(brokers, 1), settings.kafka_max_record_bytes)
        for role, name in roles.items():
            facts = _facts(name, topics.get(name), configs.get(name))
            report.findings.append(check_topic(role, facts, expected))
    finally:
        await admin.close()
    input_topic = topics.get(settings.kafka_input_topic)
    if input_topic is not None:
        finding, report.user_ids = await _read_window(settings, input_topic, window)
        report.findings.append(finding)
    report.findings += await _probe_access(settings, topics, guard=guard)
    ledger = topics.get(settings.kafka_guard_topic) if guard else None
    if ledger is not None:
        report.findings.append(
            await _probe_read(settings, "read guard", settings.kafka_guard_topic, ledger)
        )
    return report


def judge_connection(settings: Settings, brokers: int, cluster_id: object) -> Finding:
    """The brokers answered; a warning when the traffic to brokers off this machine is in clear."""
    answered = (
        f"{brokers} broker{'s answer' if brokers != 1 else ' answers'} at "
        f"{settings.kafka_bootstrap_servers} (cluster {cluster_id})"
    )
    protocol = settings.kafka_security_protocol
    remote = [
        server
        for server in settings.kafka_bootstrap_servers.split(",")
        if server.rpartition(":")[0].strip("[]") not in LOCAL_HOSTS
    ]
    if protocol not in TLS_PROTOCOLS and remote:
        what = (
            "the SASL credentials and every record"
            if protocol.startswith("SASL")
            else ("every record")
        )
        return warn(
            "kafka", f"{answered}; {protocol.value} sends {what} in clear: use SSL or SASL_SSL"
        )
    return ok("kafka", answered)


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _facts(
    name: str, entry: Mapping[str, Any] | None, configs: tuple[dict[str, str] | None, str] | None
) -> TopicFacts:
    if entry is None:
        return TopicFacts(name, None)
    partitions = entry.get("partitions") or []
    replication = min((len(p.get("replicas") or []) for p in partitions), default=0)
    found, problem = configs if configs is not None else (None, "not asked")
    return TopicFacts(name, len(partitions), replication, found, problem)


async def _configs(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, tuple[dict[str, str] | None, str]]:
    """Each topic's configs, or None and why the broker would not give them."""
    if not names:
        return {}
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
    except (KafkaError, OSError) as error:
        return dict.fromkeys(names, (None, _reason(error)))
    found: dict[str, tuple[dict[str, str] | None, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            name = str(resource["resource_name"])
            if resource["error_code"] != 0:
                found[name] = (None, error_name(int(resource["error_code"])))
                continue
            entries = {}
            for entry in resource["config_entries"]:
                key = entry.get("config_names", entry.get("config_name"))
                if entry.get("config_value") is not None:
                    entries[str(key)] = str(entry["config_value"])
            found[name] = (entries, "")
    return found


async def _read_window(
    settings: Settings, entry: Mapping[str, Any], window: Window
) -> tuple[Finding, list[str]]:
    """Read the input topic's newest records: proves READ, and names users to look at."""
    topic = settings.kafka_input_topic
    partitions = [TopicPartition(topic, int(p["partition"])) for p in entry["partitions"]]
    consumer = AIOKafkaConsumer(
        **connection_options(settings),
        client_id=CLIENT_ID,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    users: dict[str, None] = {}
    records = 0
    try:
        await consumer.start()
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(starts[tp], ends[tp] - window.records_per_partition))
        remaining = set(partitions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window.within_seconds
        # At least one fetch, even of an empty window: the broker checks READ before anything.
        while True:
            batch = await consumer.getmany(*remaining, timeout_ms=200, max_records=500)
            for fetched in batch.values():
                for record in fetched:
                    records += 1
                    key = (record.key or b"").decode("utf-8", "replace")
                    if is_valid_user_id(key) and len(users) < window.max_users:
                        users[key] = None
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if not remaining or loop.time() > deadline or len(users) >= window.max_users:
                break
    except TopicAuthorizationFailedError as error:
        return fail("read input", f"the principal may not READ {topic} ({_reason(error)})"), []
    except (KafkaError, OSError) as error:
        return fail("read input", f"could not read {topic}: {_reason(error)}"), []
    finally:
        await consumer.stop()
    return (
        ok(
            "read input",
            f"the principal may READ {topic}: its newest {records} records name {len(users)} users",
        ),
        list(users),
    )


async def _probe_access(
    settings: Settings, topics: Mapping[str, Any], *, guard: bool
) -> list[Finding]:
    """The group and write probes, on a client of their own."""
    client = AIOKafkaClient(
        **connection_options(settings), client_id=CLIENT_ID, request_timeout_ms=REQUEST_TIMEOUT_MS
    )
    findings: list[Finding] = []
    try:
        await client.bootstrap()
        findings.append(await _probe_group(client, settings.kafka_group_id))
        writes = [
            ("write audit", settings.kafka_audit_topic),
            ("write dlq", settings.kafka_dlq_topic),
        ]
        if guard:
            writes.append(("write guard", settings.kafka_guard_topic))
        for check, topic in writes:
            entry = topics.get(topic)
            if entry is not None:
                findings.append(await _probe_write(client, check, topic, entry))
    except (KafkaError, OSError) as error:
        findings.append(fail("kafka access", f"the permission probes failed: {_reason(error)}"))
    finally:
        await client.close()
    return findings


async def _probe_read(
    settings: Settings, check: str, topic: str, entry: Mapping[str, Any]
) -> Finding:
    """A fetch from the end of each partition: the broker checks READ first, and returns nothing."""
    consumer = AIOKafkaConsumer(
        **connection_options(settings),
        client_id=CLIENT_ID,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    try:
        await consumer.start()
        partitions = [TopicPartition(topic, int(p["partition"])) for p in entry["partitions"]]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        await consumer.getmany(*partitions, timeout_ms=200)
    except TopicAuthorizationFailedError as error:
        return fail(check, f"the principal may not READ {topic} ({_reason(error)})")
    except (KafkaError, OSError) as error:
        return fail(check, f"could not read {topic}: {_reason(error)}")
    finally:
        await consumer.stop()
    return ok(check, f"the principal may READ {topic} (read at its end, nothing consumed)")


async def _probe_group(client: AIOKafkaClient, group: str) -> Finding:
    """Heartbeat as an unknown member; a coordinator still loading is waited for, briefly."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + COORDINATOR_WITHIN_SECONDS
    while True:
        code = await _heartbeat_answer(client, group)
        if code not in COORDINATOR_PENDING or loop.time() > deadline:
            return judge_group(group, code)
        await asyncio.sleep(0.2)


async def _heartbeat_answer(client: AIOKafkaClient, group: str) -> int:
    try:
        coordinator = await client.coordinator_lookup(CoordinationType.GROUP, group)
    except KafkaError as error:
        code = getattr(error, "errno", None)
        if isinstance(code, int):
            return code
        raise
    response = await client.send(
        coordinator,
        HeartbeatRequest(group, -1, PROBE_MEMBER),
        group=ConnectionGroup.COORDINATION,
    )
    return int(response.error_code)


async def _probe_write(
    client: AIOKafkaClient, check: str, topic: str, entry: Mapping[str, Any]
) -> Finding:
    first = min(entry["partitions"], key=lambda p: int(p["partition"]))
    # No record batch at all: nothing that could be appended, whatever the broker does.
    request = ProduceRequest(
        None, 1, REQUEST_TIMEOUT_MS, [(topic, [(int(first["partition"]), b"")])]
    )
    response = await client.send(int(first["leader"]), request)
    partitions = cast("list[Any]", response.topics[0][1])
    return judge_write(check, topic, int(partitions[0][1]))
