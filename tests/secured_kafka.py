"""An Apache Kafka node secured as a production cluster would be: SASL, TLS and an authorizer.

One node, no unauthenticated client listener, `StandardAuthorizer` with no ACL meaning no access.
Its client listeners:

- `SASL_PLAINTEXT` (also between brokers) and `SASL_SSL`: SCRAM-SHA-512, SCRAM-SHA-256, PLAIN and
  OAUTHBEARER. SCRAM users `admin` (a super user) and `app` (only what a test grants) are added
  at format time for both SCRAM mechanisms; PLAIN knows `admin` only. OAUTHBEARER takes Kafka's
  unsecured tokens (`alg` `none`, checked for their lifetime only; `unsecured_token`), whose
  `sub` is the principal: the stand-in for a token an identity provider signs.
- `SSL`: TLS with a server certificate for 127.0.0.1, no client certificate.
- `MTLS`: TLS that requires a client certificate signed by the clients' CA; the certificate
  `role-sync` it issued is a super user (`User:CN=role-sync`).
- `OTHERHOST`: TLS whose certificate names only `kafka.other.example`.
- `PLAINTEXT`: for the tests' own set-up and checks (topics, input records, audit readers).

The controllers talk over the plaintext controller listener as `User:ANONYMOUS`, which must then
be a super user: so is every client without an identity (`PLAINTEXT`, `SSL`, `OTHERHOST`). The
authorizer decides for the SASL users and the `MTLS` certificate only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient

from tests.apache_kafka.cluster import SECURITY_PROTOCOLS, KafkaCluster
from tests.apache_kafka.node import CONTROLLER
from tests.conftest import ClusterFactory
from tests.kafka_acls import Grant, create_acls
from tests.tls import CertificateAuthority, Issued

SCRAM = "SCRAM-SHA-512"
SCRAM_256 = "SCRAM-SHA-256"
PLAIN = "PLAIN"
OAUTHBEARER = "OAUTHBEARER"
ADMIN, ADMIN_SECRET = "admin", "admin-secret-2c9e"
APP, APP_SECRET = "app", "app-secret-71fd"
CLIENT_KEY_PASSWORD = "client-key-password-5e0b"
CLIENT_PRINCIPAL = "CN=role-sync"
LISTENERS = ("SASL_PLAINTEXT", "SASL_SSL", "SSL", "MTLS", "OTHERHOST", "PLAINTEXT")
OTHER_HOST = "kafka.other.example"


@dataclass(frozen=True)
class SecuredKafka:
    """The running node, the CA that signed its certificates, and a client certificate."""

    cluster: KafkaCluster
    ca: CertificateAuthority
    client: Issued
    """Issued by the clients' CA, which `MTLS` trusts; its key is encrypted."""

    def bootstrap_servers(self, listener: str = "SASL_PLAINTEXT") -> str:
        """The node's address on one of its listeners."""
        return self.cluster.bootstrap_servers(listener)


def scram_jaas(user: str, secret: str) -> str:
    """The broker's own SCRAM login, for the traffic between brokers."""
    return (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user}" password="{secret}";'
    )


def _plain_jaas() -> str:
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN}" password="{ADMIN_SECRET}" user_{ADMIN}="{ADMIN_SECRET}";'
    )


def _oauthbearer_jaas() -> str:
    # The broker's own login, never used (brokers talk SCRAM); the listener needs one.
    return (
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
        f'unsecuredLoginStringClaim_sub="{ADMIN}";'
    )


