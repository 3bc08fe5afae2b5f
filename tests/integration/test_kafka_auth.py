"""SASL and TLS against Apache Kafka's own listeners (no proxy): runs on the Apache Kafka of the
broker plan only (`kafka_release`), one secured node (`tests/secured_kafka.py`) for the module.

SCRAM-SHA-512 over SASL_PLAINTEXT and SASL_SSL, SCRAM-SHA-256, PLAIN, OAUTHBEARER (a token file),
TLS with the right CA, mutual TLS with a certificate the broker requires: each carries one event
end to end to CXone. A wrong password, an expired token, another CA and another host name stop
`run` with one line and exit code 2.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consumer.events import Outcome
from consumer.sandbox.server import SimulatorServer
from tests.conftest import ClusterFactory
from tests.integration.test_cli import cli
from tests.integration.test_kafka_tls import (
    assert_stopped_by_the_certificate,
    handshake_and_read,
    roles_of,
    run_one_event_end_to_end,
    service_environment,
    settings_of,
)
from tests.integration.test_no_secrets import run_with_bad_settings
from tests.secured_kafka import (
    ADMIN,
    ADMIN_SECRET,
    APP,
    CLIENT_KEY_PASSWORD,
    LISTENERS,
    OAUTHBEARER,
    PLAIN,
    SCRAM,
    SCRAM_256,
    SecuredKafka,
    start_secured,
    unsecured_token,
)
from tests.tls import CertificateAuthority

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def secured(
    kafka_module_clusters: ClusterFactory, tmp_path_factory: pytest.TempPathFactory
) -> SecuredKafka:
    """The module's secured Apache Kafka node."""
    return start_secured(kafka_module_clusters, tmp_path_factory.mktemp("secured-kafka"))


def environment(
    kafka: SecuredKafka, server: SimulatorServer, listener: str, **extra: str
) -> dict[str, str]:
    """The service's environment for one listener of the node, with its own topics and group."""
    protocol = "SSL" if listener in ("MTLS", "OTHERHOST") else listener
    return service_environment(
        kafka.bootstrap_servers(listener), server, KAFKA_SECURITY_PROTOCOL=protocol, **extra
    )


def sasl(mechanism: str, user: str = ADMIN, secret: str = ADMIN_SECRET) -> dict[str, str]:
    """The SASL settings of the service."""
    return {
        "KAFKA_SASL_MECHANISM": mechanism,
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SASL_PASSWORD": secret,
    }


def oauthbearer(token_file: Path, token: str) -> dict[str, str]:
    """The OAUTHBEARER settings of the service, with `token` written to `token_file`."""
    token_file.write_text(token + "\n")
    return {"KAFKA_SASL_MECHANISM": OAUTHBEARER, "KAFKA_SASL_OAUTH_TOKEN_FILE": str(token_file)}


@pytest.mark.parametrize(
    ("listener", "mechanism"),
    [
        ("SASL_PLAINTEXT", SCRAM),
        ("SASL_SSL", SCRAM),
        ("SASL_PLAINTEXT", SCRAM_256),
        ("SASL_PLAINTEXT", PLAIN),
        ("SASL_SSL", OAUTHBEARER),
    ],
)
async def test_sasl_carries_an_event_end_to_end(
    secured: SecuredKafka,
    simulator_server: SimulatorServer,
    tmp_path: Path,
    listener: str,
    mechanism: str,
) -> None:
    """With the right SASL credentials (and CA over SASL_SSL) an event is synced and audited."""
    tls = {"KAFKA_SSL_CAFILE": str(secured.ca.certfile)} if listener == "SASL_SSL" else {}
    if mechanism == OAUTHBEARER:
        credentials = oauthbearer(tmp_path / "token", unsecured_token(ADMIN))
    else:
        credentials = sasl(mechanism)
    settings = settings_of(environment(secured, simulator_server, listener, **credentials, **tls))

    audit = await run_one_event_end_to_end(settings, simulator_server)

    assert audit.data.outcome is Outcome.SYNCED
    assert roles_of(simulator_server, "u-tls-1") == ["agent_voice"]


@pytest.mark.parametrize(
    ("listener", "mechanism", "user"),
    [
        ("SASL_PLAINTEXT", SCRAM, ADMIN),
        ("SASL_SSL", SCRAM, APP),
        ("SASL_PLAINTEXT", SCRAM_256, APP),
        ("SASL_PLAINTEXT", PLAIN, ADMIN),
    ],
)
async def test_a_wrong_password_stops_run_with_one_line(
    secured: SecuredKafka,
    simulator_server: SimulatorServer,
    listener: str,
    mechanism: str,
    user: str,
) -> None:
    """A password the broker rejects: exit 2, one line naming the setting, never the secret."""
    wrong = "not-the-password-0d41"
    tls = {"KAFKA_SSL_CAFILE": str(secured.ca.certfile)} if listener == "SASL_SSL" else {}
    env = environment(secured, simulator_server, listener, **sasl(mechanism, user, wrong), **tls)

    code, output = await run_with_bad_settings(env)

    complaints = [line for line in output.splitlines() if line.startswith("configuration error")]
    assert code == 2
    assert complaints == [
        f"configuration error: KAFKA_SASL_PASSWORD: the broker {env['KAFKA_BOOTSTRAP_SERVERS']} "
        f"rejected the {mechanism} credentials of user {user!r}; check KAFKA_SASL_USERNAME "
        "and KAFKA_SASL_PASSWORD"
    ]
    assert "Traceback" not in output
    assert wrong not in output


