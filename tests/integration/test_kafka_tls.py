"""TLS to Kafka for real: the service through a TLS-terminating proxy in front of the broker.

The embedded broker speaks plaintext only, so each test starts a private Tansu that advertises
the address of an asyncio TLS proxy started by the test, with a CA and certificates the test
generates. Every Kafka client of the test (topic creation, producer, audit reader) and of the
service reaches the broker only through that proxy, so nothing can quietly use plaintext.
A certificate that does not verify (another CA, another host name) stops `run` at start-up with
exit code 2 and one line naming KAFKA_SSL_CAFILE, before any byte reaches the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from consumer.events import AuditEvent, Outcome
from consumer.sandbox.broker import EmbeddedBroker, resolve_tansu_binary
from consumer.sandbox.server import SimulatorServer
from consumer.settings import Settings, load_settings
from consumer.stream.kafka import connection_options
from tests.conftest import TEST_CREDENTIALS
from tests.integration.harness import (
    EXAMPLE_POLICY,
    running_service,
)
from tests.integration.test_no_secrets import run_with_bad_settings
from tests.tls import CertificateAuthority

WITHIN = 60.0
KEY_PASSWORD = "client-key-password-5e0b"


class TlsProxy:
    """Terminates TLS on a local port and relays the bytes to a plaintext upstream."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._server: asyncio.Server | None = None
        self.upstream_port = 0
        self.port = 0
        # Connections whose TLS handshake succeeded and that were relayed to the broker.
        self.relayed = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1 (the upstream is set before clients come)."""
        self._server = await asyncio.start_server(
            self._relay, "127.0.0.1", 0, ssl=self._context, ssl_handshake_timeout=10
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every relayed connection."""
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()

    async def _relay(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        self.relayed += 1
        try:
            broker_in, broker_out = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_out.close()
            return
        self._writers |= {client_out, broker_out}
        try:
            await asyncio.gather(_pipe(client_in, broker_out), _pipe(broker_in, client_out))
        finally:
            self._writers -= {client_out, broker_out}


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(OSError, ssl.SSLError, RuntimeError):
            sink.close()


@dataclass
class TlsBroker:
    """A private broker reachable only through a TLS proxy, and the CA that signed the proxy."""

    ca: CertificateAuthority
    proxy: TlsProxy
    broker: EmbeddedBroker

    @property
    def bootstrap_servers(self) -> str:
        """The TLS address clients must use."""
        return f"127.0.0.1:{self.proxy.port}"


def _server_context(
    ca: CertificateAuthority, *, dns: tuple[str, ...], ips: tuple[str, ...], client_ca: Path | None
) -> ssl.SSLContext:
    server = ca.issue("broker", dns=dns, ips=ips)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.certfile, server.keyfile)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


@asynccontextmanager
async def tls_broker(
    directory: Path,
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = ("127.0.0.1",),
    client_ca: Path | None = None,
) -> AsyncIterator[TlsBroker]:
    """A private Tansu behind a TLS proxy whose certificate names `dns` and `ips`."""
    ca = CertificateAuthority(directory, "kafka-test")
    proxy = TlsProxy(_server_context(ca, dns=dns, ips=ips, client_ca=client_ca))
    await proxy.start()
    broker = EmbeddedBroker(
        resolve_tansu_binary(os.environ.get("TANSU_BIN")), advertised=f"127.0.0.1:{proxy.port}"
    )
    try:
        async with broker:
            proxy.upstream_port = broker.port
            yield TlsBroker(ca, proxy, broker)
    finally:
        await proxy.stop()


def tls_environment(
    broker: TlsBroker, server: SimulatorServer, *, cafile: Path, **extra: str
) -> dict[str, str]:
    """The environment pointing the service at the TLS broker and the simulator."""
    return service_environment(
        broker.bootstrap_servers,
        server,
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CAFILE=str(cafile),
        **extra,
    )


def service_environment(
    bootstrap_servers: str, server: SimulatorServer, **extra: str
) -> dict[str, str]:
    """The service's environment: this broker, the simulator, topics and a group of its own."""
    suffix = os.urandom(4).hex()
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "KAFKA_INPUT_TOPIC": f"input.tls.{suffix}",
        "KAFKA_AUDIT_TOPIC": f"audit.tls.{suffix}",
        "KAFKA_DLQ_TOPIC": f"dlq.tls.{suffix}",
        "KAFKA_GROUP_ID": f"group.tls.{suffix}",
        "CXONE_SCIM_BASE_URL": server.scim_base_url,
        "CXONE_TOKEN_URL": server.token_url,
        "CXONE_CLIENT_ID": TEST_CREDENTIALS.client_id,
        "CXONE_CLIENT_SECRET": TEST_CREDENTIALS.client_secret,
        "POLICY_FILE": str(EXAMPLE_POLICY),
        "METRICS_PORT": "0",
        "LOG_FORMAT": "json",
    }
    environment.update(extra)
    return environment


def settings_of(environment: dict[str, str]) -> Settings:
    """The settings the service reads from this environment."""
    return load_settings(**{name.lower(): value for name, value in environment.items()})


async def create_topics_over_tls(settings: Settings) -> None:
    """Create the service's topics through the TLS proxy and wait until the broker lists them."""
    names = [settings.kafka_input_topic, settings.kafka_audit_topic, settings.kafka_dlq_topic]
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1) for name in names])
        # Tansu lists a new topic a moment after it created it; bounded by the deadline.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        listed: set[str] = set()
        while not set(names) <= listed and loop.time() < deadline:
            listed = set(await admin.list_topics())
        assert set(names) <= listed
    finally:
        await admin.close()


