"""The doctor's pure judgments: topic settings, permission probes, roles, users files, output."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.catalog import RoleCatalog, RoleDefinition
from consumer.doctor.access import (
    GROUP_AUTHORIZATION_FAILED,
    INVALID_RECORD,
    TOPIC_AUTHORIZATION_FAILED,
    error_name,
    judge_group,
    judge_write,
)
from consumer.doctor.findings import Finding, Verdict, exit_code, listing, render, summary
from consumer.doctor.kafka_checks import judge_connection
from consumer.doctor.roles import TenantRoles, unheld_roles, unknown_roles
from consumer.doctor.topics import DAY_MS, Expectations, TopicFacts, TopicRole, check_topic
from consumer.doctor.users import chosen_users, read_users_file
from consumer.errors import ConfigurationError
from consumer.settings import Settings, load_settings

EXPECTED = Expectations(instances=1, brokers=3, max_record_bytes=1_048_576)
GOOD = {"retention.ms": str(14 * DAY_MS), "cleanup.policy": "delete"}


def _topic(role: TopicRole, **configs: str) -> Finding:
    facts = TopicFacts("t", partitions=6, replication=3, configs={**GOOD, **configs})
    if role is TopicRole.AUDIT and "retention.ms" not in configs:
        facts = TopicFacts("t", 6, 3, {**GOOD, "retention.ms": "-1", **configs})
    return check_topic(role, facts, EXPECTED)


def test_a_well_set_topic_is_ok_and_says_its_settings() -> None:
    """Enough partitions, replicas and retention, delete policy: ok, with the figures."""
    finding = _topic(TopicRole.INPUT)
    assert finding.verdict is Verdict.OK
    assert finding.detail == "t: 6 partitions, replication 3, retention 14 d, cleanup.policy delete"


def test_missing_topic_fails() -> None:
    """A topic the broker does not list fails."""
    finding = check_topic(TopicRole.DLQ, TopicFacts("gone", None), EXPECTED)
    assert finding == Finding(
        "topic dlq", Verdict.FAIL, "gone does not exist (the service creates no topics)"
    )


def test_compacted_audit_topic_fails_and_compacted_input_warns() -> None:
    """Compaction would erase the audit trail (fail); on the input it limits replay (warn)."""
    assert _topic(TopicRole.AUDIT, **{"cleanup.policy": "compact"}).verdict is Verdict.FAIL
    assert _topic(TopicRole.INPUT, **{"cleanup.policy": "compact,delete"}).verdict is Verdict.WARN


def test_short_retention_warns_with_the_floor_of_its_role() -> None:
    """Retention under the role's floor (7 d input, 30 d audit) warns; forever is fine."""
    short = _topic(TopicRole.INPUT, **{"retention.ms": str(DAY_MS)})
    assert short.verdict is Verdict.WARN
    assert "retention 1 d" in short.detail
    assert "retention below 7 d" in short.detail
    assert _topic(TopicRole.AUDIT, **{"retention.ms": str(14 * DAY_MS)}).verdict is Verdict.WARN
    assert _topic(TopicRole.AUDIT, **{"retention.ms": "-1"}).verdict is Verdict.OK


def test_a_size_bound_on_the_input_warns() -> None:
    """retention.bytes on the input may delete events a replay needs: a warning."""
    assert _topic(TopicRole.INPUT, **{"retention.bytes": "1073741824"}).verdict is Verdict.WARN
    assert _topic(TopicRole.INPUT, **{"retention.bytes": "-1"}).verdict is Verdict.OK


def test_output_topic_smaller_than_the_largest_record_fails() -> None:
    """An audit or DLQ topic whose max.message.bytes is below KAFKA_MAX_RECORD_BYTES fails."""
    finding = _topic(TopicRole.DLQ, **{"max.message.bytes": "65536"})
    assert finding.verdict is Verdict.FAIL
    assert "max.message.bytes 65536 is below KAFKA_MAX_RECORD_BYTES 1048576" in finding.detail
    assert _topic(TopicRole.INPUT, **{"max.message.bytes": "65536"}).verdict is Verdict.OK