def unsecured_token(subject: str, *, lifetime: float = 3600.0) -> str:
    """An unsigned OAUTHBEARER token (`alg` `none`) for `subject`, valid for `lifetime` seconds
    from now (negative: expired), as the node's default validator accepts."""

    def part(claims: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    now = int(time.time())
    header = part({"alg": "none"})
    claims = part({"sub": subject, "iat": now - 60, "exp": now + int(lifetime)})
    return f"{header}.{claims}."


def _keystore(issued: Issued) -> Path:
    """A PEM key store: the PKCS#8 key, then the certificate."""
    store = issued.certfile.with_suffix(".keystore.pem")
    store.write_text(issued.keyfile.read_text() + issued.certfile.read_text())
    return store


def secured_properties(directory: Path) -> tuple[dict[str, str], CertificateAuthority, Issued]:
    """Broker settings for the listeners above, with certificates made in `directory`."""
    ca = CertificateAuthority(directory, "kafka-test")
    clients = CertificateAuthority(directory, "clients")
    client = clients.issue("role-sync", client=True, key_password=CLIENT_KEY_PASSWORD)
    server = _keystore(ca.issue("broker", ips=("127.0.0.1",)))
    other = _keystore(ca.issue("broker-other-host", dns=(OTHER_HOST,)))
    properties = {
        "listener.security.protocol.map": ",".join(
            [f"{name}:{name}" for name in SECURITY_PROTOCOLS]
            + ["MTLS:SSL", "OTHERHOST:SSL", f"{CONTROLLER}:PLAINTEXT"]
        ),
        "sasl.enabled.mechanisms": f"{SCRAM},{SCRAM_256},{PLAIN},{OAUTHBEARER}",
        "sasl.mechanism.inter.broker.protocol": SCRAM,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(server),
        "listener.name.otherhost.ssl.keystore.type": "PEM",
        "listener.name.otherhost.ssl.keystore.location": str(other),
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.truststore.type": "PEM",
        "listener.name.mtls.ssl.truststore.location": str(clients.certfile),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN};User:ANONYMOUS;User:{CLIENT_PRINCIPAL}",
        "allow.everyone.if.no.acl.found": "false",
    }
    for listener in ("sasl_plaintext", "sasl_ssl"):
        for scram in (SCRAM, SCRAM_256):
            properties[f"listener.name.{listener}.{scram.lower()}.sasl.jaas.config"] = scram_jaas(
                ADMIN, ADMIN_SECRET
            )
        properties[f"listener.name.{listener}.plain.sasl.jaas.config"] = _plain_jaas()
        properties[f"listener.name.{listener}.oauthbearer.sasl.jaas.config"] = _oauthbearer_jaas()
    return properties, ca, client


def start_secured(factory: ClusterFactory, directory: Path) -> SecuredKafka:
    """Start the secured node described above."""
    properties, ca, client = secured_properties(directory)
    cluster = factory(
        listeners=LISTENERS,
        properties=properties,
        format_arguments=[
            argument
            for scram in (SCRAM, SCRAM_256)
            for user, secret in ((ADMIN, ADMIN_SECRET), (APP, APP_SECRET))
            for argument in ("--add-scram", f"{scram}=[name={user},password={secret}]")
        ],
    )
    return SecuredKafka(cluster, ca, client)


def sasl_options(user: str, secret: str, mechanism: str = SCRAM) -> dict[str, str]:
    """aiokafka options of a SASL_PLAINTEXT client."""
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": secret,
    }


async def grant(bootstrap_servers: str, grants: list[Grant]) -> None:
    """Create ACLs as the super user `admin`."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap_servers, **sasl_options(ADMIN, ADMIN_SECRET)
    )
    await client.bootstrap()
    try:
        await create_acls(client, grants)
    finally:
        await client.close()


async def until_visible(
    bootstrap_servers: str, wanted: set[str], *, user: str = APP, secret: str = APP_SECRET
) -> None:
    """ACLs reach the broker asynchronously: wait (30 s at most) until `user` sees every topic."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30.0
    while True:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers, **sasl_options(user, secret)
        )
        await admin.start()
        try:
            listed = set(await admin.list_topics())
        finally:
            await admin.close()
        if wanted <= listed:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"the ACLs did not reach the broker: {sorted(wanted - listed)}")
        await asyncio.sleep(0.2)
