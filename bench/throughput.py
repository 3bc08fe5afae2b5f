"""`throughput`: events/s and latency of the real service process, per transport and concurrency.

Each configuration gets a fresh simulator process (seeded users, fixed injected latency), fresh
topics on the embedded Tansu broker and a fresh `python -m consumer run`. Two phases:

- burst: once the service is ready, the whole batch is produced at once; events/s is the batch
  divided by the time from the start of producing to the last audit seen. Several events of one
  user queued together are coalesced (all but the newest audited `superseded`, never written),
  so SCIM writes/s is reported beside events/s; burst latencies include the time events waited
  inside the service.
- paced: then events arrive at a fixed rate, well below capacity, so each user's events are
  seconds apart; its `latency_ms` percentiles (from the audit events: fetched -> audited) are
  the service's latency under a steady load.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from bench.audit import AuditTally
from bench.machine import CpuSample
from bench.pipeline import create_run_topics, produce_paced, wait_for_audits
from bench.report import Table, cell
from bench.service_process import ServiceProcess
from bench.simulator_process import SimulatorProcess
from bench.stats import cpu_seconds, percentile
from bench.workload import role_changes
from consumer.sandbox.broker import EmbeddedBroker
from consumer.sandbox.feed import produce
from consumer.settings import HttpTransport


@dataclass(frozen=True)
class ThroughputOptions:
    """How big the throughput measurement is."""

    events: int = 5000
    users: int = 500
    partitions: int = 4
    concurrency: tuple[int, ...] = (16, 64)
    transports: tuple[HttpTransport, ...] = (HttpTransport.AIOHTTP, HttpTransport.HTTPX)
    latency_ms: float = 15.0
    paced_rate: float = 100.0
    paced_seconds: float = 15.0
    within: float = 600.0


@dataclass(frozen=True)
class Phase:
    """What one phase of one configuration measured."""

    events: int
    seconds: float
    outcomes: Counter[str]
    latencies_ms: list[float]
    end_to_end_ms: list[float]
    service_cpu: float
    simulator_cpu: float
    machine_cores_busy: float

    def latency(self, fraction: float) -> float:
        """A `latency_ms` percentile of this phase."""
        return percentile(self.latencies_ms, fraction)


@dataclass(frozen=True)
class ThroughputResult:
    """Both phases of one configuration."""

    transport: HttpTransport
    concurrency: int
    burst: Phase
    paced: Phase
    paced_rate: float


async def _phase(
    tally: AuditTally,
    service: ServiceProcess,
    simulator: SimulatorProcess,
    produced: int,
    started: tuple[float, float, float, CpuSample],
    within: float,
) -> Phase:
    """Wait for the phase's audits and measure it from `started` (wall, CPUs, machine)."""
    wall, service_cpu, simulator_cpu, machine = started
    await wait_for_audits(tally, produced, services=[service], within=within)
    return Phase(
        events=len(tally.latencies_ms),
        seconds=tally.last_new_at - wall,
        outcomes=tally.outcomes,
        latencies_ms=tally.latencies_ms,
        end_to_end_ms=tally.end_to_end_ms,
        service_cpu=cpu_seconds(service.pid) - service_cpu,
        simulator_cpu=cpu_seconds(simulator.pid) - simulator_cpu,
        machine_cores_busy=CpuSample.now().busy_cores_since(machine),
    )


def _mark(
    service: ServiceProcess, simulator: SimulatorProcess
) -> tuple[float, float, float, CpuSample]:
    return (
        time.perf_counter(),
        cpu_seconds(service.pid),
        cpu_seconds(simulator.pid),
        CpuSample.now(),
    )


async def measure(
    broker: EmbeddedBroker, transport: HttpTransport, concurrency: int, options: ThroughputOptions
) -> ThroughputResult:
    """Run both phases against a fresh simulator, fresh topics and a fresh service process."""
    topics = await create_run_topics(
        broker, f"throughput-{transport.value}-{concurrency}", partitions=options.partitions
    )
    async with SimulatorProcess(users=options.users, latency_ms=options.latency_ms) as simulator:
        service = ServiceProcess(
            {
                **topics.environment(),
                **simulator.environment(),
                "SYNC_MAX_CONCURRENCY": str(concurrency),
                "CXONE_HTTP_TRANSPORT": transport.value,
            }
        )
        await service.start()
        try:
            await service.wait_ready()
            async with AuditTally(topics.bootstrap_servers, topics.audit) as tally:
                started = _mark(service, simulator)
                sent = await produce(
                    topics.bootstrap_servers,
                    topics.input,
                    role_changes(0, options.events, options.users, run=topics.run),
                )
                burst = await _phase(tally, service, simulator, sent, started, options.within)
                tally.start_phase()
                started = _mark(service, simulator)
                sent += await produce_paced(
                    topics,
                    start=sent,
                    users=options.users,
                    rate=options.paced_rate,
                    seconds=options.paced_seconds,
                    sent_at=tally.sent_at,
                )
                paced = await _phase(tally, service, simulator, sent, started, options.within)
        finally:
            await service.stop()
    return ThroughputResult(transport, concurrency, burst, paced, options.paced_rate)


