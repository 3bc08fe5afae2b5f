"""`demo` and `sandbox`: the whole service on one laptop, on an embedded broker and a simulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from consumer.events import AuditEvent, Outcome
from consumer.sandbox.broker import EmbeddedBroker, resolve_tansu_binary
from consumer.sandbox.feed import AuditReader, produce
from consumer.sandbox.samples import follow_ups, promotions, seed_users, user_id
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


@asynccontextmanager
async def sandbox(tansu_bin: str | None, *, users: int = 40) -> AsyncIterator[Sandbox]:
    """Start the broker and the simulator, seed agents and create the topics."""
    simulator = CxoneSimulator(DEMO_CREDENTIALS)
    seed_users(simulator, users)
    # A little latency, as a real tenant has, so concurrency and coalescing show.
    simulator.set_latency(0.01, jitter_seconds=0.02)
    async with (
        EmbeddedBroker(resolve_tansu_binary(tansu_bin)) as broker,
        SimulatorServer(simulator) as server,
    ):
        await broker.create_topics([INPUT_TOPIC, AUDIT_TOPIC, DLQ_TOPIC], partitions=PARTITIONS)
        yield Sandbox(broker, server)


async def run_demo(
    *, policy_file: Path, tansu_bin: str | None, echo: Callable[[str], None], within: float = 120.0
) -> Counter[str]:
    """Feed the sample events through the real service and summarise the outcomes."""
    from consumer.service import Tuning, run_service

    waves = [promotions(), follow_ups()]
    total = sum(len(wave) for wave in waves)
    async with sandbox(tansu_bin) as box:
        echo(f"broker   {box.broker.bootstrap_servers} (embedded Tansu)")
        echo(f"CXone    {box.server.scim_base_url} (simulator)")
        before = box.simulator.get_user(user_id(2))
        environment = {name.lower(): value for name, value in box.environment(policy_file).items()}
        settings = load_settings(**environment, metrics_port=0, sync_max_concurrency=8)
        stop = asyncio.Event()
        service = asyncio.create_task(
            run_service(settings, stop, tuning=Tuning(metrics_host="127.0.0.1"))
        )
        try:
            async with AuditReader(box.broker.bootstrap_servers, AUDIT_TOPIC) as audit:
                expected = 0
                for wave in waves:
                    await produce(
                        box.broker.bootstrap_servers, INPUT_TOPIC, [(r.key, r.value) for r in wave]
                    )
                    echo(f"fed      {len(wave)} events ({wave[0].label}, ...) to {INPUT_TOPIC}")
                    expected += len(wave)
                    results = await _results_while_running(service, audit, expected, within)
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await service
        after = box.simulator.get_user(user_id(2))
    by_offset = sorted(
        results.values(), key=lambda e: (e.data.source.partition, e.data.source.offset)
    )
    _print_summary(echo, records_total=total, results=by_offset)
    _print_preserved(echo, before, after)
    return Counter(event.data.outcome.value for event in by_offset)


async def _results_while_running(
    service: asyncio.Task[None], audit: AuditReader, count: int, within: float
) -> dict[tuple[int, int], AuditEvent]:
    """Wait for `count` audit results, failing fast if the service stops first."""
    waiting = asyncio.create_task(audit.wait_for_results(count, within=within))
    done, _ = await asyncio.wait({service, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if service in done:
        waiting.cancel()
        service.result()
        raise RuntimeError("the service stopped before every event had a result")
    return waiting.result()


def _print_summary(
    echo: Callable[[str], None], *, records_total: int, results: list[AuditEvent]
) -> None:
    counts = Counter(event.data.outcome.value for event in results)
    echo("")
    echo(f"{records_total} events in, {len(results)} audit results out")
    for outcome in Outcome:
        if counts[outcome.value]:
            echo(f"  {outcome.value:<11} {counts[outcome.value]:>4}")
    notable = [e for e in results if e.data.outcome not in (Outcome.SYNCED,)]
    if notable:
        echo("")
        echo("Not simply synced:")
    for event in notable:
        data = event.data
        flag = "  ESCALATION" if data.escalation else ""
        why = data.reason or data.detail or ""
        echo(f"  {data.user_id or '-':<10} {data.outcome.value:<10} {why}{flag}")


def _print_preserved(
    echo: Callable[[str], None], before: dict[str, object], after: dict[str, object]
) -> None:
    echo("")
    echo(f"{user_id(2)} after the sync: roles changed, everything else kept:")
    for attribute in ("name", "emails", "phoneNumbers", "title"):
        kept = "kept" if before.get(attribute) == after.get(attribute) else "CHANGED"
        echo(f"  {attribute:<13} {kept}")
    nice = "urn:ietf:params:scim:schemas:extension:nice:2.0:User"
    echo(f"  {'NICE extension':<13} {'kept' if before.get(nice) == after.get(nice) else 'CHANGED'}")
    roles = after.get("roles") or []
    assert isinstance(roles, list)
    echo("  roles         " + ", ".join(str(role.get("value")) for role in roles))
