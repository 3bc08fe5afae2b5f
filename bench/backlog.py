"""`backlog`: the service's memory while it works through a large backlog.

The whole backlog is produced to the input topic before the service starts, so the service meets
it all at once. Its RSS (VmRSS in /proc/<pid>/status) is sampled every `sample_interval` seconds
from start to the last audit, and VmHWM (the kernel's peak) is read at the end. The flow limits
that pause partitions with too many unfinished records are what should keep memory flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from bench.audit import AuditTally
from bench.machine import CpuSample
from bench.pipeline import create_run_topics
from bench.report import Table, cell
from bench.service_process import ServiceProcess
from bench.simulator_process import SimulatorProcess
from bench.stats import cpu_seconds, memory_kib
from bench.workload import role_changes
from consumer.sandbox.broker import EmbeddedBroker
from consumer.sandbox.feed import produce

MIB = 1024.0
# The simulator keeps every request (body included) in its log; the backlog does not need it.
CLEAR_LOG_EVERY_SECONDS = 10.0


@dataclass(frozen=True)
class BacklogOptions:
    """How big the backlog measurement is."""

    records: int = 200_000
    users: int = 1000
    partitions: int = 4
    concurrency: int = 16
    latency_ms: float = 15.0
    time_limit: float = 900.0
    sample_interval: float = 0.5


@dataclass
class Sample:
    """One RSS reading."""

    elapsed: float
    rss_kib: int
    audited: int


@dataclass
class BacklogRun:
    """Everything the backlog run observed."""

    produce_seconds: float = 0.0
    ready_after: float = float("nan")
    finished_after: float = float("nan")
    audited: int = 0
    hwm_kib: int = 0
    service_cpu: float = float("nan")
    machine_cores_busy: float = float("nan")
    timed_out: bool = False
    samples: list[Sample] = field(default_factory=list)


async def _sample(
    service: ServiceProcess, tally: AuditTally, run: BacklogRun, every: float
) -> None:
    started = time.perf_counter()
    while True:
        rss = memory_kib(service.pid).get("VmRSS")
        if rss is not None:
            run.samples.append(Sample(time.perf_counter() - started, rss, tally.distinct))
        await asyncio.sleep(every)


async def _note_ready(service: ServiceProcess, run: BacklogRun, started: float) -> None:
    await service.wait_ready(within=120.0)
    run.ready_after = time.perf_counter() - started


async def _clear_log(simulator: SimulatorProcess) -> None:
    while True:
        await asyncio.sleep(CLEAR_LOG_EVERY_SECONDS)
        await simulator.clear_requests()


async def measure(broker: EmbeddedBroker, options: BacklogOptions) -> tuple[BacklogRun, AuditTally]:
    """Produce the backlog, then run the service on it and watch its memory."""
    run = BacklogRun()
    topics = await create_run_topics(broker, "backlog", partitions=options.partitions)
    async with SimulatorProcess(users=options.users, latency_ms=options.latency_ms) as simulator:
        began = time.perf_counter()
        await produce(
            topics.bootstrap_servers,
            topics.input,
            role_changes(0, options.records, options.users, run=topics.run),
        )
        run.produce_seconds = time.perf_counter() - began
        service = ServiceProcess(
            {
                **topics.environment(),
                **simulator.environment(),
                "SYNC_MAX_CONCURRENCY": str(options.concurrency),
            }
        )
        async with AuditTally(topics.bootstrap_servers, topics.audit) as tally:
            machine = CpuSample.now()
            started = time.perf_counter()
            await service.start()
            helpers = [
                asyncio.create_task(_sample(service, tally, run, options.sample_interval)),
                asyncio.create_task(_note_ready(service, run, started)),
                asyncio.create_task(_clear_log(simulator)),
            ]
            try:
                while await tally.poll() < options.records:
                    service.check_alive()
                    if time.perf_counter() - started > options.time_limit:
                        run.timed_out = True
                        break
                run.finished_after = tally.last_new_at - started
                run.audited = tally.distinct
                memory = memory_kib(service.pid)
                run.samples.append(
                    Sample(time.perf_counter() - started, memory.get("VmRSS", 0), tally.distinct)
                )
                run.hwm_kib = memory.get("VmHWM", 0)
                run.service_cpu = cpu_seconds(service.pid)
                run.machine_cores_busy = CpuSample.now().busy_cores_since(machine)
            finally:
                for helper in helpers:
                    helper.cancel()
                for helper in helpers:
                    with contextlib.suppress(asyncio.CancelledError):
                        await helper
                await service.stop()
    return run, tally


def _rss_at(run: BacklogRun, audited: int) -> Sample | None:
    """The first sample taken once at least `audited` records had an audit."""
    return next((sample for sample in run.samples if sample.audited >= audited), None)


def tables(run: BacklogRun, tally: AuditTally, options: BacklogOptions) -> list[Table]:
    """The summary table and the RSS-over-progress table."""
    peak = max(run.samples, key=lambda sample: sample.rss_kib, default=None)
    after_ready = run.finished_after - run.ready_after
    summary = Table(
        title="backlog: memory with a large backlog",
        description=(
            f"{options.records:,} events over {options.users:,} users "
            f"({options.partitions} partitions) were produced before `python -m consumer run` "
            f"started (SYNC_MAX_CONCURRENCY {options.concurrency}, aiohttp transport, simulator "
            f"in its own process with {options.latency_ms:g} ms injected latency). RSS is "
            f"sampled from /proc/<pid>/status every {options.sample_interval:g} s from process "
            "start until every record had an audit event (distinct partition and offset)."
        ),
        columns=["measure", "value"],
    )
    outcomes = ", ".join(f"{name} {count:,}" for name, count in sorted(tally.outcomes.items()))
    rows = [
        ("records audited", f"{run.audited:,} of {options.records:,}"),
        ("outcomes", outcomes),
        ("duplicate audits (redeliveries)", cell(tally.duplicates)),
        ("producing the backlog took", f"{cell(run.produce_seconds, 1)} s"),
        ("service start to ready (/readyz)", f"{cell(run.ready_after, 1)} s"),
        ("service start to last audit", f"{cell(run.finished_after, 1)} s"),
        ("events/s after ready", cell(run.audited / after_ready if after_ready > 0 else None, 0)),
        ("RSS when ready", _mib(_rss_at_time(run, run.ready_after))),
        ("peak sampled VmRSS", _mib(peak.rss_kib if peak else None)),
        ("VmRSS at the end", _mib(run.samples[-1].rss_kib if run.samples else None)),
        ("VmHWM at the end (kernel's peak RSS)", _mib(run.hwm_kib)),
        ("service CPU", f"{cell(run.service_cpu, 0)} s"),
        ("machine busy cores (all processes)", cell(run.machine_cores_busy, 2)),
    ]
    for name, value in rows:
        summary.add(name, value)
    if run.timed_out:
        summary.notes.append(f"The time limit of {options.time_limit:g} s was reached first.")
    timeline = Table(
        title="backlog: RSS as the backlog drains",
        description="The first RSS sample taken once the given share of records had an audit.",
        columns=["audited", "seconds since start", "VmRSS MiB"],
    )
    ready = next((sample for sample in run.samples if sample.elapsed >= run.ready_after), None)
    if ready is not None:
        timeline.add(
            f"{ready.audited:,} (ready)", cell(ready.elapsed, 1), cell(ready.rss_kib / MIB, 0)
        )
    for share in (0.1, 0.25, 0.5, 0.75, 0.9, 1.0):
        sample = _rss_at(run, int(share * options.records))
        if sample is not None:
            timeline.add(f"{share:.0%}", cell(sample.elapsed, 1), cell(sample.rss_kib / MIB, 0))
    return [summary, timeline]


def _rss_at_time(run: BacklogRun, elapsed: float) -> int | None:
    sample = next((sample for sample in run.samples if sample.elapsed >= elapsed), None)
    return sample.rss_kib if sample else None


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / MIB:,.0f} MiB"


async def run(broker: EmbeddedBroker, options: BacklogOptions) -> list[Table]:
    """Run the backlog measurement once."""
    result, tally = await measure(broker, options)
    return tables(result, tally, options)
