"""SASL credentials the broker rejects are a configuration error, said once at start-up.

aiokafka logs a rejected SASL login and then reports the broker unreachable, which the service
would wait out forever as an outage. Before its Kafka clients start, the service logs in once to
the first bootstrap broker that answers: a rejected password (or a mechanism the broker does not
offer) stops it with one line naming the settings; an accepted login or a broker that does not
answer (left to the clients' retries) lets start-up go on.
"""

from __future__ import annotations

import asyncio

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from consumer.broker_address import parse_broker_addresses
from consumer.errors import ConfigurationError
from consumer.settings import SaslMechanism, Settings
from consumer.stream.kafka import connection_options

PASSWORD_MECHANISMS = frozenset(
    {SaslMechanism.PLAIN, SaslMechanism.SCRAM_SHA_256, SaslMechanism.SCRAM_SHA_512}
)


async def verify_broker_credentials(settings: Settings, *, within: float = 10.0) -> None:
    """Refuse to start when the broker rejects `KAFKA_SASL_USERNAME`/`KAFKA_SASL_PASSWORD`."""
    mechanism = settings.kafka_sasl_mechanism
    if not settings.kafka_security_protocol.startswith("SASL") or (
        mechanism not in PASSWORD_MECHANISMS
    ):
        return
    options = connection_options(settings)
    del options["bootstrap_servers"]
    for server in parse_broker_addresses(settings.kafka_bootstrap_servers):
        try:
            connection = await asyncio.wait_for(
                create_conn(
                    server.host,
                    server.port,
                    client_id="cxone-role-sync-login",
                    request_timeout_ms=int(within * 1000),
                    **options,
                ),
                within,
            )
        except (SaslAuthenticationFailed, AuthenticationFailedError):
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
        connection.close()
        return
