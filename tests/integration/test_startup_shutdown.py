"""Start-up failures and shutdown as an operator meets them: `python -m consumer` as a process.

Every start-up failure is one line on stderr and exit code 2, never a traceback; a signal is
honoured at once while the service is still starting, and within the shutdown budget after.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx
import pytest

from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import ServiceProcess, logged, make_pipeline, wait_until
from tests.integration.test_cli import VALID_ENVIRONMENT, cli
from tests.integration.workload import RoleEvent, produce_events, seed_users

# Far longer than any wait below: a process that stops in time did not wait out its grace.
LONG_GRACE = "120"


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_one_line_failure(stderr: str, message: str) -> None:
    """The failure is said once, on the last line, and no traceback was printed."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert lines[-1] == message
    assert lines.count(message) == 1


def test_a_busy_metrics_port_is_one_line_and_exit_2() -> None:
    """`run` with METRICS_PORT taken by another process exits 2 naming the setting and port."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        finished = cli("run", environment={**VALID_ENVIRONMENT, "METRICS_PORT": str(port)})
    assert finished.returncode == 2
    assert finished.stderr.splitlines()[-1].startswith(
        "configuration error: METRICS_PORT: cannot listen on "
    )
    assert finished.stderr.splitlines()[-1].endswith(f":{port}: already in use")
    assert "Traceback" not in finished.stderr


def test_a_missing_ca_file_is_one_line_naming_setting_and_path(tmp_path: Path) -> None:
    """KAFKA_SSL_CAFILE naming no file stops `run` with one line naming the setting and path."""
    missing = tmp_path / "ca.pem"
    finished = cli(
        "run",
        environment={
            **VALID_ENVIRONMENT,
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CAFILE": str(missing),
        },
    )
    assert finished.returncode == 2
    assert finished.stderr.splitlines() == [
        f"configuration error: KAFKA_SSL_CAFILE: no such file: {missing}"
    ]


def test_oauthbearer_without_a_token_file_is_refused_at_start() -> None:
    """KAFKA_SASL_MECHANISM=OAUTHBEARER without a token source stops `run` with one line."""
    finished = cli(
        "run",
        environment={
            **VALID_ENVIRONMENT,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
        },
    )
    assert finished.returncode == 2
    assert finished.stderr.splitlines() == [
        "configuration error: KAFKA_SASL_MECHANISM=OAUTHBEARER needs "
        "KAFKA_SASL_OAUTH_TOKEN_FILE (a file holding the bearer token)"
    ]


def test_replay_against_an_unreachable_broker_exits_2_with_one_line() -> None:
    """`replay` whose broker does not answer exits 2 with one line naming the bootstrap servers."""
    finished = cli("replay", "--from-beginning", environment=VALID_ENVIRONMENT)
    assert finished.returncode == 2
    assert_one_line_failure(
        finished.stderr,
        "replay error: cannot read through KAFKA_BOOTSTRAP_SERVERS 127.0.0.1:9: "
        "KafkaConnectionError",
    )


async def test_replay_offsets_of_a_partition_the_topic_lacks_exit_2(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """`replay --offsets 7:0` on a two-partition topic exits 2 naming the topic and partition."""
    pipeline = await make_pipeline(topics, simulator_server, partitions=2)
    finished = cli("replay", "--offsets", "0:0,7:0", environment=pipeline.environment)
    assert finished.returncode == 2
    assert_one_line_failure(
        finished.stderr,
        f"--offsets: topic {pipeline.input_topic} has no partition 7",
    )


async def test_an_unreachable_broker_is_retried_not_ready_and_a_signal_stops_it_at_once() -> None:
    """`run` with no broker retries with one WARNING per attempt, answers /readyz 503, and
    SIGTERM ends it long before its shutdown grace, with exit code 0."""
    port = free_port()
    service = ServiceProcess(
        {
            **VALID_ENVIRONMENT,
            "METRICS_PORT": str(port),
            "SYNC_SHUTDOWN_GRACE_SECONDS": LONG_GRACE,
        }
    ).start()
    try:
        await wait_until(
            lambda: len(logged(service.output, "kafka.unreachable")) >= 2,
            within=30,
            what="two broker attempts",
        )
        async with httpx.AsyncClient() as http:
            readiness = await http.get(f"http://127.0.0.1:{port}/readyz")
        service.signal(signal.SIGTERM)
        code = await service.wait_async(15)
        output = service.output
    finally:
        service.close()
    attempts = logged(output, "kafka.unreachable")
    assert [entry["attempt"] for entry in attempts[:2]] == [1, 2]
    assert {entry["level"] for entry in attempts} == {"warning"}
    assert "Unable connect to" not in output, "aiokafka's own line is not repeated"
    assert readiness.status_code == 503
    assert readiness.json()["reason"] == "not_joined"
    assert code == 0
    assert logged(output, "service.stopped_during_startup")
    assert "Traceback" not in output


async def test_tls_against_a_plaintext_broker_is_stopped_at_once(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """`run` speaking TLS to a plaintext broker never starts, and SIGTERM ends it at once."""
    pipeline = await make_pipeline(
        topics,
        simulator_server,
        KAFKA_SECURITY_PROTOCOL="SSL",
        SYNC_SHUTDOWN_GRACE_SECONDS=LONG_GRACE,
    )
    service = ServiceProcess(pipeline.environment).start()
    try:
        await wait_until(
            lambda: bool(logged(service.output, "health.listening")),
            within=30,
            what="the health server",
        )
        # The TLS handshake then meets a listener that does not speak TLS: depending on the
        # broker the attempt hangs until its timeout (30 s) or fails and is retried after a
        # backoff. Either way SIGTERM must end start-up at once.
        await wait_until(
            lambda: bool(logged(service.output, "kafka.connecting")),
            within=30,
            what="start-up to reach the broker",
        )
        service.signal(signal.SIGTERM)
        code = await service.wait_async(15)
        output = service.output
    finally:
        service.close()
    assert code == 0
    assert not logged(output, "service.started")
    assert logged(output, "service.stopped_during_startup")
    assert "Traceback" not in output


@pytest.mark.slow
async def test_sigterm_with_work_stuck_in_cxone_exits_within_the_budget(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """With every SCIM request hanging, SIGTERM ends the process within the grace plus the
    shutdown budget, abandoning the stuck work and committing nothing past it."""
    simulator = simulator_server.simulator
    users = [f"u-stuck-{index}" for index in range(4)]
    seed_users(simulator, users)
    pipeline = await make_pipeline(topics, simulator_server, SYNC_SHUTDOWN_GRACE_SECONDS="2")
    service = ServiceProcess(pipeline.environment).start()
    try:
        await wait_until(
            lambda: bool(logged(service.output, "stream.assigned")),
            within=60,
            what="the consumer to join",
        )
        simulator.set_latency(600.0)
        events = [RoleEvent(f"evt-{user}", user, ("agent_basic",)) for user in users]
        await produce_events(pipeline.bootstrap_servers, pipeline.input_topic, events)
        await wait_until(
            lambda: sum(1 for r in simulator.requests if r.path.startswith("/scim/v2/Users/")) >= 4,
            within=30,
            what="the work to reach CXone and hang there",
        )
        service.signal(signal.SIGTERM)
        # Grace 2 s + final commit 2 s + closing 3 s, and a margin for a loaded machine.
        code = await service.wait_async(2 + 2 + 3 + 8)
        output = service.output
    finally:
        simulator.set_latency(0.0)
        service.close()
    assert code == 0
    [stopped] = logged(output, "stream.stopped")
    assert stopped["abandoned"] == len(users)
    assert not logged(output, "sync.result")
    assert "Traceback" not in output
