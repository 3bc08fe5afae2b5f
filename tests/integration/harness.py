"""Running the real service against the test broker and simulator: in-process or as a process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from consumer.observability.http import HealthState
from consumer.sandbox.server import SimulatorServer
from consumer.scim.client import RetryPolicy
from consumer.service import Tuning, run_service
from consumer.settings import Settings, load_settings
from consumer.stream.consumer import FlowLimits
from tests.conftest import TEST_CREDENTIALS, Topics

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_POLICY = ROOT / "examples" / "policy.yaml"

FAST_RETRY = RetryPolicy(wait_initial=0.02, wait_max=0.5, wait_jitter=0.02, max_retry_after=5.0)
"""Short backoff so tests that cause trouble finish quickly; the logic is the same."""


@dataclass(frozen=True)
class Pipeline:
    """The topics and settings of one service under test."""

    input_topic: str
    audit_topic: str
    dlq_topic: str
    group_id: str
    bootstrap_servers: str
    environment: dict[str, str]

    def settings(self, **overrides: object) -> Settings:
        """Settings as the service would read them from `environment`, plus overrides."""
        fields: dict[str, object] = {
            name.lower(): value for name, value in self.environment.items()
        }
        fields.update(overrides)
        return load_settings(**fields)


async def make_pipeline(
    topics: Topics,
    server: SimulatorServer,
    *,
    partitions: int = 1,
    policy_file: Path = EXAMPLE_POLICY,
    password_grant: bool = True,
    topic_configs: Mapping[str, str] | None = None,
    **extra: str,
) -> Pipeline:
    """Create unique topics and the environment that points a service at them and the simulator."""
    input_topic, audit_topic, dlq_topic = await topics.create(
        "input", "audit", "dlq", partitions=partitions, configs=topic_configs
    )
    group_id = topics.group_id()
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap_servers,
        "KAFKA_INPUT_TOPIC": input_topic,
        "KAFKA_AUDIT_TOPIC": audit_topic,
        "KAFKA_DLQ_TOPIC": dlq_topic,
        "KAFKA_GROUP_ID": group_id,
        "CXONE_SCIM_BASE_URL": server.scim_base_url,
        "CXONE_TOKEN_URL": server.token_url,
        "CXONE_CLIENT_ID": TEST_CREDENTIALS.client_id,
        "CXONE_CLIENT_SECRET": TEST_CREDENTIALS.client_secret,
        "POLICY_FILE": str(policy_file),
        "METRICS_PORT": "0",
        "LOG_FORMAT": "json",
    }
    if password_grant:
        environment["CXONE_ACCESS_KEY_ID"] = TEST_CREDENTIALS.access_key_id
        environment["CXONE_ACCESS_KEY_SECRET"] = TEST_CREDENTIALS.access_key_secret
    environment.update(extra)
    return Pipeline(
        input_topic=input_topic,
        audit_topic=audit_topic,
        dlq_topic=dlq_topic,
        group_id=group_id,
        bootstrap_servers=topics.bootstrap_servers,
        environment=environment,
    )


def fast_tuning(**limits: float) -> Tuning:
    """Tuning for tests: quick retries, quick commits, loopback-only metrics."""
    return Tuning(
        retry=FAST_RETRY,
        limits=FlowLimits(commit_interval=0.2, **limits),  # type: ignore[arg-type]
        metrics_host="127.0.0.1",
        circuit_probe_interval=0.2,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
    )


@dataclass
class InProcessService:
    """A service running as a task of the test's event loop."""

    task: asyncio.Task[None]
    stop: asyncio.Event
    health: HealthState

    async def shutdown(self, within: float = 30.0) -> None:
        """Ask it to stop as SIGTERM would, and wait for it to finish."""
        self.stop.set()
        await asyncio.wait_for(asyncio.shield(self.task), within)


@asynccontextmanager
async def running_service(
    settings: Settings, *, tuning: Tuning | None = None
) -> AsyncIterator[InProcessService]:
    """Run the real service in-process; stop it (gracefully) when the block ends."""
    stop = asyncio.Event()
    health = HealthState()
    task = asyncio.create_task(
        run_service(settings, stop, tuning=tuning or fast_tuning(), health=health)
    )
    service = InProcessService(task, stop, health)
    try:
        yield service
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 60.0)


class ServiceProcess:
    """`python -m consumer run` as a child process, for tests where a process must die."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        self._environment = {**os.environ, **environment}
        self._output = tempfile.NamedTemporaryFile(prefix="service-", suffix=".log")  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        """Start the service."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "consumer", "run"],
            env=self._environment,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def output(self) -> str:
        """Everything it printed so far."""
        return Path(self._output.name).read_text(errors="replace")

    def signal(self, signum: int) -> None:
        """Send a signal."""
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """kill -9: no chance to finish anything."""
        self.signal(signal.SIGKILL)
        self.wait(10)

    async def wait_async(self, within: float) -> int:
        """Wait for the process to exit without blocking the event loop; return its code."""
        return await asyncio.to_thread(self.wait, within)

    def wait(self, within: float) -> int:
        """Wait for the process to exit; return its exit code."""
        assert self.process is not None
        return self.process.wait(within)

    def close(self) -> None:
        """Make sure the process is gone and its output file removed."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._output.close()


async def wait_until(
    condition: Callable[[], bool], *, within: float, what: str = "the condition"
) -> None:
    """Poll `condition` every 50 ms until it holds; TimeoutError naming `what` after `within` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


def logged(output: str, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of one event in what a service process printed."""
    lines = []
    for line in output.splitlines():
        if not (line.startswith("{") and f'"{event}"' in line):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # the last line of a killed process may be cut short
        if entry.get("event") == event:
            lines.append(entry)
    return lines


def assigned_partitions(service: ServiceProcess) -> set[int]:
    """The partitions of the last assignment the service logged."""
    entries = logged(service.output, "stream.assigned")
    if not entries:
        return set()
    return {int(str(name).rsplit("/", 1)[1]) for name in entries[-1]["partitions"]}  # type: ignore[union-attr]


async def consumer_lag(port: int) -> dict[str, float]:
    """`cxone_sync_consumer_lag` per partition from the service's /metrics on 127.0.0.1:port."""
    async with httpx.AsyncClient(timeout=2.0) as http:
        try:
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
        except httpx.HTTPError:
            return {}
    return {
        sample.labels["partition"]: float(sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "cxone_sync_consumer_lag"
    }