async def test_an_expired_oauthbearer_token_stops_run_with_one_line(
    secured: SecuredKafka, simulator_server: SimulatorServer, tmp_path: Path
) -> None:
    """A token the broker rejects (expired a minute ago): exit 2, one line naming the setting and
    the file, never the token."""
    token_file = tmp_path / "token"
    token = unsecured_token(ADMIN, lifetime=-60)
    tls = {"KAFKA_SSL_CAFILE": str(secured.ca.certfile)}
    env = environment(
        secured, simulator_server, "SASL_SSL", **oauthbearer(token_file, token), **tls
    )

    code, output = await run_with_bad_settings(env)

    complaints = [line for line in output.splitlines() if line.startswith("configuration error")]
    assert code == 2
    assert complaints == [
        "configuration error: KAFKA_SASL_OAUTH_TOKEN_FILE: the broker "
        f"{env['KAFKA_BOOTSTRAP_SERVERS']} rejected the OAUTHBEARER token in {token_file}; "
        "check that it is current and names a principal the broker knows"
    ]
    assert "Traceback" not in output
    assert '"event": "kafka.oauth_token_expired"' in output
    assert token.split(".")[1] not in output


async def test_replay_with_a_wrong_password_stops_with_the_same_line(
    secured: SecuredKafka, simulator_server: SimulatorServer
) -> None:
    """`replay` checks the login before it reads: exit 2, the same one line, no secret."""
    wrong = "not-the-password-0d41"
    env = environment(secured, simulator_server, "SASL_PLAINTEXT", **sasl(SCRAM, APP, wrong))

    result = await asyncio.to_thread(
        cli, "replay", "--from-beginning", "--dry-run", environment=env
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"configuration error: KAFKA_SASL_PASSWORD: the broker {env['KAFKA_BOOTSTRAP_SERVERS']} "
        f"rejected the {SCRAM} credentials of user {APP!r}; check KAFKA_SASL_USERNAME "
        "and KAFKA_SASL_PASSWORD"
    )
    assert "Traceback" not in result.stdout + result.stderr
    assert wrong not in result.stdout + result.stderr


async def test_tls_with_the_right_ca_carries_an_event_end_to_end(
    secured: SecuredKafka, simulator_server: SimulatorServer
) -> None:
    """On the broker's TLS listener, with the CA that signed it, an event is synced."""
    settings = settings_of(
        environment(secured, simulator_server, "SSL", KAFKA_SSL_CAFILE=str(secured.ca.certfile))
    )

    audit = await run_one_event_end_to_end(settings, simulator_server)

    assert audit.data.outcome is Outcome.SYNCED
    assert roles_of(simulator_server, "u-tls-1") == ["agent_voice"]


async def test_a_client_certificate_the_broker_requires_is_presented(
    secured: SecuredKafka, simulator_server: SimulatorServer
) -> None:
    """The broker's mutual-TLS listener refuses a client without a certificate, takes ours."""
    with_certificate = environment(
        secured,
        simulator_server,
        "MTLS",
        KAFKA_SSL_CAFILE=str(secured.ca.certfile),
        KAFKA_SSL_CERTFILE=str(secured.client.certfile),
        KAFKA_SSL_KEYFILE=str(secured.client.keyfile),
        KAFKA_SSL_KEY_PASSWORD=CLIENT_KEY_PASSWORD,
    )

    without = await handshake_and_read(
        secured.cluster.node(1).listeners[LISTENERS.index("MTLS")].port,
        cafile=secured.ca.certfile,
    )
    audit = await run_one_event_end_to_end(settings_of(with_certificate), simulator_server)

    assert without == "refused"
    assert audit.data.outcome is Outcome.SYNCED
    assert roles_of(simulator_server, "u-tls-1") == ["agent_voice"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("another_ca", "unable to get local issuer certificate"),
        ("another_host", "IP address mismatch, certificate is not valid for '127.0.0.1'"),
    ],
)
async def test_a_broker_certificate_that_does_not_verify_stops_run_with_one_line(
    secured: SecuredKafka,
    simulator_server: SimulatorServer,
    tmp_path: Path,
    case: str,
    expected: str,
) -> None:
    """Another CA, or the broker's certificate for another host: exit 2, one line."""
    listener = "OTHERHOST" if case == "another_host" else "SSL"
    cafile = (
        CertificateAuthority(tmp_path, "impostor").certfile
        if case == "another_ca"
        else secured.ca.certfile
    )
    env = environment(secured, simulator_server, listener, KAFKA_SSL_CAFILE=str(cafile))

    code, output = await run_with_bad_settings(env)

    assert_stopped_by_the_certificate(code, output, env["KAFKA_BOOTSTRAP_SERVERS"], expected)
