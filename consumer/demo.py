"""`demo` and `sandbox`: the whole service on one laptop, on an embedded broker and a simulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from consumer.catalog import Policy
from consumer.demo_ingress import ingress_guide, running_ingress, scim_story
from consumer.demo_summary import summary_lines
from consumer.errors import ConfigurationError
from consumer.events import AuditEvent
from consumer.observability.http import HealthState
from consumer.sandbox.admin import ROUTES
from consumer.sandbox.broker import EmbeddedBroker, EmbeddedBrokerError, resolve_tansu_binary
from consumer.sandbox.feed import AuditReader, produce
from consumer.sandbox.samples import (
    UNKNOWN_ON_PURPOSE,
    SampleRecord,
    follow_ups,
    promotions,
    sample_role_ids,
    seed_users,
    user_id,
)
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import CxoneSimulator
from consumer.sandbox.tokens import Credentials
from consumer.settings import load_settings

DEMO_CREDENTIALS = Credentials(
    client_id="demo-client",
    client_secret="demo-client-secret",  # noqa: S106 - a throwaway credential of the simulator
    access_key_id="demo-access-key",
    access_key_secret="demo-access-key-secret",  # noqa: S106
)
INPUT_TOPIC = "idp.role-changes"
AUDIT_TOPIC = "cxone.role-sync.audit"
DLQ_TOPIC = "idp.role-changes.dlq"
PARTITIONS = 4


@dataclass(frozen=True)
class Sandbox:
    """A running embedded broker and CXone simulator, and the settings that point at them."""

    broker: EmbeddedBroker
    server: SimulatorServer
    seeded: tuple[str, ...]

    @property
    def simulator(self) -> CxoneSimulator:
        """The simulator, to seed users or cause trouble."""
        return self.server.simulator

    def environment(self, policy_file: Path) -> dict[str, str]:
        """The environment variables that point `run` at this sandbox."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "KAFKA_INPUT_TOPIC": INPUT_TOPIC,
            "KAFKA_AUDIT_TOPIC": AUDIT_TOPIC,
            "KAFKA_DLQ_TOPIC": DLQ_TOPIC,
            "CXONE_SCIM_BASE_URL": self.server.scim_base_url,
            "CXONE_TOKEN_URL": self.server.token_url,
            "CXONE_CLIENT_ID": DEMO_CREDENTIALS.client_id,
            "CXONE_CLIENT_SECRET": DEMO_CREDENTIALS.client_secret,
            "CXONE_ACCESS_KEY_ID": DEMO_CREDENTIALS.access_key_id,
            "CXONE_ACCESS_KEY_SECRET": DEMO_CREDENTIALS.access_key_secret,
            "POLICY_FILE": str(policy_file),
        }


def broker_binary(tansu_bin: str | None) -> str:
    """The Tansu binary to run, or ConfigurationError in one line naming where it came from."""
    try:
        return resolve_tansu_binary(tansu_bin)
    except EmbeddedBrokerError as error:
        raise ConfigurationError(f"{error} (--tansu-bin or TANSU_BIN)") from None


class BrokerWouldNotStart(ConfigurationError):
    """The embedded broker did not start: one line, with its own last line of output."""

    @classmethod
    def of(cls, error: EmbeddedBrokerError) -> BrokerWouldNotStart:
        """The one line for the broker's multi-line failure."""
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        said = lines[0].rstrip(":") if lines else type(error).__name__
        if len(lines) > 1:
            said += f" ({lines[-1][:200]})"
        return cls(f"{said}; is --tansu-bin (or TANSU_BIN) a Tansu broker?")


@asynccontextmanager
async def sandbox(tansu_bin: str | None, *, users: int = 40) -> AsyncIterator[Sandbox]:
    """Start the broker and the simulator, seed agents and create the topics."""
    simulator = CxoneSimulator(DEMO_CREDENTIALS)
    seed_users(simulator, users)
    # A little latency, as a real tenant has, so concurrency and coalescing show.
    simulator.set_latency(0.01, jitter_seconds=0.02)
    binary = broker_binary(tansu_bin)
    async with AsyncExitStack() as stack:
        try:
            broker = await stack.enter_async_context(EmbeddedBroker(binary))
        except EmbeddedBrokerError as error:
            raise BrokerWouldNotStart.of(error) from None
        server = await stack.enter_async_context(SimulatorServer(simulator))
        await broker.create_topics([INPUT_TOPIC, AUDIT_TOPIC, DLQ_TOPIC], partitions=PARTITIONS)
        yield Sandbox(broker, server, tuple(user_id(n) for n in range(1, users + 1)))


