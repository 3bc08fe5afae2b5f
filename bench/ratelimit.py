"""`ratelimit`: 1, 2 and 4 service processes sharing one tenant's rate limit.

The simulator throttles SCIM requests with a token bucket (`per_minute`, and each of `bursts`)
and answers excess requests 429 with `Retry-After` in whole seconds. 1, 2 and 4 real service
processes (`python -m consumer run`, one consumer group) work through a backlog large enough to
last, twice: with `SYNC_RATE_LIMIT_PER_MINUTE` set to `ceiling` (the members send in the slots of
the partitions they own) and without a ceiling (each member's `AdaptiveRateLimiter` finds the
limit by itself). Counts come from the simulator's request log, by the time each request arrived:
a window of `seconds` that starts `settle_seconds` after every instance reported ready, and the
whole run from the first SCIM request to the end of the window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.pipeline import create_run_topics
from bench.report import Table, cell
from bench.service_process import ServiceProcess
from bench.simulator_process import SimulatorProcess
from bench.workload import role_changes
from consumer.sandbox.broker import EmbeddedBroker
from consumer.sandbox.feed import produce

# Instances stopped together can take tens of seconds (see the README); give them time to
# exit by themselves, and count the ones that had to be killed.
STOP_WITHIN = 60.0


@dataclass(frozen=True)
class RateLimitOptions:
    """How the rate-limit measurement is run."""

    instances: tuple[int, ...] = (1, 2, 4)
    per_minute: float = 600.0
    bursts: tuple[int, ...] = (1, 10)
    # SYNC_RATE_LIMIT_PER_MINUTE of each run, 0 for none: a little under the tenant's limit, so
    # evenly spaced requests stay apart by more than a scheduling delay.
    ceilings: tuple[int, ...] = (570, 0)
    seconds: float = 30.0
    settle_seconds: float = 5.0
    users: int = 2000
    partitions: int = 4
    latency_ms: float = 15.0


@dataclass(frozen=True)
class Counts:
    """SCIM requests the simulator received in an interval, by answer."""

    seconds: float
    total: int
    ok: int
    throttled: int
    other: int

    @property
    def per_minute(self) -> float:
        """Requests received per minute."""
        return self.total / self.seconds * 60 if self.seconds > 0 else float("nan")

    @property
    def ok_per_minute(self) -> float:
        """Requests answered below 400 per minute."""
        return self.ok / self.seconds * 60 if self.seconds > 0 else float("nan")

    @property
    def throttled_share(self) -> float:
        """The share of requests answered 429, in percent."""
        return 100 * self.throttled / self.total if self.total else float("nan")


def count_requests(records: Sequence[dict[str, Any]], start: float, end: float) -> Counts:
    """Count the SCIM requests of a request log that arrived in [start, end)."""
    total = ok = throttled = other = 0
    for record in records:
        if not str(record["path"]).startswith("/scim"):
            continue
        if not start <= float(record["received_at"]) < end:
            continue
        total += 1
        status = record["status"]
        if status == 429:
            throttled += 1
        elif status is not None and status < 400:
            ok += 1
        else:
            other += 1
    return Counts(end - start, total, ok, throttled, other)


@dataclass(frozen=True)
class RateLimitResult:
    """One instance count: its measurement window and its whole run."""

    instances: int
    burst: int
    ceiling: int
    window: Counts
    whole: Counts
    ready_seconds: float
    stop_seconds: float
    killed: int


async def measure(
    broker: EmbeddedBroker, instances: int, burst: int, ceiling: int, options: RateLimitOptions
) -> RateLimitResult:
    """Run `instances` services against a fresh, throttled simulator and count its log."""
    topics = await create_run_topics(
        broker, f"ratelimit-{instances}-{burst}-{ceiling}", partitions=options.partitions
    )
    # One event per user: nothing to coalesce, so every event is a GET and a PUT.
    await produce(
        topics.bootstrap_servers,
        topics.input,
        role_changes(0, options.users, options.users, run=topics.run),
    )
    async with SimulatorProcess(users=options.users, latency_ms=options.latency_ms) as simulator:
        await simulator.set_rate_limit(options.per_minute, burst=burst)
        environment = {
            **topics.environment(),
            **simulator.environment(),
            "SYNC_RATE_LIMIT_PER_MINUTE": str(ceiling),
        }
        services = [ServiceProcess(environment) for _ in range(instances)]
        stop_seconds = float("nan")
        launched = time.perf_counter()
        try:
            for service in services:
                await service.start()
            await asyncio.gather(*(service.wait_ready(within=120.0) for service in services))
            ready_seconds = time.perf_counter() - launched
            await asyncio.sleep(options.settle_seconds)
            start = time.time()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + options.seconds
            while loop.time() < deadline:
                for service in services:
                    service.check_alive()
                await asyncio.sleep(min(1.0, max(0.0, deadline - loop.time())))
            end = time.time()
        finally:
            stopping = time.perf_counter()
            await asyncio.gather(*(service.stop(within=STOP_WITHIN) for service in services))
            stop_seconds = time.perf_counter() - stopping
        records = await simulator.requests()
    scim = [record for record in records if str(record["path"]).startswith("/scim")]
    first = min((float(record["received_at"]) for record in scim), default=start)
    return RateLimitResult(
        instances=instances,
        burst=burst,
        ceiling=ceiling,
        window=count_requests(records, start, end),
        whole=count_requests(records, first, end),
        ready_seconds=ready_seconds,
        stop_seconds=stop_seconds,
        killed=sum(service.killed for service in services),
    )


def table(results: list[RateLimitResult], options: RateLimitOptions) -> Table:
    """The rate-limit table."""
    made = Table(
        title="ratelimit: 1, 2 and 4 instances sharing one tenant's rate limit",
        description=(
            f"The simulator allows {options.per_minute:g} SCIM requests/min (token bucket of "
            f"{' or '.join(str(burst) for burst in options.bursts)}; 429 with Retry-After in "
            "whole seconds, at least 1). Each instance is a separate `python -m consumer run` "
            f"process, all in one consumer group on {options.partitions} partitions, with "
            f"{options.users:,} events (one per user) waiting. {options.latency_ms:g} ms "
            "injected latency. `ceiling` is SYNC_RATE_LIMIT_PER_MINUTE: with one, the members "
            "send in the time slots of the partitions they own; 0 is none, each member's "
            "adaptive limiter finds the limit by itself. % of limit = window requests/min "
            f"against the tenant's {options.per_minute:g}. Counted from the simulator's request "
            f"log: a {options.seconds:g} s window starting {options.settle_seconds:g} s after "
            "every instance was ready, and the whole run from the first SCIM request (which "
            "includes each limiter's start)."
        ),
        columns=[
            "bucket",
            "ceiling",
            "instances",
            "window: % of limit",
            "window: requests/min",
            "window: answered 2xx/min",
            "window: % 429",
            "window: other errors",
            "whole run: seconds",
            "whole run: requests/min",
            "whole run: answered 2xx/min",
            "whole run: % 429",
            "all ready after s",
            "SIGTERM to all exited s",
            f"killed after {STOP_WITHIN:g} s",
        ],
    )
    for result in results:
        window, whole = result.window, result.whole
        made.add(
            str(result.burst),
            str(result.ceiling),
            str(result.instances),
            cell(100 * window.per_minute / options.per_minute, 1),
            cell(window.per_minute, 0),
            cell(window.ok_per_minute, 0),
            cell(window.throttled_share, 1),
            cell(window.other),
            cell(whole.seconds, 0),
            cell(whole.per_minute, 0),
            cell(whole.ok_per_minute, 0),
            cell(whole.throttled_share, 1),
            cell(result.ready_seconds, 1),
            cell(result.stop_seconds, 1),
            cell(result.killed),
        )
    return made


async def results(broker: EmbeddedBroker, options: RateLimitOptions) -> list[RateLimitResult]:
    """Measure each bucket, ceiling and instance count, one after the other."""
    return [
        await measure(broker, count, burst, ceiling, options)
        for burst in options.bursts
        for ceiling in options.ceilings
        for count in options.instances
    ]


async def run(broker: EmbeddedBroker, options: RateLimitOptions) -> list[Table]:
    """Measure every case and make the table."""
    return [table(await results(broker, options), options)]
