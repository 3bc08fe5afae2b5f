"""The broker's answer to InitProducerId decides idempotence and how its ends are read."""

from __future__ import annotations

from consumer.stream.broker_profile import APACHE_KAFKA, TANSU, BrokerProfile, profile_from_answer

CLUSTER_AUTHORIZATION_FAILED = 31


def test_a_granted_producer_id_means_idempotence_and_exact_ends() -> None:
    """Apache Kafka grants a producer id: idempotent producers, ends read by offset alone."""
    assert profile_from_answer(0) == APACHE_KAFKA == BrokerProfile(True, False)


def test_an_unknown_server_error_is_tansus_answer_and_brings_both_allowances() -> None:
    """Tansu 0.6 answers UNKNOWN_SERVER_ERROR: no idempotence, and its undercounted ends."""
    assert profile_from_answer(-1) == TANSU == BrokerProfile(False, True)


def test_a_refusal_for_another_reason_turns_only_idempotence_off() -> None:
    """An authorization refusal is no sign of an undercounting broker: ends stay exact."""
    assert profile_from_answer(CLUSTER_AUTHORIZATION_FAILED) == BrokerProfile(False, False)
