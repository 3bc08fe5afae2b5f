"""`peer`: the service against the per-event flow done right, sequentially, on the same parts.

One broker and one simulator process (`latency_ms` injected per request, `events` seeded users)
serve both runs:

- the service: `python -m consumer run` at SYNC_MAX_CONCURRENCY `concurrency`, `events` events
  (one per user, so each is a GET and a PUT: nothing folds) produced at once after it is ready;
  events/s = events / (last audit seen - start of producing); CPU from /proc over the burst.
- the sequential peer (`bench/sequential_peer.py`): `peer_events` more events (one per user,
  the next role of each, so each is a write again) waiting in a topic of its own; it processes
  them one at a time (GET, PUT, publish and wait, commit) and times itself from its first record
  in hand to its last commit, wall clock and CPU.

Little's bound for the service is `concurrency / (2 x latency)` events/s: with every slot busy
and each event two requests of `latency` each, no more can finish. The peer's is one slot's.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass

from bench.audit import AuditTally
from bench.pipeline import RunTopics, create_run_topics, wait_for_audits
from bench.report import Table, cell
from bench.service_process import ROOT, ServiceProcess
from bench.simulator_process import SimulatorProcess
from bench.stats import cpu_seconds
from bench.workload import role_changes
from consumer.sandbox.broker import EmbeddedBroker
from consumer.sandbox.feed import produce


@dataclass(frozen=True)
class PeerOptions:
    """How big the comparison is."""

    events: int = 3000
    peer_events: int = 400
    concurrency: int = 64
    latency_ms: float = 20.0
    partitions: int = 4
    within: float = 600.0


@dataclass(frozen=True)
class Run:
    """One side's figures: events, seconds, CPU seconds, and the simulator's CPU seconds."""

    events: int
    seconds: float
    cpu: float
    simulator_cpu: float
    outcomes: dict[str, int]

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / self.seconds

    @property
    def cpu_ms_per_event(self) -> float:
        """CPU milliseconds per event."""
        return 1000 * self.cpu / self.events


@dataclass(frozen=True)
class PeerResult:
    """The service's run and the peer's, with what bounds them."""

    service: Run
    peer: Run
    options: PeerOptions

    @property
    def littles_bound(self) -> float:
        """The most events/s `concurrency` slots can finish at two requests per event."""
        return self.options.concurrency / (2 * self.options.latency_ms / 1000)

    @property
    def peer_bound(self) -> float:
        """The most events/s one slot can finish at two requests per event."""
        return 1 / (2 * self.options.latency_ms / 1000)


async def _service_run(
    broker: EmbeddedBroker, simulator: SimulatorProcess, options: PeerOptions
) -> Run:
    topics = await create_run_topics(broker, "peer-service", partitions=options.partitions)
    service = ServiceProcess(
        {
            **topics.environment(),
            **simulator.environment(),
            "SYNC_MAX_CONCURRENCY": str(options.concurrency),
        }
    )
    await service.start()
    try:
        await service.wait_ready()
        async with AuditTally(topics.bootstrap_servers, topics.audit) as tally:
            started = time.perf_counter()
            cpu, simulator_cpu = cpu_seconds(service.pid), cpu_seconds(simulator.pid)
            sent = await produce(
                topics.bootstrap_servers,
                topics.input,
                role_changes(0, options.events, options.events, run=topics.run),
            )
            await wait_for_audits(tally, sent, services=[service], within=options.within)
            return Run(
                events=sent,
                seconds=tally.last_new_at - started,
                cpu=cpu_seconds(service.pid) - cpu,
                simulator_cpu=cpu_seconds(simulator.pid) - simulator_cpu,
                outcomes=dict(tally.outcomes),
            )
    finally:
        await service.stop()


async def _peer_run(
    broker: EmbeddedBroker, simulator: SimulatorProcess, options: PeerOptions
) -> Run:
    topics: RunTopics = await create_run_topics(
        broker, "peer-sequential", partitions=options.partitions
    )
    # Events after the service's: each user's next role, so each is a write again.
    sent = await produce(
        topics.bootstrap_servers,
        topics.input,
        role_changes(options.events, options.peer_events, options.events, run=topics.run),
    )
    simulator_cpu = cpu_seconds(simulator.pid)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sequential_peer",
        f"--bootstrap-servers={topics.bootstrap_servers}",
        f"--input={topics.input}",
        f"--audit={topics.audit}",
        f"--group={topics.group}",
        f"--records={sent}",
        cwd=ROOT,
        env={**os.environ, **simulator.environment()},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), options.within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"the sequential peer exited with {process.returncode}")
    counts = json.loads(output.decode().strip().splitlines()[-1])
    return Run(
        events=int(counts.pop("records")),
        seconds=float(counts.pop("seconds")),
        cpu=float(counts.pop("cpu_seconds")),
        simulator_cpu=cpu_seconds(simulator.pid) - simulator_cpu,
        outcomes={name: int(count) for name, count in counts.items()},
    )


async def measure(broker: EmbeddedBroker, options: PeerOptions) -> PeerResult:
    """The service's burst, then the peer's run, against one simulator process."""
    async with SimulatorProcess(users=options.events, latency_ms=options.latency_ms) as simulator:
        service = await _service_run(broker, simulator, options)
        peer = await _peer_run(broker, simulator, options)
    return PeerResult(service, peer, options)


def table(result: PeerResult) -> Table:
    """The comparison table."""
    options = result.options
    made = Table(
        title="peer: the service against a sequential consumer",
        description=(
            f"One simulator process ({options.latency_ms:g} ms injected per request) and one "
            "broker serve both. The service (`python -m consumer run`, SYNC_MAX_CONCURRENCY "
            f"{options.concurrency}) gets {options.events:,} events, one per user, produced at "
            "once after it is ready: events/s = events / (last audit seen - start of "
            "producing). The sequential peer (`bench/sequential_peer.py`: GET, PUT, publish "
            "and wait for the acknowledgement, commit, one event at a time) gets "
            f"{options.peer_events:,} more, waiting, and times itself from its first record "
            "to its last commit. Every event is a GET and a PUT. Little's bound = concurrency "
            f"/ (2 requests x {options.latency_ms:g} ms). CPU is each process's own, user + "
            "system."
        ),
        columns=[
            "consumer",
            "concurrency",
            "events",
            "outcomes",
            "events/s",
            "Little's bound events/s",
            "% of Little's bound",
            "CPU ms/event",
            "simulator CPU % of one core",
        ],
    )
    for name, run, concurrency, bound in (
        ("service", result.service, options.concurrency, result.littles_bound),
        ("sequential peer", result.peer, 1, result.peer_bound),
    ):
        made.add(
            name,
            str(concurrency),
            cell(run.events),
            ", ".join(f"{outcome} {count}" for outcome, count in sorted(run.outcomes.items())),
            cell(run.rate, 1),
            cell(bound, 0),
            cell(100 * run.rate / bound, 1),
            cell(run.cpu_ms_per_event, 2),
            cell(100 * run.simulator_cpu / run.seconds, 0),
        )
    made.notes.append(
        f"The service finished {result.service.rate / result.peer.rate:.1f} times as many "
        "events per second as the sequential peer."
    )
    return made


async def run(broker: EmbeddedBroker, options: PeerOptions) -> tuple[list[Table], PeerResult]:
    """Measure both and make the table; the result also feeds the run's summary."""
    result = await measure(broker, options)
    return [table(result)], result
