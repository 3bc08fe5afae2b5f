"""Tests of the configuration contract: environment names, defaults, required ones, URL rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from consumer.errors import ConfigurationError
from consumer.settings import (
    HttpTransport,
    LogFormat,
    SecurityProtocol,
    Settings,
    load_kafka_settings,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "examples" / "policy.yaml"

CLIENT_SECRET = "client-secret-5b1e9c"
ACCESS_KEY_SECRET = "access-key-secret-77d0aa"
SASL_PASSWORD = "sasl-password-c3f018"
WEBHOOK_SECRET = "webhook-secret-90ab4e"
SECRETS = (CLIENT_SECRET, ACCESS_KEY_SECRET, SASL_PASSWORD, WEBHOOK_SECRET)

REQUIRED = {
    "CXONE_SCIM_BASE_URL": "https://cxone.example.com/scim/v2",
    "CXONE_TOKEN_URL": "https://cxone.example.com/auth/token",
    "CXONE_CLIENT_ID": "client-id",
    "CXONE_CLIENT_SECRET": CLIENT_SECRET,
    "POLICY_FILE": str(POLICY),
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment holding only the required settings; the test adds or removes the rest."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(f"{name.upper()}_FILE", raising=False)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def configuration_error(**overrides: object) -> str:
    """The one-line message `load_settings` raises for the current environment."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_are_the_documented_ones(environment: pytest.MonkeyPatch) -> None:
    """With only the required settings, every other setting takes the default DESIGN.md names."""
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "localhost:9092"
    assert settings.kafka_input_topic == "idp.role-changes"
    assert settings.kafka_audit_topic == "cxone.role-sync.audit"
    assert settings.kafka_dlq_topic == "idp.role-changes.dlq"
    assert settings.kafka_group_id == "cxone-role-sync"
    assert settings.kafka_security_protocol is SecurityProtocol.PLAINTEXT
    assert settings.kafka_sasl_mechanism is None
    assert settings.kafka_sasl_username is None
    assert settings.kafka_sasl_password is None
    assert settings.kafka_ssl_cafile is None
    assert settings.cxone_access_key_id is None
    assert settings.cxone_access_key_secret is None
    assert settings.cxone_http_transport is HttpTransport.AIOHTTP
    assert settings.sync_max_concurrency == 16
    assert settings.sync_rate_limit_per_minute == 0
    assert settings.sync_dry_run is False
    assert settings.metrics_port == 9400
    assert settings.log_format is LogFormat.JSON
    assert settings.log_level.value == "INFO"
    assert settings.webhook_url is None
    assert settings.webhook_secret is None
    assert settings.sync_max_uncommitted_per_partition == 10_000


def test_environment_names_are_the_contract(environment: pytest.MonkeyPatch) -> None:
    """Each documented environment variable sets its setting."""
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": "broker-1:9093,broker-2:9093",
        "KAFKA_INPUT_TOPIC": "in",
        "KAFKA_AUDIT_TOPIC": "audit",
        "KAFKA_DLQ_TOPIC": "dlq",
        "KAFKA_GROUP_ID": "group",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "svc",
        "KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        "CXONE_HTTP_TRANSPORT": "httpx",
        "SYNC_MAX_CONCURRENCY": "4",
        "SYNC_RATE_LIMIT_PER_MINUTE": "600",
        "SYNC_DRY_RUN": "true",
        "METRICS_PORT": "9500",
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "console",
        "WEBHOOK_URL": "https://hooks.example.com/role-sync",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    for name, value in values.items():
        environment.setenv(name, value)
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "broker-1:9093,broker-2:9093"
    assert (settings.kafka_input_topic, settings.kafka_audit_topic) == ("in", "audit")
    assert (settings.kafka_dlq_topic, settings.kafka_group_id) == ("dlq", "group")
    assert settings.kafka_security_protocol is SecurityProtocol.SASL_SSL
    assert settings.kafka_sasl_mechanism is not None
    assert settings.kafka_sasl_mechanism.value == "SCRAM-SHA-512"
    assert settings.kafka_sasl_username == "svc"
    assert settings.kafka_sasl_password == SecretStr(SASL_PASSWORD)
    assert settings.cxone_http_transport is HttpTransport.HTTPX
    assert settings.sync_max_concurrency == 4
    assert settings.sync_rate_limit_per_minute == 600
    assert settings.sync_dry_run is True
    assert settings.metrics_port == 9500
    assert settings.log_level.value == "DEBUG"
    assert settings.log_format is LogFormat.CONSOLE
    assert settings.webhook_url == "https://hooks.example.com/role-sync"
    assert settings.webhook_secret == SecretStr(WEBHOOK_SECRET)


