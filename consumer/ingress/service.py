"""`cxone-role-sync ingress`: the SCIM endpoint, its state, and the emitter, started and stopped.

Start-up: the health port, the broker, the state topic (created compacted with one partition
when missing) read to its end, CXone (for the `user_name` rule), then the SCIM port; /readyz turns
ready once the state is rebuilt and the SCIM port is listening. Stop: the SCIM port closes first,
then the emitter finishes the users it was given (bounded), then the clients close.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import structlog
import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from consumer import __version__
from consumer.catalog import Policy, load_policy
from consumer.errors import ConfigurationError
from consumer.ingress.app import IngressApplication
from consumer.ingress.directory import CxoneDirectory
from consumer.ingress.emitter import Emitter
from consumer.ingress.resources import ingress_provider
from consumer.ingress.settings import IngressSettings, UserIdRule
from consumer.ingress.state_topic import StateTopic
from consumer.ingress.store import PersistedStorage
from consumer.ingress.writer_lease import WriterLease
from consumer.observability.http import HealthServer, HealthState
from consumer.quiet_server import QuietServer
from consumer.service import Tuning, open_cxone
from consumer.stream.guard_ledger import ensure_ledger_topic
from consumer.stream.kafka import connection_options, producer_for_broker
from consumer.token_bucket import TokenBucket

__all__ = ["Ingress", "IngressTuning", "run_ingress"]

log = structlog.get_logger(__name__)

# How long a stop waits for the emitter to finish the users it was given.
SETTLE_SECONDS = 10.0


@dataclass
class IngressTuning:
    """Knobs outside the configuration contract; tests shorten or loosen them."""

    metrics_host: str | None = None
    service: Tuning = field(default_factory=Tuning)


def checked_mapping(policy: Policy, source: str) -> None:
    """Refuse a policy without `idp_mapping`: every user would be sent an empty role set."""
    if policy.idp_mapping is None:
        raise ConfigurationError(
            f"start-up error: POLICY_FILE {source} has no idp_mapping section: without it the "
            "ingress would ask to remove every role of every user it is sent"
        )


class Ingress:
    """One running SCIM ingress: start, serve, stop."""

    def __init__(self, settings: IngressSettings, tuning: IngressTuning | None = None) -> None:
        self.settings = settings
        self.tuning = tuning or IngressTuning()
        self.health = HealthState()
        self._stack = AsyncExitStack()
        self._server: QuietServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.emitter: Emitter | None = None
        self.storage: PersistedStorage | None = None
        self.port: int | None = None
        self.health_server: HealthServer | None = None
        self._journal: StateTopic | None = None

    @property
    def url(self) -> str:
        """The SCIM base URL this instance serves (what an IdP is given)."""
        scheme = "https" if self.settings.tls else "http"
        return f"{scheme}://{self.settings.ingress_host}:{self.port}/scim/v2"

    async def start(self) -> None:
        """Start everything; ConfigurationError (one line) when something cannot start."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        settings = self.settings
        policy = load_policy(settings.policy_file)
        checked_mapping(policy, str(settings.policy_file))
        health = HealthServer(
            self.health,
            host=self.tuning.metrics_host or settings.metrics_host,
            port=settings.metrics_port,
        )
        try:
            await health.start()
        except OSError as error:
            raise _port_error("METRICS_PORT", health.host, settings.metrics_port, error) from None
        self._stack.push_async_callback(health.stop)
        self.health_server = health

        producer = await self._producer()
        connection = connection_options(settings)
        await ensure_ledger_topic(
            connection, settings.ingress_state_topic, setting="INGRESS_STATE_TOPIC"
        )
        journal = StateTopic(producer, connection=connection, topic=settings.ingress_state_topic)
        # Read once now, so a topic that cannot be read (permissions, partitions) stops start-up
        # with one line; the writer reads it again when it wins, as it may have changed since.
        await _readable(journal)
        emitter_box: list[Emitter] = []
        storage = PersistedStorage(
            journal,
            on_change=lambda users: emitter_box[0].mark(users),
            max_record_bytes=settings.kafka_max_record_bytes,
        )
        scim = None
        if settings.ingress_user_id is UserIdRule.USER_NAME:
            cxone = await open_cxone(
                settings, self._stack, tuning=self.tuning.service, health=self.health
            )
            scim = cxone.scim
        key = settings.approval_hmac_key
        emitter = Emitter(
            storage,
            journal,
            producer,
            input_topic=settings.kafka_input_topic,
            policy=policy,
            directory=CxoneDirectory(settings.ingress_user_id, scim),
            source=settings.ingress_source,
            approval_key=None if key is None else key.get_secret_value().encode(),
            retry_seconds=settings.ingress_retry_seconds,
        )
        emitter_box.append(emitter)
        self.emitter, self.storage, self._journal = emitter, storage, journal
        self._tasks.append(asyncio.create_task(emitter.run(self._stop), name="ingress-emitter"))

        per_minute = settings.ingress_rate_limit_per_minute
        app = IngressApplication(
            storage,
            ingress_provider(),
            token=settings.ingress_token,
            bucket=TokenBucket(per_minute, burst=max(1, per_minute // 6)),
            max_body_bytes=settings.ingress_max_body_bytes,
            serving=lambda: self.health.joined,
        )
        await self._serve(app)
        service = self.tuning.service
        lease = WriterLease(
            connection=connection,
            topic=settings.ingress_state_topic,
            group_id=f"{settings.kafka_group_id}.ingress",
            on_won=self._become_writer,
            on_lost=self._stop_writing,
            session_timeout_ms=service.session_timeout_ms,
            heartbeat_interval_ms=service.heartbeat_interval_ms,
        )
        await lease.start()
        self._stack.push_async_callback(lease.stop)
        log.info(
            "ingress.started",
            version=__version__,
            url=self.url,
            user_id_rule=settings.ingress_user_id.value,
            source=settings.ingress_source,
        )

    async def _become_writer(self) -> None:
        """This instance owns the state topic: rebuild from it, then serve and emit."""
        assert self._journal is not None
        assert self.storage is not None
        assert self.emitter is not None
        try:
            records = await self._journal.read_all()
        except (KafkaError, ConfigurationError, ValueError) as error:
            # Not ready, and says why; the group gives the partition back on the next rebalance.
            log.error("ingress.rebuild_failed", error=type(error).__name__, detail=str(error))
            return
        self.storage.load(records)
        self.emitter.load(records)
        self.emitter.active = True
        self.health.joined = True
        log.info(
            "ingress.serving",
            users=sum(1 for k in records if k.startswith("User/")),
            groups=sum(1 for k in records if k.startswith("Group/")),
        )

    def _stop_writing(self) -> None:
        """Another instance owns the state topic now: stop serving and emitting at once."""
        self.health.joined = False
        if self.emitter is not None:
            self.emitter.active = False

    async def serving_within(self, seconds: float) -> bool:
        """Wait (bounded) until this instance serves; False when it is still on standby."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self.health.joined:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _producer(self) -> AIOKafkaProducer:
        producer: AIOKafkaProducer | None = None
        try:
            producer, _ = await producer_for_broker(
                self.settings,
                client_id=f"cxone-role-sync-ingress-{socket.gethostname()}",
                request_timeout_ms=self.tuning.service.producer_request_timeout_ms,
            )
            await producer.start()
        except KafkaError as error:
            if producer is not None:
                await producer.stop()
            raise ConfigurationError(
                f"start-up error: KAFKA_BOOTSTRAP_SERVERS: cannot reach "
                f"{self.settings.kafka_bootstrap_servers}: {type(error).__name__}"
            ) from None
        self._stack.push_async_callback(producer.stop)
        return producer

    async def _serve(self, app: IngressApplication) -> None:
        settings = self.settings
        config = uvicorn.Config(
            app,
            host=settings.ingress_host,
            port=settings.ingress_port,
            ssl_certfile=settings.ingress_tls_certfile,
            ssl_keyfile=settings.ingress_tls_keyfile,
            log_config=None,
            access_log=False,
            lifespan="off",
            # Only a proxy's own address may set the client address (INGRESS_BEHIND_TLS_PROXY).
            proxy_headers=settings.ingress_behind_tls_proxy,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        # The process's signal handling stays ours (run_until_signalled).
        server = QuietServer(config)
        try:
            config.load()
            sock = config.bind_socket()
        except (OSError, SystemExit) as error:
            raise _port_error(
                "INGRESS_PORT", settings.ingress_host, settings.ingress_port, error
            ) from None
        self._server = server
        self.port = int(sock.getsockname()[1])
        self._tasks.append(asyncio.create_task(server.serve(sockets=[sock]), name="ingress-http"))
        while not server.started:
            if self._tasks[-1].done():
                raise ConfigurationError("start-up error: the SCIM endpoint did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving, let the emitter finish (bounded), close everything."""
        self.health.joined = False
        if self._server is not None:
            self._server.should_exit = True
            self._server.exit_requested.set()
        if self.emitter is not None:
            try:
                await asyncio.wait_for(self.emitter.settled(), timeout=SETTLE_SECONDS)
            except TimeoutError:
                log.warning("ingress.stopped_unsettled")
        self._stop.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=SETTLE_SECONDS)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        self._tasks.clear()
        await self._stack.aclose()


async def _readable(journal: StateTopic) -> None:
    try:
        await journal.read_all()
    except KafkaError as error:
        raise ConfigurationError(
            f"start-up error: INGRESS_STATE_TOPIC: cannot read {journal.topic}: "
            f"{type(error).__name__}"
        ) from None


def _port_error(setting: str, host: str, port: int, error: BaseException) -> ConfigurationError:
    number = getattr(error, "errno", None)
    why = "already in use" if number == errno.EADDRINUSE else getattr(error, "strerror", None)
    return ConfigurationError(
        f"configuration error: {setting}: cannot listen on {host}:{port}: {why or 'refused'}"
    )


async def run_ingress(settings: IngressSettings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set."""
    ingress = Ingress(settings)
    await ingress.start()
    try:
        await stop.wait()
    finally:
        await ingress.stop()
