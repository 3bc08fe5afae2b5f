"""Tests of the Kafka transport security options: the TLS context and the SASL mapping."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
from pathlib import Path

import pytest
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from structlog.testing import capture_logs

from consumer.errors import ConfigurationError
from consumer.settings import Settings, load_settings
from consumer.stream import kafka
from consumer.stream.access_refused import access_refused
from consumer.stream.broker_credentials import verify_broker_credentials
from consumer.stream.kafka import (
    FileTokenProvider,
    connection_options,
    ssl_context,
    verify_broker_tls,
)
from tests.tls import CertificateAuthority

ROOT = Path(__file__).resolve().parents[2]
SASL_PASSWORD = "sasl-password-91c3e7"


def settings(**fields: object) -> Settings:
    """Valid settings with the given Kafka fields."""
    return Settings(  # type: ignore[call-arg]
        cxone_scim_base_url="https://cxone.example.com/scim/v2",
        cxone_token_url="https://cxone.example.com/auth/token",
        cxone_client_id="client",
        cxone_client_secret="client-secret",
        policy_file=ROOT / "examples" / "policy.yaml",
        **fields,
    )


@pytest.fixture(autouse=True)
def _forget_warnings() -> None:
    kafka._warn_cleartext.cache_clear()


def test_plaintext_has_no_tls_or_sasl() -> None:
    """The default is PLAINTEXT with no TLS context and no SASL options."""
    assert connection_options(settings()) == {
        "bootstrap_servers": "localhost:9092",
        "security_protocol": "PLAINTEXT",
    }


def test_ssl_context_verifies_the_broker_and_its_host_name(tmp_path: Path) -> None:
    """SSL gives a context that requires a valid certificate for the host name, TLS 1.2 or later."""
    ca = CertificateAuthority(tmp_path, "kafka")
    options = connection_options(
        settings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca.certfile)
    )
    context = options["ssl_context"]
    assert options["security_protocol"] == "SSL"
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is True
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "kafka"),),)]
    assert "sasl_mechanism" not in options


def test_a_client_certificate_with_a_key_password_is_loaded(tmp_path: Path) -> None:
    """KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE and KAFKA_SSL_KEY_PASSWORD load the client pair."""
    ca = CertificateAuthority(tmp_path, "kafka")
    client = ca.issue("client", client=True, key_password="key-pass-2b7d")
    context = ssl_context(
        settings(
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=ca.certfile,
            kafka_ssl_certfile=client.certfile,
            kafka_ssl_keyfile=client.keyfile,
            kafka_ssl_key_password="key-pass-2b7d",
        )
    )
    assert context.check_hostname is True


def test_a_wrong_key_password_is_one_line_without_the_password(tmp_path: Path) -> None:
    """A wrong key password stops start-up naming the settings, not echoing the password."""
    ca = CertificateAuthority(tmp_path, "kafka")
    client = ca.issue("client", client=True, key_password="key-pass-2b7d")
    with pytest.raises(ConfigurationError) as caught:
        ssl_context(
            settings(
                kafka_security_protocol="SSL",
                kafka_ssl_certfile=client.certfile,
                kafka_ssl_keyfile=client.keyfile,
                kafka_ssl_key_password="wrong-pass-0000",
            )
        )
    message = str(caught.value)
    assert message.startswith("configuration error: KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE: ")
    assert "\n" not in message
    assert "wrong-pass-0000" not in message


def test_a_cafile_that_is_no_certificate_is_named(tmp_path: Path) -> None:
    """A CA file holding no certificate stops start-up at settings time, naming the setting."""
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            cxone_scim_base_url="https://cxone.example.com/scim/v2",
            cxone_token_url="https://cxone.example.com/auth/token",
            cxone_client_id="client",
            cxone_client_secret="client-secret",
            policy_file=ROOT / "examples" / "policy.yaml",
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=bogus,
        )
    assert str(caught.value) == (
        f"configuration error: KAFKA_SSL_CAFILE: {bogus} is not a PEM CA bundle"
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_maps_username_and_password(tmp_path: Path, mechanism: str) -> None:
    """SASL_SSL with a password mechanism passes the mechanism, user, password and TLS context."""
    options = connection_options(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism=mechanism,
            kafka_sasl_username="svc-role-sync",
            kafka_sasl_password=SASL_PASSWORD,
        )
    )
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == mechanism
    assert options["sasl_plain_username"] == "svc-role-sync"
    assert options["sasl_plain_password"] == SASL_PASSWORD
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_sasl_plaintext_warns_once_that_the_password_travels_in_clear() -> None:
    """SASL_PLAINTEXT works but logs one WARNING, however many clients are built."""
    configured = settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="svc",
        kafka_sasl_password=SASL_PASSWORD,
    )
    with capture_logs() as logs:
        first = connection_options(configured)
        connection_options(configured)
    assert "ssl_context" not in first
    assert first["sasl_mechanism"] == "SCRAM-SHA-256"
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("kafka.sasl_plaintext", "warning")
    ]
    assert "in clear" in logs[0]["risk"]
    assert SASL_PASSWORD not in str(logs)


def test_sasl_options_are_ignored_without_a_sasl_protocol() -> None:
    """A mechanism set under plain SSL sends no SASL options (aiokafka would refuse them)."""
    options = connection_options(
        settings(
            kafka_security_protocol="SSL",
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_username="svc",
            kafka_sasl_password=SASL_PASSWORD,
        )
    )
    assert "sasl_mechanism" not in options
    assert "sasl_plain_password" not in options


async def test_oauthbearer_reads_the_token_file_and_rereads_it_when_it_changes(
    tmp_path: Path,
) -> None:
    """OAUTHBEARER passes a token provider that serves the file's token, fresh after a change."""
    token_file = tmp_path / "token"
    token_file.write_text("token-one\n")
    options = connection_options(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="OAUTHBEARER",
            kafka_sasl_oauth_token_file=token_file,
        )
    )
    provider = options["sasl_oauth_token_provider"]
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    assert "sasl_plain_password" not in options
    assert isinstance(provider, FileTokenProvider)
    assert await provider.token() == "token-one"
    token_file.write_text("token-two-longer\n")
    # Same size and a coarse clock could hide a change; a new mtime makes it certain.
    stat = token_file.stat()
    os.utime(token_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert await provider.token() == "token-two-longer"


async def test_oauthbearer_token_file_that_vanishes_is_a_clear_error(tmp_path: Path) -> None:
    """A token file removed at run time fails the authentication with a line naming it."""
    token_file = tmp_path / "token"
    provider = FileTokenProvider(token_file)
    with pytest.raises(ConfigurationError) as caught:
        await provider.token()
    assert str(caught.value) == (
        "configuration error: KAFKA_SASL_OAUTH_TOKEN_FILE: cannot read "
        f"{token_file} (No such file or directory)"
    )
    token_file.write_text("\n")
    with pytest.raises(ConfigurationError, match="is empty"):
        await provider.token()


async def test_the_tls_check_leaves_plaintext_and_unreachable_brokers_alone() -> None:
    """No check without TLS; a broker that does not answer is left to the client's retries."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    plaintext = settings(kafka_bootstrap_servers=f"127.0.0.1:{closed}")
    tls = settings(kafka_security_protocol="SSL", kafka_bootstrap_servers=f"127.0.0.1:{closed}")
    assert await verify_broker_tls(plaintext) is None  # type: ignore[func-returns-value]
    assert await verify_broker_tls(tls, within=2.0) is None  # type: ignore[func-returns-value]


@pytest.mark.parametrize(
    ("error", "setting"),
    [
        (GroupAuthorizationFailedError(), "KAFKA_GROUP_ID"),
        (TopicAuthorizationFailedError("idp.role-changes"), "KAFKA_INPUT_TOPIC"),
    ],
)
def test_an_authorization_the_consumer_is_refused_is_a_line_naming_the_setting(
    error: Exception, setting: str
) -> None:
    """A refused group or input READ becomes one configuration error naming its setting."""
    refused = access_refused(error, settings())

    assert refused is not None
    assert str(refused).startswith(f"configuration error: {setting}: the broker refuses")


def test_other_kafka_errors_are_not_access_refusals() -> None:
    """A retriable error, or another refusal, is left to whoever handles it."""
    assert access_refused(KafkaConnectionError("gone"), settings()) is None
    assert access_refused(ClusterAuthorizationFailedError(), settings()) is None


async def test_credentials_are_not_checked_without_sasl() -> None:
    """PLAINTEXT and SSL connect to nothing before the clients start."""
    nowhere = "127.0.0.1:1"
    await verify_broker_credentials(settings(kafka_bootstrap_servers=nowhere))
    await verify_broker_credentials(
        settings(kafka_bootstrap_servers=nowhere, kafka_security_protocol="SSL")
    )


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "OAUTHBEARER"])
async def test_a_broker_that_does_not_answer_is_left_to_the_retries(
    mechanism: str, tmp_path: Path
) -> None:
    """No broker listening: the credential check lets start-up go on to its retried connect."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token_file = tmp_path / "token"
    token_file.write_text("a.b.\n")
    credentials: dict[str, object] = (
        {"kafka_sasl_oauth_token_file": token_file}
        if mechanism == "OAUTHBEARER"
        else {"kafka_sasl_username": "app", "kafka_sasl_password": SASL_PASSWORD}
    )
    await verify_broker_credentials(
        settings(
            kafka_bootstrap_servers=f"127.0.0.1:{port}",
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism=mechanism,
            **credentials,
        ),
        within=2.0,
    )


def jwt(claims: dict[str, object]) -> str:
    """An unsigned JWT with these claims."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}."


async def test_an_expired_oauthbearer_token_is_logged_once_per_version_of_the_file(
    tmp_path: Path,
) -> None:
    """A JWT past its `exp` is handed out (the broker decides) and logged once, with the file
    and the expiry but never the token; a renewed file is quiet, a file expired again logs."""
    token_file = tmp_path / "token"
    now = 1_800_000_000.0
    provider = FileTokenProvider(token_file, clock=lambda: now)
    expired = jwt({"sub": "role-sync", "exp": now - 60})
    token_file.write_text(expired + "\n")

    with capture_logs() as logs:
        assert await provider.token() == expired
        assert await provider.token() == expired
        fresh = jwt({"sub": "role-sync", "exp": now + 3600, "pad": "x"})
        token_file.write_text(fresh + "\n")
        assert await provider.token() == fresh
        now += 7200
        assert await provider.token() == fresh

    warnings = [entry for entry in logs if entry["event"] == "kafka.oauth_token_expired"]
    assert warnings == [
        {
            "event": "kafka.oauth_token_expired",
            "log_level": "warning",
            "token_file": str(token_file),
            "expired_at": "2027-01-15T07:59:00+00:00",
        },
        {
            "event": "kafka.oauth_token_expired",
            "log_level": "warning",
            "token_file": str(token_file),
            "expired_at": "2027-01-15T09:00:00+00:00",
        },
    ]
    assert all(expired not in str(entry) and fresh not in str(entry) for entry in logs)


@pytest.mark.parametrize(
    "token",
    [
        "an-opaque-token",
        "a.b.c",
        jwt({"sub": "role-sync"}),
        jwt({"exp": "tomorrow"}),
        jwt({"exp": True}),
        jwt({"exp": -1e300}),
        "x.bm90IGpzb24.y",
    ],
    ids=["opaque", "not-base64", "no-exp", "exp-text", "exp-bool", "exp-out-of-range", "not-json"],
)
async def test_a_token_without_a_readable_expiry_is_handed_out_quietly(
    tmp_path: Path, token: str
) -> None:
    """Opaque tokens and JWTs without a usable `exp` are passed on as they are, unlogged."""
    token_file = tmp_path / "token"
    token_file.write_text(token)
    provider = FileTokenProvider(token_file)
    with capture_logs() as logs:
        assert await provider.token() == token
    assert logs == []
