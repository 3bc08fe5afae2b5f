"""The run's story in one table: the ratios the parts measured, gathered where they were measured.

Parts that feed it leave their results in a `Findings`; nothing is measured again here. A ratio
whose part did not run in this invocation is left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.peer import PeerResult
from bench.ratelimit import RateLimitOptions, RateLimitResult
from bench.report import Table, cell
from bench.throughput import ThroughputResult
from consumer.settings import HttpTransport


@dataclass
class Findings:
    """What the parts of one run found, for the summary."""

    peer: PeerResult | None = None
    throughput: list[ThroughputResult] = field(default_factory=list)
    ratelimit: list[RateLimitResult] = field(default_factory=list)
    ratelimit_options: RateLimitOptions | None = None


def _limit_rows(findings: Findings) -> Iterable[tuple[str, str, str]]:
    options = findings.ratelimit_options
    if options is None:
        return
    cases = sorted({(result.burst, result.ceiling) for result in findings.ratelimit})
    for burst, ceiling in cases:
        results = sorted(
            (r for r in findings.ratelimit if (r.burst, r.ceiling) == (burst, ceiling)),
            key=lambda result: result.instances,
        )
        counts = " / ".join(str(result.instances) for result in results)
        shares = " / ".join(
            cell(100 * result.window.per_minute / options.per_minute, 0) for result in results
        )
        worst = max(result.window.throttled_share for result in results)
        how = f"SYNC_RATE_LIMIT_PER_MINUTE={ceiling}" if ceiling else "no ceiling (adaptive)"
        yield (
            f"share of the tenant's {options.per_minute:g}/min used by {counts} instances, "
            f"bucket {burst}, {how}",
            f"{shares} % (at most {cell(worst, 1)} % answered 429)",
            "ratelimit",
        )


def _peer_rows(result: PeerResult) -> Iterable[tuple[str, str, str]]:
    options = result.options
    service, peer = result.service, result.peer
    yield (
        f"events/s against the sequential peer, concurrency {options.concurrency}, "
        f"{options.latency_ms:g} ms per request",
        f"{service.rate / peer.rate:.1f} x ({cell(service.rate, 0)} against "
        f"{cell(peer.rate, 1)} events/s)",
        "peer",
    )
    yield (
        f"share of Little's bound ({options.concurrency} / (2 x {options.latency_ms:g} ms) = "
        f"{cell(result.littles_bound, 0)} events/s)",
        f"{cell(100 * service.rate / result.littles_bound, 1)} % (the peer: "
        f"{cell(100 * peer.rate / result.peer_bound, 0)} % of its own "
        f"{cell(result.peer_bound, 0)})",
        "peer",
    )
    yield (
        f"service CPU per event, every event a write (burst of {service.events:,}, "
        f"concurrency {options.concurrency})",
        f"{cell(service.cpu_ms_per_event, 2)} ms (the peer: {cell(peer.cpu_ms_per_event, 2)} ms)",
        "peer",
    )


def _burst_rows(results: list[ThroughputResult]) -> Iterable[tuple[str, str, str]]:
    for result in results:
        if result.transport is not HttpTransport.AIOHTTP:
            continue
        burst = result.burst
        yield (
            f"service CPU per event, folded burst ({burst.events:,} events, concurrency "
            f"{result.concurrency}, {burst.outcomes['superseded']:,} superseded)",
            f"{cell(1000 * burst.service_cpu / burst.events, 2)} ms",
            "throughput",
        )


def summary(findings: Findings) -> Table | None:
    """The summary table, or None when no part that feeds it ran."""
    rows = [
        *(_peer_rows(findings.peer) if findings.peer is not None else ()),
        *_limit_rows(findings),
        *_burst_rows(findings.throughput),
    ]
    if not rows:
        return None
    made = Table(
        title="summary: the ratios of this run",
        description=(
            "Gathered from the parts above, as they measured them in this run (the `from` "
            "column names the part); nothing here was measured again."
        ),
        columns=["measure", "value", "from"],
    )
    for row in rows:
        made.add(*row)
    return made