def test_access_key_id_and_secret_are_read(environment: pytest.MonkeyPatch) -> None:
    """An access key id and secret are read; with them the tokens use the password grant."""
    environment.setenv("CXONE_ACCESS_KEY_ID", "key-id")
    environment.setenv("CXONE_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
    settings = load_settings()
    assert settings.cxone_access_key_id == "key-id"
    assert settings.cxone_access_key_secret == SecretStr(ACCESS_KEY_SECRET)


@pytest.mark.parametrize("name", ["CXONE_ACCESS_KEY_ID", "CXONE_ACCESS_KEY_SECRET"])
def test_access_key_half_is_refused(environment: pytest.MonkeyPatch, name: str) -> None:
    """An access key id without its secret, or the reverse, stops start-up naming both."""
    environment.setenv(name, ACCESS_KEY_SECRET)
    message = configuration_error()
    assert message == (
        "configuration error: CXONE_ACCESS_KEY_ID and CXONE_ACCESS_KEY_SECRET go together"
    )
    assert ACCESS_KEY_SECRET not in message


@pytest.mark.parametrize(
    "name", ["CXONE_SCIM_BASE_URL", "CXONE_CLIENT_ID", "CXONE_CLIENT_SECRET", "POLICY_FILE"]
)
def test_missing_required_setting_is_named(environment: pytest.MonkeyPatch, name: str) -> None:
    """A missing required setting stops start-up with one line naming it."""
    environment.delenv(name)
    assert configuration_error() == f"configuration error: {name} is required but not set"


def test_token_endpoint_is_required(environment: pytest.MonkeyPatch) -> None:
    """Without CXONE_TOKEN_URL and without an issuer for discovery, start-up stops naming both."""
    environment.delenv("CXONE_TOKEN_URL")
    message = configuration_error()
    assert "CXONE_TOKEN_URL" in message
    assert "CXONE_ISSUER_URL" in message


def test_issuer_url_may_replace_the_token_url(environment: pytest.MonkeyPatch) -> None:
    """An issuer URL for OpenID discovery is enough without an explicit token URL."""
    environment.delenv("CXONE_TOKEN_URL")
    environment.setenv("CXONE_ISSUER_URL", "https://cxone.example.com")
    settings = load_settings()
    assert settings.cxone_token_url is None
    assert settings.cxone_issuer_url == "https://cxone.example.com"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SYNC_MAX_CONCURRENCY", "abc"),
        ("SYNC_MAX_CONCURRENCY", "0"),
        ("SYNC_RATE_LIMIT_PER_MINUTE", "-1"),
        ("SYNC_DRY_RUN", "maybe"),
        ("METRICS_PORT", "70000"),
        ("CXONE_HTTP_TRANSPORT", "requests"),
        ("KAFKA_SECURITY_PROTOCOL", "PLAIN"),
        ("LOG_FORMAT", "xml"),
        ("POLICY_FILE", "no-such-policy.yaml"),
    ],
)
def test_malformed_setting_is_named(environment: pytest.MonkeyPatch, name: str, value: str) -> None:
    """A malformed setting stops start-up with one line naming it."""
    environment.setenv(name, value)
    message = configuration_error()
    assert message.startswith(f"configuration error: {name}: ")


@pytest.mark.parametrize(
    "url",
    [
        "https://cxone.example.com/scim/v2",
        "http://127.0.0.1:8080/scim/v2",
        "http://localhost:8080/scim/v2",
    ],
)
def test_scim_url_https_or_loopback_is_accepted(environment: pytest.MonkeyPatch, url: str) -> None:
    """The SCIM URL may be https anywhere, or plain http on 127.0.0.1 or localhost."""
    environment.setenv("CXONE_SCIM_BASE_URL", url)
    assert load_settings().cxone_scim_base_url == url


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("CXONE_SCIM_BASE_URL", "http://cxone.example.com/scim/v2"),
        ("CXONE_SCIM_BASE_URL", "http://10.0.0.7/scim/v2"),
        ("CXONE_TOKEN_URL", "http://cxone.example.com/auth/token"),
        ("CXONE_ISSUER_URL", "http://cxone.example.com"),
    ],
)
def test_plain_http_elsewhere_is_refused(
    environment: pytest.MonkeyPatch, name: str, url: str
) -> None:
    """Credentials never travel over plain http to anything but this machine."""
    environment.setenv(name, url)
    assert configuration_error() == (
        f"configuration error: {name}: "
        "must be an https URL (http is allowed only for 127.0.0.1/localhost)"
    )


