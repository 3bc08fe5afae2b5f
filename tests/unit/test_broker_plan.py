"""Tests of choosing the brokers a test session runs on, without starting any."""

from __future__ import annotations

import pytest

from tests.broker_plan import BrokerPlan, choose_plan, parse_brokers


def _never() -> bool:
    raise AssertionError("not asked")


def test_kafka_4_runs_everything_and_the_core_also_runs_on_tansu_and_3_9() -> None:
    """With Java 17 and Maven, Kafka 4.x is primary; core tests also run on Tansu and 3.9."""
    plan = choose_plan(bootstrap_servers=None, missing_tools=lambda: None, docker_answers=_never)
    assert plan == BrokerPlan("kafka-4.4.0", ("tansu", "kafka-3.9.2"))
    assert plan.brokers_for(core=True) == ["kafka-4.4.0", "tansu", "kafka-3.9.2"]
    assert plan.brokers_for(core=False) == ["kafka-4.4.0"]


def test_without_java_the_suite_runs_on_tansu_and_says_why_in_one_line() -> None:
    """No Java: Tansu runs everything, and the note names what is missing in one line."""
    plan = choose_plan(
        bootstrap_servers=None,
        missing_tools=lambda: "no java on PATH",
        docker_answers=lambda: False,
    )
    assert (plan.primary, plan.others) == ("tansu", ())
    assert plan.note is not None
    assert "no java on PATH" in plan.note
    assert "\n" not in plan.note


def test_without_java_a_docker_engine_gives_a_testcontainers_kafka() -> None:
    """No Java but Docker: a testcontainers Kafka is primary, Tansu runs the core tests."""
    plan = choose_plan(
        bootstrap_servers=None, missing_tools=lambda: "no mvn", docker_answers=lambda: True
    )
    assert (plan.primary, plan.others) == ("testcontainers", ("tansu",))


def test_a_configured_cluster_is_the_only_broker() -> None:
    """KAFKA_BOOTSTRAP_SERVERS wins over everything, and nothing else is asked."""
    plan = choose_plan(bootstrap_servers="kafka:9092", missing_tools=_never, docker_answers=_never)
    assert plan == BrokerPlan("env")
    assert plan.brokers_for(core=True) == ["env"]


def test_brokers_option_names_the_primary_first_without_repeats() -> None:
    """`--brokers` keeps its order, the first being primary, repeats dropped."""
    plan = parse_brokers("kafka-3.9.2, tansu,tansu")
    assert plan == BrokerPlan("kafka-3.9.2", ("tansu",))
    assert plan.describe() == "brokers: everything on kafka-3.9.2; core tests also on tansu"


@pytest.mark.parametrize("value", ["", "kafka-9.9.9", "tansu,redpanda"])
def test_brokers_option_refuses_unknown_names(value: str) -> None:
    """An empty or unknown broker name is refused with the known ones listed."""
    with pytest.raises(ValueError, match=r"known: kafka-4\.4\.0, kafka-3\.9\.2, tansu"):
        parse_brokers(value)