class DemoCannotTell(ConfigurationError):
    """The policy given cannot tell the demo's story; the message says why, in one line."""


class DemoStalled(Exception):
    """The service stopped giving results before every sample event had one."""


def story_gaps(policy: Policy, policy_file: Path) -> str | None:
    """Why the sample events cannot tell their story under `policy`, or None when they can."""
    missing = sorted(sample_role_ids() - UNKNOWN_ON_PURPOSE - set(policy.catalog))
    if not missing:
        return None
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    return (
        f"demo: the policy {policy_file} cannot tell the demo's story: it does not define "
        f"{shown}, which the demo's users and sample events hold; run the demo with the example "
        "policy, or try this one with `sandbox` and `send`"
    )


def example_policy() -> Path:
    """The example policy shipped inside the package, used when no policy is given."""
    # A regular (or editable) install keeps package data as files on disk.
    return Path(str(resources.files("consumer").joinpath("example_policy.yaml")))


def sandbox_guide(box: Sandbox, policy_file: Path, ingress_url: str | None = None) -> list[str]:
    """What `sandbox` prints: the exports, the seeded users, the admin routes, lines to paste."""
    lines = [f"export {name}={value}" for name, value in box.environment(policy_file).items()]
    lines += ["", "# Seeded CXone users and the roles they hold now:"]
    lines += [f"#   {ids:<16} {roles}" for ids, roles in _seeded_users(box)]
    admin = f"{box.server.base_url}/_sim/"
    lines += ["", f"# simulator admin API: {admin} (GET it for this list)"]
    width = max(len(path) for _, path, _ in ROUTES)
    lines += [f"#   {method:<6} /_sim/{path:<{width}} {does}" for method, path, does in ROUTES]
    lines += [
        "",
        "# Paste the exports above into two shells. In the first, run the consumer:",
        "#   LOG_FORMAT=console cxone-role-sync run",
        "# In the second, send events and read their audit lines:",
        "#   cxone-role-sync send --user u-1001 --roles agent_voice,reporting_viewer "
        "--primary agent_voice",
        "#   cxone-role-sync send --user u-1002 --roles agent_voice,admin_support "
        "--approval CHG-1:secops",
        "#   cxone-role-sync send --user u-1003 --roles agent_voice,super_admin",
        "#   cxone-role-sync audit --follow",
        f"#   curl -s {admin}users/u-1001",
        "#   curl -s localhost:9400/metrics | grep cxone_sync_events_total",
    ]
    return lines + ingress_guide(ingress_url, scim_user_name(box))


def scim_user_name(box: Sandbox) -> str:
    """The userName of the seeded user the SCIM examples provision (u-1005)."""
    return str(box.simulator.get_user(user_id(5))["userName"])


def _seeded_users(box: Sandbox) -> list[tuple[str, str]]:
    """Runs of consecutive seeded users holding the same roles, as (id range, roles)."""
    runs: list[tuple[list[str], str]] = []
    for user in map(box.simulator.get_user, box.seeded):
        roles = ", ".join(
            str(role.get("value")) + (" (primary)" if role.get("primary") else "")
            for role in user.get("roles") or []
        )
        roles = roles or "(none)"
        if runs and runs[-1][1] == roles:
            runs[-1][0].append(str(user["id"]))
        else:
            runs.append(([str(user["id"])], roles))
    return [(ids[0] if len(ids) == 1 else f"{ids[0]} .. {ids[-1]}", roles) for ids, roles in runs]


