"""The ingress's settings: a strong required token, TLS or loopback, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.errors import ConfigurationError
from consumer.ingress.settings import IngressSettings, UserIdRule, load_ingress_settings
from tests.unit.test_settings import REQUIRED

TOKEN = "a-long-enough-ingress-token-1234567890"


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Only the required settings of `run` and the ingress token are set."""
    for name in IngressSettings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(f"{name.upper()}_FILE", raising=False)
    for name, value in {**REQUIRED, "INGRESS_TOKEN": TOKEN}.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def error_of(**overrides: object) -> str:
    """The ConfigurationError loading the ingress settings raises."""
    with pytest.raises(ConfigurationError) as caught:
        load_ingress_settings(**overrides)
    return str(caught.value)


def test_defaults_serve_loopback_by_user_name_with_the_documented_topic(
    environment: pytest.MonkeyPatch,
) -> None:
    """Loopback port 9410, userName lookup, the default state topic and source."""
    settings = load_ingress_settings()
    assert (settings.ingress_host, settings.ingress_port) == ("127.0.0.1", 9410)
    assert settings.ingress_user_id is UserIdRule.USER_NAME
    assert settings.ingress_state_topic == "cxone-role-sync.ingress.state"
    assert settings.ingress_source == "scim-ingress"
    assert settings.ingress_token.get_secret_value() == TOKEN
    assert "ingress_token" in IngressSettings.secret_fields()


def test_the_token_is_required_and_may_come_from_a_file(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without INGRESS_TOKEN start-up stops; INGRESS_TOKEN_FILE supplies it instead."""
    environment.delenv("INGRESS_TOKEN")
    assert error_of() == "configuration error: INGRESS_TOKEN is required but not set"
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    environment.setenv("INGRESS_TOKEN_FILE", str(secret))
    assert load_ingress_settings().ingress_token.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("token", "expected"),
    [("short", "at least 32 characters"), (" " + TOKEN, "whitespace"), (TOKEN + "\x07", "control")],
)
def test_a_weak_or_unpresentable_token_is_refused_without_echoing_it(
    environment: pytest.MonkeyPatch, token: str, expected: str
) -> None:
    """A short token, or one a header cannot carry, stops start-up; the value is never shown."""
    environment.setenv("INGRESS_TOKEN", token)
    message = error_of()
    assert message.startswith("configuration error: INGRESS_TOKEN: ")
    assert expected in message
    assert token.strip() not in message


def test_plain_http_off_loopback_needs_tls_or_the_proxy_opt_in(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """0.0.0.0 without TLS is refused; with INGRESS_BEHIND_TLS_PROXY or a cert and key it is not."""
    environment.setenv("INGRESS_HOST", "0.0.0.0")
    assert "INGRESS_HOST: 0.0.0.0 is not a loopback address" in error_of()
    environment.setenv("INGRESS_BEHIND_TLS_PROXY", "true")
    assert load_ingress_settings().ingress_behind_tls_proxy is True
    environment.delenv("INGRESS_BEHIND_TLS_PROXY")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    environment.setenv("INGRESS_TLS_CERTFILE", str(cert))
    environment.setenv("INGRESS_TLS_KEYFILE", str(key))
    assert load_ingress_settings().tls is True


def test_a_certificate_without_its_key_is_one_line(environment: pytest.MonkeyPatch) -> None:
    """INGRESS_TLS_CERTFILE and INGRESS_TLS_KEYFILE go together."""
    environment.setenv("INGRESS_TLS_CERTFILE", "/nonexistent/cert.pem")
    assert "INGRESS_TLS_CERTFILE and INGRESS_TLS_KEYFILE go together" in error_of()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INGRESS_USER_ID", "email"),
        ("INGRESS_SOURCE", "okta\nprod"),
        ("INGRESS_MAX_BODY_BYTES", "10"),
        ("INGRESS_RATE_LIMIT_PER_MINUTE", "0"),
        ("INGRESS_PORT", "70000"),
    ],
)
def test_a_malformed_ingress_setting_is_named(
    environment: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """Each bad value stops start-up with a line naming its variable."""
    environment.setenv(name, value)
    assert error_of().startswith(f"configuration error: {name}: ")