def test_webhook_url_must_be_https(environment: pytest.MonkeyPatch) -> None:
    """A webhook on plain http to another host is refused like the CXone URLs."""
    environment.setenv("WEBHOOK_URL", "http://hooks.example.com/role-sync")
    environment.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    message = configuration_error()
    assert message.startswith("configuration error: WEBHOOK_URL: must be an https URL")
    assert WEBHOOK_SECRET not in message


def test_webhook_url_needs_a_secret(environment: pytest.MonkeyPatch) -> None:
    """A webhook URL without its signing secret stops start-up naming WEBHOOK_SECRET."""
    environment.setenv("WEBHOOK_URL", "https://hooks.example.com/role-sync")
    assert "WEBHOOK_SECRET" in configuration_error()


@pytest.mark.parametrize(
    "url",
    [
        "https://cxone.example.com/scim",
        "https://cxone.example.com/scim/v1",
        "https://cxone.example.com/scim/v2/Users",
        "https://cxone.example.com/",
    ],
)
def test_scim_url_must_end_in_scim_v2(environment: pytest.MonkeyPatch, url: str) -> None:
    """A SCIM base URL that does not end in /scim/v2 is refused."""
    environment.setenv("CXONE_SCIM_BASE_URL", url)
    assert configuration_error() == "configuration error: CXONE_SCIM_BASE_URL: must end in /scim/v2"


def test_scim_url_trailing_slash_is_dropped(environment: pytest.MonkeyPatch) -> None:
    """A trailing slash after /scim/v2 is accepted and removed."""
    environment.setenv("CXONE_SCIM_BASE_URL", "https://cxone.example.com/scim/v2/")
    assert load_settings().cxone_scim_base_url == "https://cxone.example.com/scim/v2"


def test_scim_url_that_is_not_a_url_is_named(environment: pytest.MonkeyPatch) -> None:
    """Something that is not a URL at all is refused naming CXONE_SCIM_BASE_URL."""
    environment.setenv("CXONE_SCIM_BASE_URL", "not a url")
    assert configuration_error().startswith("configuration error: CXONE_SCIM_BASE_URL: ")