async def run_demo(
    *, policy_file: Path, tansu_bin: str | None, echo: Callable[[str], None], within: float = 120.0
) -> Counter[str]:
    """Feed the sample events through the real service and summarise the outcomes."""
    from consumer.service import Tuning, run_service

    waves = [promotions(), follow_ups()]
    records = [record for wave in waves for record in wave]
    echo("starting the embedded broker and the CXone simulator ...")
    async with sandbox(tansu_bin) as box:
        echo(f"broker   {box.broker.bootstrap_servers} (embedded Tansu)")
        echo(f"CXone    {box.server.scim_base_url} (simulator, {len(box.seeded)} seeded agents)")
        echo(f"policy   {policy_file}")
        before = box.simulator.get_user(user_id(2))
        environment = {name.lower(): value for name, value in box.environment(policy_file).items()}
        # A short grace: when the demo stops early, what the service holds need not finish.
        settings = load_settings(
            **environment, metrics_port=0, sync_max_concurrency=8, sync_shutdown_grace_seconds=2
        )
        stop = asyncio.Event()
        health = HealthState()
        service = asyncio.create_task(
            run_service(settings, stop, tuning=Tuning(metrics_host="127.0.0.1"), health=health)
        )
        echo("consumer starting; joining its consumer group takes a few seconds ...")
        try:
            async with AuditReader(box.broker.bootstrap_servers, AUDIT_TOPIC) as audit:
                progress = _Progress(echo, health, asyncio.get_running_loop().time())
                expected = 0
                for wave in waves:
                    await produce(
                        box.broker.bootstrap_servers, INPUT_TOPIC, [(r.key, r.value) for r in wave]
                    )
                    echo(f"fed      {len(wave)} events ({_labels(wave)}) to {INPUT_TOPIC}")
                    expected += len(wave)
                    results = await _results_while_running(
                        service, audit, expected, within, progress
                    )
                # The samples' story is told from their results alone.
                results = dict(results)
                async with running_ingress(box.environment(policy_file), policy_file) as url:
                    if url is not None:
                        await scim_story(url, scim_user_name(box), audit, echo, within=within)
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await service
        after = box.simulator.get_user(user_id(2))
    by_offset = sorted(
        results.values(), key=lambda e: (e.data.source.partition, e.data.source.offset)
    )
    for line in summary_lines(records, by_offset, before=before, after=after, user_id=user_id(2)):
        echo(line)
    return Counter(event.data.outcome.value for event in by_offset)


def _labels(wave: list[SampleRecord]) -> str:
    labels = list(dict.fromkeys(record.label for record in wave))
    return labels[0] if len(labels) == 1 else f"{len(labels)} kinds of change"


class _Progress:
    """Says when the consumer joined and how many results arrived, at most once a second."""

    def __init__(self, echo: Callable[[str], None], health: HealthState, started: float) -> None:
        self._echo = echo
        self._health = health
        self._started = started
        self._joined = False
        self._last_count = -1
        self._last_said = started

    @property
    def guard_tripped(self) -> bool:
        """Whether the service's mass-revocation guard holds revocations back."""
        return self._health.guard_tripped

    def update(self, now: float, count: int, expected: int) -> None:
        """Report what changed since the last report."""
        if not self._joined and self._health.joined:
            self._joined = True
            self._echo(f"joined   the consumer group after {now - self._started:.1f} s")
        changed = count != self._last_count and count > 0
        if changed and (count >= expected or now - self._last_said >= 1.0):
            self._echo(f"results  {count}/{expected}")
            self._last_count, self._last_said = count, now
        elif now - self._last_said >= 3.0:
            self._echo(f"waiting  {count}/{expected} results ...")
            self._last_said = now


async def _results_while_running(
    service: asyncio.Task[None],
    audit: AuditReader,
    count: int,
    within: float,
    progress: _Progress,
) -> dict[tuple[int, int], AuditEvent]:
    """Wait for `count` audit results, reporting progress, failing fast if the service stops."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if service.done():
            service.result()
            raise DemoStalled(
                "demo: the service stopped before every event had a result; "
                "run it with --verbose to see why"
            )
        held = len(audit.results)
        if held < count and progress.guard_tripped:
            raise DemoCannotTell(
                f"demo: the mass-revocation guard of the policy tripped after {held} of {count} "
                "results and holds the rest until an operator releases it: the demo's promotions "
                "revoke more roles than its max_revocations lets through; raise it, or run the "
                "demo with the example policy"
            )
        progress.update(loop.time(), held, count)
        if held >= count:
            return audit.results
        if loop.time() > deadline:
            raise DemoStalled(
                f"demo: only {held} of {count} audit results after {within:.0f} s; "
                "run it with --verbose to see what the service is doing"
            )
        await audit.poll()