def test_fewer_input_partitions_than_instances_fails() -> None:
    """Planning more instances than input partitions fails, saying how many would idle."""
    facts = TopicFacts("in", 2, 3, GOOD)
    finding = check_topic(TopicRole.INPUT, facts, Expectations(5, 3, 1_048_576))
    assert finding.verdict is Verdict.FAIL
    assert "3 would sit idle" in finding.detail


def test_replication_is_judged_against_the_brokers_there_are() -> None:
    """Replication 1 warns on three brokers and is all there can be on one."""
    facts = TopicFacts("t", 1, 1, GOOD)
    assert (
        check_topic(TopicRole.INPUT, facts, Expectations(1, 3, 1_048_576)).verdict is Verdict.WARN
    )
    assert check_topic(TopicRole.INPUT, facts, Expectations(1, 1, 1_048_576)).verdict is Verdict.OK


def test_unreadable_or_absent_configs_warn() -> None:
    """Configs the broker will not give, or does not have, are a warning to check by hand."""
    refused = TopicFacts("t", 1, 1, None, "TOPIC_AUTHORIZATION_FAILED")
    finding = check_topic(TopicRole.INPUT, refused, Expectations(1, 1, 1_048_576))
    assert finding.verdict is Verdict.WARN
    assert "TOPIC_AUTHORIZATION_FAILED" in finding.detail
    empty = TopicFacts("t", 1, 1, {})
    assert check_topic(TopicRole.INPUT, empty, Expectations(1, 1, 1)).verdict is Verdict.WARN


def test_write_probe_answers() -> None:
    """Authorization failure fails; INVALID_RECORD proves WRITE; anything else is unproven."""
    assert judge_write("write dlq", "d", TOPIC_AUTHORIZATION_FAILED).verdict is Verdict.FAIL
    assert judge_write("write dlq", "d", INVALID_RECORD).verdict is Verdict.OK
    unproven = judge_write("write dlq", "d", -1)
    assert unproven.verdict is Verdict.WARN
    assert "UNKNOWN" in unproven.detail


def test_group_probe_answers() -> None:
    """GROUP_AUTHORIZATION_FAILED fails; UNKNOWN_MEMBER_ID proves READ; others are unproven."""
    assert judge_group("g", GROUP_AUTHORIZATION_FAILED).verdict is Verdict.FAIL
    assert judge_group("g", 25).verdict is Verdict.OK
    assert judge_group("g", 15).verdict is Verdict.WARN


def test_error_names() -> None:
    """Kafka's names for codes, including one aiokafka has no class for."""
    assert error_name(TOPIC_AUTHORIZATION_FAILED) == "TOPIC_AUTHORIZATION_FAILED"
    assert error_name(INVALID_RECORD) == "INVALID_RECORD"
    assert error_name(9999) == "error code 9999"


CATALOG = RoleCatalog(
    {
        "agent": RoleDefinition(display_name="Agent"),
        "lead": RoleDefinition(display_name="Lead", inherits_from=["agent"]),
    }
)


def test_roles_compared_both_ways() -> None:
    """A held value outside the catalog fails naming its holder; an unheld catalog role warns."""
    tenant = TenantRoles.of([("u-1", ["agent", "wizard"]), ("u-2", ["agent"])])
    unknown = unknown_roles(CATALOG, tenant)
    assert unknown.verdict is Verdict.FAIL
    assert "wizard (held by u-1)" in unknown.detail
    unheld = unheld_roles(CATALOG, tenant)
    assert unheld.verdict is Verdict.WARN
    assert "1 of 2 policy roles are held by none of the 2 users read: lead" in unheld.detail


def test_roles_without_users_warn() -> None:
    """No user read means nothing to compare: a warning, not a pass."""
    assert unknown_roles(CATALOG, TenantRoles.of([])).verdict is Verdict.WARN
    assert unheld_roles(CATALOG, TenantRoles.of([])).verdict is Verdict.WARN