def test_sasl_protocol_needs_a_mechanism(environment: pytest.MonkeyPatch) -> None:
    """A SASL security protocol without a mechanism names KAFKA_SASL_MECHANISM."""
    environment.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    environment.setenv("KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    message = configuration_error()
    assert "KAFKA_SASL_MECHANISM" in message
    assert SASL_PASSWORD not in message


def test_oauthbearer_without_a_token_source_is_refused(environment: pytest.MonkeyPatch) -> None:
    """OAUTHBEARER without a token file is refused at settings time, naming what it needs."""
    environment.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    environment.setenv("KAFKA_SASL_MECHANISM", "OAUTHBEARER")
    assert configuration_error() == (
        "configuration error: KAFKA_SASL_MECHANISM=OAUTHBEARER needs "
        "KAFKA_SASL_OAUTH_TOKEN_FILE (a file holding the bearer token)"
    )


def test_a_missing_ca_file_is_named_with_its_path(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """KAFKA_SSL_CAFILE naming no file stops start-up naming the setting and the path."""
    missing = tmp_path / "absent-ca.pem"
    environment.setenv("KAFKA_SSL_CAFILE", str(missing))
    assert (
        configuration_error() == f"configuration error: KAFKA_SSL_CAFILE: no such file: {missing}"
    )


def test_a_ca_file_that_is_not_pem_is_named(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A KAFKA_SSL_CAFILE that holds no certificate is refused naming the setting and path."""
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    environment.setenv("KAFKA_SSL_CAFILE", str(garbage))
    assert configuration_error() == (
        f"configuration error: KAFKA_SSL_CAFILE: {garbage} is not a PEM CA bundle"
    )


def test_a_real_ca_bundle_is_accepted(environment: pytest.MonkeyPatch) -> None:
    """A readable PEM CA bundle is taken as given."""
    import certifi

    environment.setenv("KAFKA_SSL_CAFILE", certifi.where())
    assert load_settings().kafka_ssl_cafile == Path(certifi.where())


def test_overrides_win_over_the_environment(environment: pytest.MonkeyPatch) -> None:
    """A CLI override replaces the value read from the environment."""
    environment.setenv("SYNC_DRY_RUN", "false")
    assert load_settings(sync_dry_run=True).sync_dry_run is True


def _with_every_secret(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("CXONE_ACCESS_KEY_ID", "key-id")
    environment.setenv("CXONE_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
    environment.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    environment.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    environment.setenv("KAFKA_SASL_USERNAME", "svc")
    environment.setenv("KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    environment.setenv("WEBHOOK_URL", "https://hooks.example.com/role-sync")
    environment.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)


def test_secrets_never_appear_in_repr_or_str(environment: pytest.MonkeyPatch) -> None:
    """repr() and str() of the settings mask every secret."""
    _with_every_secret(environment)
    settings = load_settings()
    shown = repr(settings) + str(settings)
    for secret in SECRETS:
        assert secret not in shown
    assert settings.cxone_client_secret.get_secret_value() == CLIENT_SECRET


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SYNC_MAX_CONCURRENCY", "abc"),
        ("CXONE_SCIM_BASE_URL", "http://cxone.example.com/scim/v2"),
        ("CXONE_CLIENT_ID", None),
    ],
)
def test_secrets_never_appear_in_the_error(
    environment: pytest.MonkeyPatch, name: str, value: str | None
) -> None:
    """The start-up error names the bad setting but carries no secret value."""
    _with_every_secret(environment)
    if value is None:
        environment.delenv(name)
    else:
        environment.setenv(name, value)
    message = configuration_error()
    assert name in message
    for secret in SECRETS:
        assert secret not in message


def test_a_malformed_secret_is_not_echoed(environment: pytest.MonkeyPatch) -> None:
    """A rejected value is never echoed, so a secret pasted into the wrong setting stays hidden."""
    environment.setenv("SYNC_MAX_CONCURRENCY", CLIENT_SECRET)
    message = configuration_error()
    assert message.startswith("configuration error: SYNC_MAX_CONCURRENCY: ")
    assert CLIENT_SECRET not in message


SECRET_SETTINGS = (
    "CXONE_CLIENT_SECRET",
    "CXONE_ACCESS_KEY_SECRET",
    "KAFKA_SASL_PASSWORD",
    "WEBHOOK_SECRET",
    "ADMIN_TOKEN",
    "APPROVAL_HMAC_KEY",
    "KAFKA_SSL_KEY_PASSWORD",
)


def test_every_documented_secret_is_a_secret_setting() -> None:
    """The secret settings are exactly the documented ones, each may come from a file."""
    assert {name.upper() for name in Settings.secret_fields()} == set(SECRET_SETTINGS)


def _secret_environment(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Set what lets every secret setting be valid at once (the companions they need)."""
    environment.setenv("CXONE_ACCESS_KEY_ID", "key-id")
    environment.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    environment.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    environment.setenv("KAFKA_SASL_USERNAME", "svc")
    environment.setenv("WEBHOOK_URL", "https://hooks.example.com/role-sync")
    for name in ("KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"):
        pem = tmp_path / f"{name.lower()}.pem"
        pem.write_text("not read by the settings\n")
        environment.setenv(name, str(pem))


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_every_secret_may_come_from_a_file(
    environment: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    """`<NAME>_FILE` names a file whose content, less one trailing newline, is the secret."""
    _secret_environment(environment, tmp_path)
    for other in SECRET_SETTINGS:
        environment.setenv(other, f"{other.lower()}-from-environment")
    environment.delenv(name)
    secret = tmp_path / "secret"
    # A second newline stays part of the secret, except in ADMIN_TOKEN, which refuses it.
    kept = "" if name == "ADMIN_TOKEN" else "\n"
    secret.write_text(f"{name.lower()}-from-a-file{kept}\n")
    environment.setenv(f"{name}_FILE", str(secret))
    settings = load_settings()
    value = getattr(settings, name.lower())
    assert value == SecretStr(f"{name.lower()}-from-a-file{kept}")
    others = {other: getattr(settings, other.lower()) for other in SECRET_SETTINGS if other != name}
    assert others == {other: SecretStr(f"{other.lower()}-from-environment") for other in others}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("s3cret-value", "s3cret-value"),
        ("s3cret-value\n", "s3cret-value"),
        ("s3cret-value\r\n", "s3cret-value"),
        ("s3cret-value\n\n", "s3cret-value\n"),
        (" s3cret value ", " s3cret value "),
    ],
)
def test_one_trailing_newline_is_stripped(
    environment: pytest.MonkeyPatch, tmp_path: Path, content: str, expected: str
) -> None:
    """Exactly one trailing newline (as `echo` leaves) is removed; nothing else is touched."""
    environment.delenv("CXONE_CLIENT_SECRET")
    secret = tmp_path / "client-secret"
    secret.write_bytes(content.encode())
    environment.setenv("CXONE_CLIENT_SECRET_FILE", str(secret))
    assert load_settings().cxone_client_secret.get_secret_value() == expected


def test_a_secret_file_fulfils_a_required_secret(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """CXONE_CLIENT_SECRET is required, and CXONE_CLIENT_SECRET_FILE alone satisfies it."""
    environment.delenv("CXONE_CLIENT_SECRET")
    secret = tmp_path / "client-secret"
    secret.write_text(CLIENT_SECRET)
    environment.setenv("CXONE_CLIENT_SECRET_FILE", str(secret))
    assert load_settings().cxone_client_secret == SecretStr(CLIENT_SECRET)


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_a_secret_and_its_file_together_are_refused(
    environment: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    """Setting both `<NAME>` and `<NAME>_FILE` stops start-up naming both, echoing neither."""
    secret = tmp_path / "secret"
    secret.write_text("from-the-file-4e1d")
    environment.setenv(name, "from-the-environment-77ab")
    environment.setenv(f"{name}_FILE", str(secret))
    message = configuration_error()
    assert message == f"configuration error: {name}: also set as {name}_FILE; set only one"


def test_a_missing_secret_file_names_the_setting_and_the_path(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A secret file that does not exist stops start-up with one line naming it and its path."""
    missing = tmp_path / "no-such-secret"
    environment.setenv("ADMIN_TOKEN_FILE", str(missing))
    assert configuration_error() == (
        f"configuration error: ADMIN_TOKEN: cannot read ADMIN_TOKEN_FILE {missing}: "
        "No such file or directory"
    )


def test_a_directory_is_no_secret_file(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A directory in place of the secret file is refused naming the setting and the path."""
    environment.delenv("CXONE_CLIENT_SECRET")
    environment.setenv("CXONE_CLIENT_SECRET_FILE", str(tmp_path))
    assert configuration_error() == (
        f"configuration error: CXONE_CLIENT_SECRET: cannot read CXONE_CLIENT_SECRET_FILE "
        f"{tmp_path}: Is a directory"
    )


def test_an_unreadable_secret_file_never_shows_its_content(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A file that is not UTF-8 text is refused; the message carries the path, not the bytes."""
    environment.delenv("CXONE_CLIENT_SECRET")
    secret = tmp_path / "binary-secret"
    secret.write_bytes(b"\xffsecret-bytes-a81c\xfe")
    environment.setenv("CXONE_CLIENT_SECRET_FILE", str(secret))
    message = configuration_error()
    assert message == (
        f"configuration error: CXONE_CLIENT_SECRET: CXONE_CLIENT_SECRET_FILE {secret} "
        "is not UTF-8 text"
    )
    assert "secret-bytes" not in message


def test_an_empty_secret_file_is_an_empty_secret(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A secret file holding only a newline is an empty secret, refused like an empty variable."""
    environment.delenv("CXONE_CLIENT_SECRET")
    secret = tmp_path / "empty"
    secret.write_text("\n")
    environment.setenv("CXONE_CLIENT_SECRET_FILE", str(secret))
    assert configuration_error() == "configuration error: CXONE_CLIENT_SECRET: must not be empty"


def test_secret_file_overrides_work_like_the_environment(tmp_path: Path) -> None:
    """`<name>_file` given as an override (as the tests' harness does) reads the file too."""
    secret = tmp_path / "client-secret"
    secret.write_text(CLIENT_SECRET + "\n")
    overrides = {name.lower(): value for name, value in REQUIRED.items()}
    del overrides["cxone_client_secret"]
    settings = load_settings(**overrides, cxone_client_secret_file=str(secret))
    assert settings.cxone_client_secret == SecretStr(CLIENT_SECRET)


def test_secrets_lists_every_secret_value_that_is_set(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`Settings.secrets()` returns the value of each secret setting given, for redaction."""
    _secret_environment(environment, tmp_path)
    for name in SECRET_SETTINGS:
        environment.setenv(name, f"{name.lower()}-value")
    values = {secret.get_secret_value() for secret in load_settings().secrets()}
    assert values == {f"{name.lower()}-value" for name in SECRET_SETTINGS}


def test_hardening_defaults(environment: pytest.MonkeyPatch) -> None:
    """Metrics bind every interface, admin actions are off, no TLS client certificate."""
    settings = load_settings()
    assert settings.metrics_host == "0.0.0.0"
    assert settings.admin_token is None
    assert settings.approval_hmac_key is None
    assert settings.kafka_ssl_certfile is None
    assert settings.kafka_ssl_keyfile is None
    assert settings.kafka_ssl_key_password is None
    assert settings.kafka_sasl_oauth_token_file is None


def test_hardening_environment_names(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """METRICS_HOST, ADMIN_TOKEN and the mutual-TLS settings are read by their documented names."""
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("-")
    key.write_text("-")
    environment.setenv("METRICS_HOST", "127.0.0.1")
    environment.setenv("ADMIN_TOKEN", "admin-token-value")
    environment.setenv("KAFKA_SSL_CERTFILE", str(cert))
    environment.setenv("KAFKA_SSL_KEYFILE", str(key))
    environment.setenv("KAFKA_SSL_KEY_PASSWORD", "key-password-value")
    settings = load_settings()
    assert settings.metrics_host == "127.0.0.1"
    assert settings.admin_token == SecretStr("admin-token-value")
    assert (settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile) == (cert, key)
    assert settings.kafka_ssl_key_password == SecretStr("key-password-value")


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"KAFKA_SSL_CERTFILE": "file"}, "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together"),
        ({"KAFKA_SSL_KEYFILE": "file"}, "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together"),
        ({"KAFKA_SSL_KEY_PASSWORD": "pw-1234"}, "KAFKA_SSL_KEY_PASSWORD needs KAFKA_SSL_KEYFILE"),
        ({"KAFKA_SSL_CAFILE": "missing"}, "KAFKA_SSL_CAFILE: no such file: "),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "OAUTHBEARER"},
            "KAFKA_SASL_MECHANISM=OAUTHBEARER needs KAFKA_SASL_OAUTH_TOKEN_FILE",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
                "KAFKA_SASL_OAUTH_TOKEN_FILE": "missing",
            },
            "KAFKA_SASL_OAUTH_TOKEN_FILE: no such file: ",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"},
            "KAFKA_SASL_MECHANISM=SCRAM-SHA-256 needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        ({"ADMIN_TOKEN": ""}, "ADMIN_TOKEN: must not be empty"),
        ({"METRICS_HOST": ""}, "METRICS_HOST: "),
    ],
)
def test_transport_and_admin_settings_that_cannot_work_are_refused(
    environment: pytest.MonkeyPatch,
    tmp_path: Path,
    variables: dict[str, str],
    expected: str,
) -> None:
    """Half a client certificate, OAUTHBEARER without a token file, an empty token: one line."""
    for name, value in variables.items():
        if value in ("file", "missing"):
            path = tmp_path / name.lower()
            if value == "file":
                path.write_text("-")
            value = str(path)
        environment.setenv(name, value)
    assert configuration_error().startswith(f"configuration error: {expected}")


def test_a_secret_file_problem_is_reported_like_any_bad_setting(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A file problem is an error of its own setting, found beside another setting's error."""
    environment.setenv("WEBHOOK_SECRET_FILE", str(tmp_path / "absent"))
    environment.setenv("SYNC_MAX_CONCURRENCY", "many")
    with pytest.raises(ValidationError) as caught:
        Settings()  # type: ignore[call-arg]
    assert {(error["loc"], error["type"]) for error in caught.value.errors()} == {
        (("sync_max_concurrency",), "int_parsing"),
        (("webhook_secret",), "value_error"),
    }


def test_max_record_bytes_is_a_mebibyte_by_default_and_bounded(
    environment: pytest.MonkeyPatch,
) -> None:
    """KAFKA_MAX_RECORD_BYTES is 1 MiB unless set; a value too small for a dead letter is named."""
    assert load_settings().kafka_max_record_bytes == 1_048_576
    environment.setenv("KAFKA_MAX_RECORD_BYTES", "4194304")
    assert load_settings().kafka_max_record_bytes == 4_194_304
    environment.setenv("KAFKA_MAX_RECORD_BYTES", "1000")
    assert configuration_error().startswith("configuration error: KAFKA_MAX_RECORD_BYTES: ")


def configuration_errors(**overrides: object) -> list[str]:
    """Every line `load_settings` raises for the current environment."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**overrides)
    return str(caught.value).splitlines()


def test_every_bad_setting_is_reported_at_once(environment: pytest.MonkeyPatch) -> None:
    """Missing and malformed settings are all reported together, one line each, in field order."""
    environment.delenv("CXONE_CLIENT_ID")
    environment.delenv("POLICY_FILE")
    environment.setenv("SYNC_MAX_CONCURRENCY", "many")
    environment.setenv("LOG_LEVEL", "loud")
    assert configuration_errors() == [
        "configuration error: CXONE_CLIENT_ID is required but not set",
        "configuration error: SYNC_MAX_CONCURRENCY: Input should be a valid integer, "
        "unable to parse string as an integer",
        "configuration error: POLICY_FILE is required but not set",
        "configuration error: LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'",
    ]


def test_every_inconsistency_is_reported_at_once(environment: pytest.MonkeyPatch) -> None:
    """Settings that contradict each other are all named together, one line each."""
    environment.delenv("CXONE_TOKEN_URL")
    environment.setenv("CXONE_ACCESS_KEY_ID", "key-id")
    environment.setenv("WEBHOOK_URL", "https://hooks.example.com/x")
    assert configuration_errors() == [
        "configuration error: CXONE_TOKEN_URL (or CXONE_ISSUER_URL for discovery) is required",
        "configuration error: CXONE_ACCESS_KEY_ID and CXONE_ACCESS_KEY_SECRET go together",
        "configuration error: WEBHOOK_SECRET is required when WEBHOOK_URL is set",
    ]


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("LOG_FORMAT", "Console", "log_format", "console"),
        ("CXONE_HTTP_TRANSPORT", "HTTPX", "cxone_http_transport", "httpx"),
        ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl", "kafka_security_protocol", "SASL_SSL"),
    ],
)
def test_enum_values_are_case_insensitive(
    environment: pytest.MonkeyPatch, name: str, value: str, field: str, expected: str
) -> None:
    """An enum setting is accepted in any case and normalised to its documented spelling."""
    environment.setenv(name, value)
    environment.setenv("KAFKA_SASL_MECHANISM", "scram-sha-512")
    environment.setenv("KAFKA_SASL_USERNAME", "role-sync")
    environment.setenv("KAFKA_SASL_PASSWORD", "sasl-password")
    settings = load_settings()
    assert getattr(settings, field) == expected
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"


def test_kafka_settings_need_no_cxone_or_policy(environment: pytest.MonkeyPatch) -> None:
    """The Kafka settings load without any CXone or policy setting, and check SASL the same way."""
    for name in REQUIRED:
        environment.delenv(name)
    environment.setenv("KAFKA_INPUT_TOPIC", "idp.custom")
    assert load_kafka_settings().kafka_input_topic == "idp.custom"
    environment.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigurationError) as caught:
        load_kafka_settings()
    assert str(caught.value) == (
        "configuration error: KAFKA_SASL_MECHANISM is required with a SASL security protocol"
    )


def test_a_bad_broker_list_is_reported_with_the_other_bad_settings(
    environment: pytest.MonkeyPatch,
) -> None:
    """A broker list aiokafka would choke on is one line among the others, all at once."""
    environment.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:notaport")
    environment.setenv("SYNC_MAX_CONCURRENCY", "many")
    assert configuration_errors() == [
        "configuration error: KAFKA_BOOTSTRAP_SERVERS: '127.0.0.1:notaport': "
        "the port must be a number from 1 to 65535",
        "configuration error: SYNC_MAX_CONCURRENCY: Input should be a valid integer, "
        "unable to parse string as an integer",
    ]


def test_an_empty_broker_list_is_refused_for_every_command(
    environment: pytest.MonkeyPatch,
) -> None:
    """An empty KAFKA_BOOTSTRAP_SERVERS stops `run` and the Kafka-only commands alike."""
    environment.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    expected = (
        "configuration error: KAFKA_BOOTSTRAP_SERVERS: must name at least one broker as host:port"
    )
    assert configuration_error() == expected
    with pytest.raises(ConfigurationError) as caught:
        load_kafka_settings()
    assert str(caught.value) == expected


def test_a_broker_list_is_normalised(environment: pytest.MonkeyPatch) -> None:
    """Blanks around entries are dropped and each entry names its port."""
    environment.setenv("KAFKA_BOOTSTRAP_SERVERS", " kafka-1:9093 , kafka-2 ")
    assert load_settings().kafka_bootstrap_servers == "kafka-1:9093,kafka-2:9092"


def test_an_empty_webhook_secret_is_refused(environment: pytest.MonkeyPatch) -> None:
    """An empty WEBHOOK_SECRET would sign every webhook with an empty key: it stops start-up."""
    environment.setenv("WEBHOOK_URL", "https://hooks.example.com/role-sync")
    environment.setenv("WEBHOOK_SECRET", "")
    assert configuration_error() == "configuration error: WEBHOOK_SECRET: must not be empty"


@pytest.mark.parametrize(
    "token", ["admin-token ", " admin-token", "admin-token\t", "admin\x07token", "admin-token\r"]
)
def test_an_admin_token_that_cannot_be_presented_is_refused(
    environment: pytest.MonkeyPatch, token: str
) -> None:
    """A token with blanks at an end or control characters could never match a bearer header."""
    environment.setenv("ADMIN_TOKEN", token)
    message = configuration_error()
    assert message == (
        "configuration error: ADMIN_TOKEN: must not begin or end with whitespace, nor hold "
        "control characters (a bearer token cannot carry them)"
    )
    assert "admin" not in message.removeprefix("configuration error: ADMIN_TOKEN")


def test_an_admin_token_file_loses_only_its_trailing_newline(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A token file's one trailing newline is stripped, so the usual file is accepted."""
    path = tmp_path / "admin_token"
    path.write_text("admin-token-4e1d\n")
    environment.setenv("ADMIN_TOKEN_FILE", str(path))
    token = load_settings().admin_token
    assert token is not None
    assert token.get_secret_value() == "admin-token-4e1d"


def test_settings_that_depend_on_others_come_in_the_same_round(
    environment: pytest.MonkeyPatch,
) -> None:
    """A missing token URL and SASL mechanism are reported beside a missing client id, at once."""
    environment.delenv("CXONE_CLIENT_ID")
    environment.delenv("CXONE_TOKEN_URL")
    environment.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    environment.setenv("METRICS_PORT", "99999")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert sorted(str(caught.value).splitlines()) == [
        "configuration error: CXONE_CLIENT_ID is required but not set",
        "configuration error: CXONE_TOKEN_URL (or CXONE_ISSUER_URL for discovery) is required",
        "configuration error: KAFKA_SASL_MECHANISM is required with a SASL security protocol",
        "configuration error: METRICS_PORT: Input should be less than or equal to 65535",
    ]


def test_a_sasl_mechanism_without_its_credentials_comes_with_the_rest(
    environment: pytest.MonkeyPatch,
) -> None:
    """SCRAM without a username and password, and a bad transport, are two lines of one round."""
    environment.setenv("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    environment.setenv("KAFKA_SASL_MECHANISM", "scram-sha-512")
    environment.setenv("CXONE_HTTP_TRANSPORT", "carrier-pigeon")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("configuration error: CXONE_HTTP_TRANSPORT: ")
    assert lines[1] == (
        "configuration error: KAFKA_SASL_MECHANISM=SCRAM-SHA-512 needs KAFKA_SASL_USERNAME "
        "and KAFKA_SASL_PASSWORD"
    )


def test_a_dependency_is_not_repeated_for_a_setting_with_its_own_error(
    environment: pytest.MonkeyPatch,
) -> None:
    """An empty WEBHOOK_SECRET is named once, by its own error, not again as missing."""
    environment.setenv("WEBHOOK_URL", "https://hooks.example.com/x")
    environment.setenv("WEBHOOK_SECRET", "")
    assert configuration_error() == "configuration error: WEBHOOK_SECRET: must not be empty"