def _spread(values: list[float]) -> str:
    """p50 / p95 / p99 / max, in whole milliseconds."""
    points = [percentile(values, fraction) for fraction in (0.5, 0.95, 0.99, 1.0)]
    return " / ".join(cell(point, 0) for point in points)


def tables(results: list[ThroughputResult], options: ThroughputOptions) -> list[Table]:
    """The burst table and the paced-latency table."""
    burst = Table(
        title="throughput: a burst through the real service",
        description=(
            f"`python -m consumer run` on the embedded Tansu broker ({options.partitions} "
            f"partitions) and the simulator in its own process ({options.latency_ms:g} ms "
            f"injected latency per request); {options.events:,} events over {options.users} "
            "users produced at once after the service was ready. events/s = events / (last "
            "audit seen - start of producing). CPU figures are read from /proc for the burst."
        ),
        columns=[
            "transport",
            "SYNC_MAX_CONCURRENCY",
            "events/s",
            "seconds",
            "synced",
            "superseded",
            "unchanged",
            "other",
            "SCIM writes/s",
            "service CPU ms/event",
            "service CPU %",
            "simulator CPU %",
            "machine busy cores",
            "latency p50 / p99 ms (incl. queueing)",
        ],
    )
    paced = Table(
        title="throughput: latency at a steady rate",
        description=(
            f"Right after the burst, the same service got {options.paced_rate:g} events/s for "
            f"{options.paced_seconds:g} s (a user's events {options.users / options.paced_rate:g} "
            "s apart). `latency_ms` is the audit event's own figure: from the record being "
            "fetched by the service to its result (before the audit event is published). "
            "End-to-end is the audit's `processed_at` minus the wall-clock time the bench handed "
            "the event to its producer, so it adds the time spent in Kafka before the fetch. "
            f"Each SCIM request waits the {options.latency_ms:g} ms injected latency, and an "
            "event takes a GET and a PUT."
        ),
        columns=[
            "transport",
            "SYNC_MAX_CONCURRENCY",
            "events",
            "outcomes",
            "latency_ms p50 / p95 / p99 / max",
            "end-to-end ms p50 / p95 / p99 / max",
            "service CPU ms/event",
            "service CPU %",
        ],
    )
    for result in results:
        phase = result.burst
        counted = sum(phase.outcomes[name] for name in ("synced", "superseded", "unchanged"))
        burst.add(
            result.transport.value,
            str(result.concurrency),
            cell(phase.events / phase.seconds, 0),
            cell(phase.seconds, 1),
            cell(phase.outcomes["synced"]),
            cell(phase.outcomes["superseded"]),
            cell(phase.outcomes["unchanged"]),
            cell(phase.events - counted),
            cell(phase.outcomes["synced"] / phase.seconds, 0),
            cell(phase.service_cpu / phase.events * 1000, 2),
            cell(100 * phase.service_cpu / phase.seconds, 0),
            cell(100 * phase.simulator_cpu / phase.seconds, 0),
            cell(phase.machine_cores_busy, 2),
            f"{cell(phase.latency(0.5), 0)} / {cell(phase.latency(0.99), 0)}",
        )
        phase = result.paced
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(phase.outcomes.items()))
        paced.add(
            result.transport.value,
            str(result.concurrency),
            cell(phase.events),
            outcomes,
            _spread(phase.latencies_ms),
            _spread(phase.end_to_end_ms),
            cell(phase.service_cpu / phase.events * 1000, 2),
            cell(100 * phase.service_cpu / phase.seconds, 0),
        )
    return [burst, paced]


async def results(broker: EmbeddedBroker, options: ThroughputOptions) -> list[ThroughputResult]:
    """Measure every transport at every concurrency, one configuration after the other."""
    return [
        await measure(broker, transport, concurrency, options)
        for concurrency in options.concurrency
        for transport in options.transports
    ]


async def run(broker: EmbeddedBroker, options: ThroughputOptions) -> list[Table]:
    """Measure every configuration and make the tables."""
    return tables(await results(broker, options), options)
