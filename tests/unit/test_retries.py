"""Tests of the retry routing: each subsystem's hook sees only its own retries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stamina
from aiokafka.errors import KafkaTimeoutError
from stamina.instrumentation import RetryDetails
from structlog.testing import capture_logs

from consumer.errors import NetworkError
from consumer.observability import retries
from consumer.scim.client import count_retry
from consumer.stream.kafka import instrument_kafka_retries


def details(error: Exception) -> RetryDetails:
    """The details stamina hands its hooks for one scheduled retry."""
    return RetryDetails(
        name="<context block>",
        args=(),
        kwargs={},
        retry_num=1,
        wait_for=0.5,
        waited_so_far=0.0,
        caused_by=error,
    )


@pytest.fixture(autouse=True)
def clean_routes() -> Iterator[None]:
    """Each test starts with no subsystem installed and leaves stamina as it found it."""
    saved_hooks = stamina.instrumentation.get_on_retry_hooks()
    saved = dict(retries._SUBSYSTEMS)
    retries._SUBSYSTEMS.clear()
    yield
    retries._SUBSYSTEMS.clear()
    retries._SUBSYSTEMS.update(saved)
    stamina.instrumentation.set_on_retry_hooks(saved_hooks)


def test_each_retry_goes_to_the_subsystem_owning_its_error() -> None:
    """A SCIM error reaches only the SCIM hook, a webhook error only the webhook hook."""
    seen: list[tuple[str, type[BaseException]]] = []
    retries.install_retry_hook(
        "scim", (NetworkError,), lambda d: seen.append(("scim", type(d.caused_by)))
    )
    retries.install_retry_hook(
        "webhook", (ConnectionError,), lambda d: seen.append(("webhook", type(d.caused_by)))
    )

    retries.route_retry(details(NetworkError("reset")))
    retries.route_retry(details(ConnectionError("refused")))

    assert seen == [("scim", NetworkError), ("webhook", ConnectionError)]
    assert stamina.instrumentation.get_on_retry_hooks() == (retries.route_retry,)


def test_a_retry_no_subsystem_claims_is_logged_under_the_router() -> None:
    """A retry no subsystem owns is logged once, under the router, not counted as a SCIM retry."""
    retries.install_retry_hook("scim", (NetworkError,), count_retry)

    with capture_logs() as logs:
        retries.route_retry(details(TimeoutError("broker")))

    assert [(e["event"], e["error"]) for e in logs] == [("retry.scheduled", "TimeoutError")]


def test_kafka_retries_are_logged_by_the_kafka_subsystem() -> None:
    """A Kafka error's retry is logged as kafka.retry, never counted as a SCIM retry."""
    retries.install_retry_hook("scim", (NetworkError,), count_retry)
    instrument_kafka_retries()

    with capture_logs() as logs:
        retries.route_retry(details(KafkaTimeoutError()))

    assert [(e["event"], e["error"], e["retry"]) for e in logs] == [
        ("kafka.retry", "KafkaTimeoutError", 1)
    ]