def role_change(user_id: str, *roles: str) -> bytes:
    """A role-change event for one user."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": f"evt-{user_id}",
            "source": "okta/tls-test",
            "type": "idp.user.roles.changed",
            "data": {
                "user_id": user_id,
                "roles": [{"role_id": role, "primary": n == 0} for n, role in enumerate(roles)],
            },
        }
    ).encode()


async def produce_over_tls(settings: Settings, user_id: str) -> None:
    """Produce one role change to the input topic through the TLS proxy."""
    producer = AIOKafkaProducer(
        **connection_options(settings), acks="all", enable_idempotence=False
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.kafka_input_topic, role_change(user_id, "agent_voice"), key=user_id.encode()
        )
    finally:
        await producer.stop()


async def first_audit_over_tls(settings: Settings) -> AuditEvent:
    """The first audit event on the audit topic, read through the TLS proxy."""
    consumer = AIOKafkaConsumer(**connection_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(settings.kafka_audit_topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WITHIN
        while loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    return AuditEvent.model_validate_json(record.value)
        raise TimeoutError("no audit event arrived over TLS")
    finally:
        await consumer.stop()


async def run_one_event_end_to_end(settings: Settings, server: SimulatorServer) -> AuditEvent:
    """Create topics, produce one event, run the service until it is audited; the audit event."""
    user_id = "u-tls-1"
    server.simulator.seed_user(
        user_id, f"{user_id}@example.com", roles=[("agent_basic", "Standard Agent", True)]
    )
    await create_topics_over_tls(settings)
    await produce_over_tls(settings, user_id)
    async with running_service(settings) as service:
        audit = await first_audit_over_tls(settings)
        await service.shutdown()
    return audit


def roles_of(server: SimulatorServer, user_id: str) -> list[str]:
    """The role values CXone holds for the user."""
    return [role["value"] for role in server.simulator.get_user(user_id).get("roles", [])]


async def test_the_service_works_end_to_end_over_verified_tls(
    simulator_server: SimulatorServer, tmp_path: Path
) -> None:
    """With the CA that signed the broker's certificate, events flow through TLS to CXone."""
    async with tls_broker(tmp_path) as broker:
        settings = settings_of(tls_environment(broker, simulator_server, cafile=broker.ca.certfile))
        audit = await run_one_event_end_to_end(settings, simulator_server)
        relayed = broker.proxy.relayed
    assert audit.data.user_id == "u-tls-1"
    assert audit.data.outcome is Outcome.SYNCED
    assert roles_of(simulator_server, "u-tls-1") == ["agent_voice"]
    assert relayed >= 1


async def test_a_client_certificate_the_broker_requires_is_presented(
    simulator_server: SimulatorServer, tmp_path: Path
) -> None:
    """Where the broker requires a client certificate, the service presents its own."""
    client_ca = CertificateAuthority(tmp_path, "clients")
    client = client_ca.issue("role-sync", client=True, key_password=KEY_PASSWORD)
    async with tls_broker(tmp_path, client_ca=client_ca.certfile) as broker:
        without = await handshake_and_read(broker.proxy.port, cafile=broker.ca.certfile)
        settings = settings_of(
            tls_environment(
                broker,
                simulator_server,
                cafile=broker.ca.certfile,
                KAFKA_SSL_CERTFILE=str(client.certfile),
                KAFKA_SSL_KEYFILE=str(client.keyfile),
                KAFKA_SSL_KEY_PASSWORD=KEY_PASSWORD,
            )
        )
        audit = await run_one_event_end_to_end(settings, simulator_server)
    # The proxy really does insist: a client without a certificate is cut off.
    assert without == "refused"
    assert audit.data.outcome is Outcome.SYNCED
    assert roles_of(simulator_server, "u-tls-1") == ["agent_voice"]


async def handshake_and_read(port: int, *, cafile: Path) -> str:
    """Connect to 127.0.0.1:`port` over TLS without a client certificate and try to read:
    `refused` when the server cuts us."""
    context = ssl.create_default_context(cafile=str(cafile))
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
        )
        writer.write(b"\x00\x00\x00\x00")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(1), 10)
    except (ssl.SSLError, ConnectionError):
        return "refused"
    return "refused" if data == b"" else "answered"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("another_ca", "unable to get local issuer certificate"),
        ("another_host", "IP address mismatch, certificate is not valid for '127.0.0.1'"),
    ],
)
async def test_a_certificate_that_does_not_verify_stops_run_with_one_line(
    simulator_server: SimulatorServer, tmp_path: Path, case: str, expected: str
) -> None:
    """Another CA, or a certificate for another host: exit 2, one line, no byte to the broker."""
    ips: tuple[str, ...] = () if case == "another_host" else ("127.0.0.1",)
    dns = ("kafka.other.example",) if case == "another_host" else ()
    async with tls_broker(tmp_path, dns=dns, ips=ips) as broker:
        cafile = (
            CertificateAuthority(tmp_path, "impostor").certfile
            if case == "another_ca"
            else broker.ca.certfile
        )
        environment = tls_environment(broker, simulator_server, cafile=cafile)
        code, output = await run_with_bad_settings(environment)
        relayed = broker.proxy.relayed
    assert_stopped_by_the_certificate(code, output, broker.bootstrap_servers, expected)
    assert relayed == 0


def assert_stopped_by_the_certificate(code: int, output: str, broker: str, why: str) -> None:
    """`run` exited 2 with one line saying `broker`'s certificate does not verify, for `why`."""
    complaints = [line for line in output.splitlines() if "KAFKA_SSL_CAFILE" in line]
    assert code == 2
    assert len(complaints) == 1
    assert complaints[0].startswith(
        f"configuration error: KAFKA_SSL_CAFILE: the TLS certificate of broker {broker} "
        "does not verify ("
    )
    assert why in complaints[0]
    assert "Traceback" not in output
