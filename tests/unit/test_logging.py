"""Tests of logging: event context on every line, secrets redacted, stdlib routed, levels."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from pydantic import SecretStr
from structlog.contextvars import bound_contextvars, merge_contextvars
from structlog.testing import capture_logs

from consumer.events import Outcome, SourcePosition
from consumer.observability.logging import (
    NOISY_LOGGERS,
    REDACTED,
    clear_secrets,
    configure_logging,
    redact_secrets,
    register_secret,
    scrub_text,
)
from consumer.observability.outcomes import record_result
from tests.unit.test_outcomes import result

CONTEXT = {
    "event_id": "evt-7f3a",
    "user_id": "u-1001",
    "topic": "idp.role-changes",
    "partition": 2,
    "offset": 41,
}


@pytest.fixture(autouse=True)
def isolated_logging() -> Iterator[None]:
    """Leave the process's logging and structlog set-up as the test found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, noisy_level in noisy.items():
        logging.getLogger(name).setLevel(noisy_level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    clear_secrets()


class TtyStream(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _configure(level: str = "INFO", fmt: str = "json") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, fmt, stream=stream)
    return stream


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _redact(**event: Any) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", dict(event)))


def test_secret_keys_are_redacted_whatever_their_spelling() -> None:
    """Fields named like secrets become [REDACTED]; ordinary fields are untouched."""
    event = _redact(
        event="token.refreshed",
        password="hunter22",
        client_secret="cs-1",
        Authorization="Basic Y2xpZW50OnNlY3JldA==",
        access_token="at-1",
        api_key="k-1",
        **{"x-api-key": "k-2"},
        kafka_sasl_password="sasl-1",
        token="t-1",
        token_url="https://cxone.example/auth/token",
        user_id="u-1001",
        expires_in=3600,
    )
    assert event == {
        "event": "token.refreshed",
        "password": REDACTED,
        "client_secret": REDACTED,
        "Authorization": REDACTED,
        "access_token": REDACTED,
        "api_key": REDACTED,
        "x-api-key": REDACTED,
        "kafka_sasl_password": REDACTED,
        "token": REDACTED,
        "token_url": "https://cxone.example/auth/token",
        "user_id": "u-1001",
        "expires_in": 3600,
    }


def test_nested_secret_fields_are_redacted() -> None:
    """Secrets inside dicts and lists (e.g. logged headers) are redacted too."""
    event = _redact(
        event="http.request",
        headers={"Authorization": "Bearer abc.def", "Accept": "application/scim+json"},
        attempts=[{"refresh_token": "rt-1", "status": 401}],
    )
    assert event["headers"] == {"Authorization": REDACTED, "Accept": "application/scim+json"}
    assert event["attempts"] == [{"refresh_token": REDACTED, "status": 401}]


def test_bearer_tokens_in_text_are_scrubbed() -> None:
    """A bearer token inside any string keeps its scheme and loses its value."""
    event = _redact(event="sent header Authorization: Bearer eyJhbGciOi.J9.sig== to CXone")
    assert event["event"] == "sent header Authorization: Bearer [REDACTED] to CXone"


def test_url_passwords_are_scrubbed() -> None:
    """Credentials in a URL's user-info part are scrubbed."""
    assert scrub_text("connect https://svc:pa55word@cxone.example/scim/v2") == (
        "connect https://svc:[REDACTED]@cxone.example/scim/v2"
    )


def test_registered_secret_values_are_scrubbed_anywhere() -> None:
    """A registered value is replaced in any string, nested or not, under any key."""
    register_secret("s3cr3t-access-key")
    register_secret(SecretStr("client-secret-value"))
    event = _redact(
        event="auth failed for s3cr3t-access-key",
        detail={"body": "invalid_client: client-secret-value rejected"},
        items=("x", "prefix-s3cr3t-access-key-suffix"),
    )
    assert event == {
        "event": f"auth failed for {REDACTED}",
        "detail": {"body": f"invalid_client: {REDACTED} rejected"},
        "items": ["x", f"prefix-{REDACTED}-suffix"],
    }


def test_short_or_empty_secrets_are_not_registered() -> None:
    """Registering a value under four characters would garble every line, so it is ignored."""
    register_secret("abc")
    register_secret("")
    register_secret(None)
    assert scrub_text("abc is the alphabet") == "abc is the alphabet"


def test_capture_logs_with_context_and_redaction() -> None:
    """Under capture_logs, a line carries the bound event context and no secret."""
    with (
        capture_logs(processors=[merge_contextvars, redact_secrets]) as logs,
        bound_contextvars(**CONTEXT),
    ):
        structlog.get_logger().info("scim.put", status=200, password="pw-123456")
    assert logs == [
        {**CONTEXT, "event": "scim.put", "status": 200, "password": REDACTED, "log_level": "info"}
    ]


def test_json_lines_carry_event_context_and_timestamp() -> None:
    """In JSON format every line is one object with level, timestamp and the bound context."""
    stream = _configure("INFO", "json")
    with bound_contextvars(**CONTEXT):
        # The line names the result's own event and position (equal to the bound ones here).
        position = SourcePosition(topic="idp.role-changes", partition=2, offset=41)
        own = {"attempts": 1, "event_id": "evt-7f3a", "source": position}
        record_result(result(Outcome.SYNCED).model_copy(update=own), latency_seconds=0.0125)
    [line] = _lines(stream)
    assert {key: line[key] for key in CONTEXT} == CONTEXT
    assert line["event"] == "sync.result"
    assert line["outcome"] == "synced"
    assert line["latency_ms"] == 12.5
    assert line["attempts"] == 1
    assert line["level"] == "info"
    assert line["logger"] == "consumer.observability.outcomes"
    assert line["timestamp"].endswith("Z")


def test_real_output_redacts_secrets() -> None:
    """The rendered JSON holds neither secret fields nor registered secret values."""
    stream = _configure("INFO", "json")
    register_secret("sasl-password-123")
    structlog.get_logger().warning(
        "kafka.auth_failed", sasl_password="sasl-password-123", detail="bad sasl-password-123"
    )
    output = stream.getvalue()
    assert "sasl-password-123" not in output
    [line] = _lines(stream)
    assert line["sasl_password"] == REDACTED
    assert line["detail"] == f"bad {REDACTED}"


def test_exception_tracebacks_are_rendered_and_scrubbed() -> None:
    """An exception's traceback is text in the line, with registered secrets scrubbed."""
    stream = _configure("INFO", "json")
    register_secret("tok-abcdef-123")
    try:
        raise RuntimeError("token endpoint said no to tok-abcdef-123")
    except RuntimeError:
        structlog.get_logger().exception("auth.crashed")
    [line] = _lines(stream)
    assert "RuntimeError: token endpoint said no to [REDACTED]" in line["exception"]
    assert "tok-abcdef-123" not in stream.getvalue()


def test_stdlib_logging_goes_through_the_same_processors() -> None:
    """An aiokafka warning comes out as JSON with the event context and secrets scrubbed."""
    stream = _configure("INFO", "json")
    register_secret("sasl-pw-98765")
    with bound_contextvars(**CONTEXT):
        logging.getLogger("aiokafka.conn").warning("auth failed with %s", "sasl-pw-98765")
    [line] = _lines(stream)
    assert line["event"] == f"auth failed with {REDACTED}"
    assert line["logger"] == "aiokafka.conn"
    assert line["level"] == "warning"
    assert line["event_id"] == "evt-7f3a"


def test_noisy_libraries_are_quiet_below_warning() -> None:
    """At INFO, aiokafka and httpx info lines are dropped and their warnings kept."""
    stream = _configure("INFO", "json")
    logging.getLogger("aiokafka.consumer").info("fetching")
    logging.getLogger("httpx").info("HTTP Request: GET ...")
    logging.getLogger("aiohttp.access").info("GET /metrics 200")
    logging.getLogger("httpx").warning("pool exhausted")
    assert [line["event"] for line in _lines(stream)] == ["pool exhausted"]


def test_debug_level_lets_noisy_libraries_speak() -> None:
    """At DEBUG, library info and debug lines are shown."""
    stream = _configure("DEBUG", "json")
    logging.getLogger("aiokafka.consumer").debug("fetching")
    structlog.get_logger().debug("dispatcher.idle")
    assert [line["event"] for line in _lines(stream)] == ["fetching", "dispatcher.idle"]


def test_level_filters_structlog_lines() -> None:
    """At WARNING, info lines of the service are dropped."""
    stream = _configure("WARNING", "json")
    log = structlog.get_logger("consumer.stream")
    log.info("stream.fetched")
    log.error("stream.failed")
    assert [line["event"] for line in _lines(stream)] == ["stream.failed"]


def test_console_format_is_plain_when_not_a_terminal() -> None:
    """Console lines name the event and fields, without colour codes in a file."""
    stream = _configure("INFO", "console")
    with bound_contextvars(user_id="u-1001"):
        structlog.get_logger().info("sync.result", outcome="synced", token="t-secret-1")
    output = stream.getvalue()
    assert "sync.result" in output
    assert "user_id=u-1001" in output
    assert "outcome=synced" in output
    assert "t-secret-1" not in output
    assert "\x1b[" not in output


def test_console_format_is_colourful_on_a_terminal() -> None:
    """Console lines to a terminal carry ANSI colours."""
    stream = TtyStream()
    configure_logging("INFO", "console", stream=stream)
    structlog.get_logger().info("service.started")
    assert "\x1b[" in stream.getvalue()


def test_configuring_twice_does_not_duplicate_lines() -> None:
    """A second configuration replaces the first handler instead of adding one."""
    first = _configure("INFO", "json")
    second = _configure("INFO", "json")
    structlog.get_logger().info("once")
    assert first.getvalue() == ""
    assert [line["event"] for line in _lines(second)] == ["once"]


def test_unknown_level_is_refused() -> None:
    """A level name logging does not know is an error, not a silent default."""
    with pytest.raises(ValueError, match="unknown log level: LOUD"):
        configure_logging("LOUD", "json", stream=io.StringIO())
