"""SASL credentials the broker rejects are a configuration error, said once at start-up.

aiokafka logs a rejected SASL login and then reports the broker unreachable, which the service
would wait out forever as an outage. Before its Kafka clients start, the service logs in once to
the first bootstrap broker that answers: a rejected password or OAUTHBEARER token (or a mechanism
the broker does not offer) stops it with one line naming the settings, never the secret; an
accepted login or a broker that does not answer (left to the clients' retries) lets start-up go
on.

OAUTHBEARER is logged in here by the service itself, over a connection without SASL: aiokafka's
client ends the exchange after sending the token, so it takes the broker's error challenge for a
success (RFC 7628, 3.2.2) and learns of the rejection only when the broker drops its next request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.conn import AIOKafkaConnection, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    for_code,
)
from aiokafka.protocol.admin import SaslAuthenticateRequest, SaslHandShakeRequest

from consumer.broker_address import parse_broker_addresses
from consumer.errors import ConfigurationError
from consumer.settings import SaslMechanism, Settings
from consumer.stream.kafka import connection_options


async def verify_broker_credentials(settings: Settings, *, within: float = 10.0) -> None:
    """Refuse to start when the broker rejects `KAFKA_SASL_USERNAME`/`KAFKA_SASL_PASSWORD` or
    the token in `KAFKA_SASL_OAUTH_TOKEN_FILE`."""
    mechanism = settings.kafka_sasl_mechanism
    if mechanism is None or not settings.kafka_security_protocol.startswith("SASL"):
        return
    options = connection_options(settings)
    del options["bootstrap_servers"]
    token_provider = None
    if mechanism is SaslMechanism.OAUTHBEARER:
        token_provider = options.pop("sasl_oauth_token_provider")
        del options["sasl_mechanism"]
        options["security_protocol"] = options["security_protocol"].removeprefix("SASL_")
    for server in parse_broker_addresses(settings.kafka_bootstrap_servers):
        try:
            async with asyncio.timeout(within):
                connection = await create_conn(
                    server.host,
                    server.port,
                    client_id="cxone-role-sync-login",
                    request_timeout_ms=int(within * 1000),
                    **options,
                )
                try:
                    if token_provider is not None:
                        await _log_in_with_token(connection, await token_provider.token())
                finally:
                    connection.close()
        except (SaslAuthenticationFailed, AuthenticationFailedError):
            if mechanism is SaslMechanism.OAUTHBEARER:
                raise ConfigurationError(
                    "configuration error: KAFKA_SASL_OAUTH_TOKEN_FILE: the broker "
                    f"{server} rejected the OAUTHBEARER token in "
                    f"{settings.kafka_sasl_oauth_token_file}; check that it is current and "
                    "names a principal the broker knows"
                ) from None
            raise ConfigurationError(
                f"configuration error: KAFKA_SASL_PASSWORD: the broker {server} rejected the "
                f"{mechanism.value} credentials of user {settings.kafka_sasl_username!r}; check "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            ) from None
        except UnsupportedSaslMechanismError:
            raise ConfigurationError(
                f"configuration error: KAFKA_SASL_MECHANISM: the broker {server} does not offer "
                f"{mechanism.value}"
            ) from None
        except (KafkaError, OSError, TimeoutError):
            continue
        return


async def _log_in_with_token(connection: AIOKafkaConnection, token: str) -> None:
    """Log in with an OAUTHBEARER token on a connection without SASL; raise what aiokafka
    would for a rejected login or a mechanism the broker does not offer."""
    handshake: Any = await connection.send(SaslHandShakeRequest("OAUTHBEARER"))
    if "OAUTHBEARER" not in handshake.enabled_mechanisms:
        raise UnsupportedSaslMechanismError("OAUTHBEARER")
    answer: Any = await connection.send(
        SaslAuthenticateRequest(f"n,,\x01auth=Bearer {token}\x01\x01".encode())
    )
    if answer.error_code:
        raise for_code(answer.error_code)(answer.error_message)
    if answer.sasl_auth_bytes:
        # The broker's error challenge (a JSON status); the exchange ends with the client's
        # empty reply, which the broker answers with the failure.
        answer = await connection.send(SaslAuthenticateRequest(b"\x01"))
        raise for_code(answer.error_code or SaslAuthenticationFailed.errno)(answer.error_message)
