"""The topic checks, pure: what the broker reported about a topic, held against what it is for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from consumer.doctor.findings import Finding, fail, ok, warn

DAY_MS = 86_400_000


class TopicRole(StrEnum):
    """What the service does with a topic."""

    INPUT = "input"
    AUDIT = "audit"
    DLQ = "dlq"
    GUARD = "guard"


# Below these, warn: replay reaches back only as far as the input's retention; the audit trail
# is only as long as the audit topic's; a dead letter must outlive the fix of its producer.
MIN_RETENTION_DAYS = {TopicRole.INPUT: 7, TopicRole.AUDIT: 30, TopicRole.DLQ: 7}


@dataclass(frozen=True)
class TopicFacts:
    """What the broker says of one topic; `configs` is None when it would not say."""

    name: str
    partitions: int | None
    replication: int = 1
    configs: Mapping[str, str] | None = None
    configs_problem: str = ""


@dataclass(frozen=True)
class Expectations:
    """What the installation needs of its topics."""

    instances: int
    brokers: int
    max_record_bytes: int


def check_topic(role: TopicRole, facts: TopicFacts, expected: Expectations) -> Finding:
    """One line on one topic: it exists, and its partitions, replication and configs fit."""
    name = f"topic {role.value}"
    if facts.partitions is None and role is TopicRole.GUARD:
        return warn(
            name,
            f"{facts.name} does not exist: run creates it at start-up (compacted, one partition) "
            "if the principal may CREATE topics; otherwise create it so",
        )
    if facts.partitions is None:
        return fail(name, f"{facts.name} does not exist (the service creates no topics)")
    parts = [f"{facts.name}: {facts.partitions} partitions, replication {facts.replication}"]
    failures: list[str] = []
    warnings: list[str] = []
    if role is TopicRole.INPUT and facts.partitions < expected.instances:
        failures.append(
            f"fewer partitions than the {expected.instances} instances planned: "
            f"{expected.instances - facts.partitions} would sit idle"
        )
    wanted_replicas = min(3, expected.brokers)
    if facts.replication < wanted_replicas:
        warnings.append(
            f"replication {facts.replication} on {expected.brokers} brokers: "
            "losing one broker loses the topic"
        )
    if facts.configs is None:
        warnings.append(f"configs not readable ({facts.configs_problem}); check them by hand")
    elif not facts.configs:
        warnings.append("the broker reported no configs; check retention and cleanup by hand")
    else:
        parts.append(_describe_configs(facts.configs))
        _judge_configs(role, facts.configs, expected, failures, warnings)
    detail = ", ".join(parts)
    if failures:
        return fail(name, f"{detail}: " + "; ".join(failures + warnings))
    if warnings:
        return warn(name, f"{detail}: " + "; ".join(warnings))
    return ok(name, detail)


def _describe_configs(configs: Mapping[str, str]) -> str:
    retention = configs.get("retention.ms")
    shown = [f"retention {_duration(retention)}" if retention is not None else ""]
    if "cleanup.policy" in configs:
        shown.append(f"cleanup.policy {configs['cleanup.policy']}")
    return ", ".join(part for part in shown if part)


def _duration(retention_ms: str) -> str:
    value = _int(retention_ms)
    if value is None:
        return retention_ms
    if value < 0:
        return "forever"
    days = value / DAY_MS
    return f"{days:g} d" if days >= 1 else f"{value / 3_600_000:g} h"


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _judge_configs(
    role: TopicRole,
    configs: Mapping[str, str],
    expected: Expectations,
    failures: list[str],
    warnings: list[str],
) -> None:
    policies = {part.strip() for part in configs.get("cleanup.policy", "delete").split(",")}
    if role is TopicRole.GUARD:
        if "compact" not in policies:
            warnings.append(
                "cleanup.policy without compact: the guard's ledger keeps every entry until "
                "retention drops it, instead of each partition's newest"
            )
        return
    if "compact" in policies:
        if role is TopicRole.AUDIT:
            failures.append(
                "cleanup.policy compact keeps only each user's newest audit event: "
                "the audit trail would be lost"
            )
        else:
            warnings.append(
                "cleanup.policy compact keeps only each key's newest record: "
                "older events cannot be replayed or re-driven"
            )
    retention = _int(configs.get("retention.ms"))
    floor = MIN_RETENTION_DAYS[role]
    if retention is not None and 0 <= retention < floor * DAY_MS:
        warnings.append(f"retention below {floor} d")
    if role is TopicRole.INPUT and (_int(configs.get("retention.bytes")) or -1) >= 0:
        warnings.append("retention.bytes set: a burst may delete events before a replay needs them")
    largest = _int(configs.get("max.message.bytes"))
    if role is not TopicRole.INPUT and largest is not None and largest < expected.max_record_bytes:
        failures.append(
            f"max.message.bytes {largest} is below KAFKA_MAX_RECORD_BYTES "
            f"{expected.max_record_bytes}: a record the service may publish would be refused"
        )