@given(st.lists(st.sampled_from(["agent", "lead", "x", "y"]), max_size=6))
def test_roles_verdicts_follow_the_sets(held: list[str]) -> None:
    """`roles unknown` fails exactly when a held value is outside the catalog."""
    tenant = TenantRoles.of([("u-1", held)])
    expected = Verdict.FAIL if set(held) - {"agent", "lead"} else Verdict.OK
    assert unknown_roles(CATALOG, tenant).verdict is expected


def test_users_file(tmp_path: Path) -> None:
    """Ids one a line; comments and blanks skipped; a bad id names its line."""
    good = tmp_path / "users.txt"
    good.write_text("u-1\n\n# a comment\nu-2  # trailing\n")
    assert read_users_file(good) == ["u-1", "u-2"]
    bad = tmp_path / "bad.txt"
    bad.write_text("u-1\n../admin\n")
    with pytest.raises(ConfigurationError, match=r"bad.txt:2: not a CXone user id"):
        read_users_file(bad)
    with pytest.raises(ConfigurationError, match="No such file"):
        read_users_file(tmp_path / "absent.txt")


def test_chosen_users_keeps_order_drops_repeats_and_bounds() -> None:
    """The file's users first, then the topic's, each once, at most `limit`."""
    assert chosen_users(["a", "b"], ["b", "c", "d"], limit=3) == ["a", "b", "c"]


def test_output_lines_summary_and_exit_code() -> None:
    """Lines start with the verdict; the summary counts; any failure makes the exit code 1."""
    findings = [Finding("kafka", Verdict.OK, "fine"), Finding("group", Verdict.WARN, "hmm")]
    assert render(findings[0]) == "ok    kafka          fine"
    assert summary(findings) == "doctor: 2 checks: 1 ok, 1 warn, 0 fail"
    assert exit_code(findings) == 0
    assert exit_code([*findings, Finding("policy", Verdict.FAIL, "bad")]) == 1
    assert listing(["c", "a", "b"], limit=2) == "a, b and 1 more"


def test_the_guard_topic_wants_compaction_and_may_be_missing() -> None:
    """A missing guard topic warns (run creates it); one without compaction warns; compact is ok."""
    missing = check_topic(TopicRole.GUARD, TopicFacts("g", None), EXPECTED)
    assert missing.verdict is Verdict.WARN
    compact = TopicFacts("g", 1, 3, {"cleanup.policy": "compact", "retention.ms": "60000"})
    assert check_topic(TopicRole.GUARD, compact, EXPECTED).verdict is Verdict.OK
    deleting = TopicFacts("g", 1, 3, {"cleanup.policy": "delete"})
    assert check_topic(TopicRole.GUARD, deleting, EXPECTED).verdict is Verdict.WARN


def _settings(**kafka: str) -> Settings:
    return load_settings(
        cxone_scim_base_url="https://cxone.example.com/scim/v2",
        cxone_token_url="https://cxone.example.com/auth/token",
        cxone_client_id="c",
        cxone_client_secret="s",
        policy_file=str(Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"),
        **kafka,
    )


def test_clear_traffic_to_remote_brokers_warns() -> None:
    """PLAINTEXT or SASL_PLAINTEXT to brokers off this machine warns; to loopback it does not."""
    remote = judge_connection(_settings(kafka_bootstrap_servers="kafka-1:9092"), 1, "c1")
    assert remote.verdict is Verdict.WARN
    assert remote.detail.endswith("PLAINTEXT sends every record in clear: use SSL or SASL_SSL")
    sasl = _settings(
        kafka_bootstrap_servers="kafka-1:9092",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    assert "SASL credentials" in judge_connection(sasl, 3, "c1").detail
    local = judge_connection(_settings(kafka_bootstrap_servers="127.0.0.1:9092"), 1, "c1")
    assert local == Finding("kafka", Verdict.OK, "1 broker answers at 127.0.0.1:9092 (cluster c1)")
