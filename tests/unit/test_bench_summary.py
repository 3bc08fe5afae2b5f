"""Tests of the bench's summary and its sequential peer's pure parts: the ratios and the roles."""

from __future__ import annotations

from collections import Counter

from bench.peer import PeerOptions, PeerResult, Run
from bench.ratelimit import Counts, RateLimitOptions, RateLimitResult
from bench.sequential_peer import desired_roles
from bench.summary import Findings, summary
from bench.throughput import Phase, ThroughputResult
from bench.workload import role_change
from consumer.events import parse_event
from consumer.settings import HttpTransport


def peer_result() -> PeerResult:
    """The service at 400 events/s and 0.9 ms, the peer at 20 events/s and 3 ms."""
    service = Run(events=4000, seconds=10.0, cpu=3.6, simulator_cpu=5.0, outcomes={"synced": 4000})
    peer = Run(events=200, seconds=10.0, cpu=0.6, simulator_cpu=1.0, outcomes={"synced": 200})
    return PeerResult(service, peer, PeerOptions(concurrency=64, latency_ms=20.0))


def limit_result(instances: int, requests: int, throttled: int) -> RateLimitResult:
    """A rate-limit case with `requests` in a 60 s window, `throttled` of them answered 429."""
    window = Counts(60.0, requests, requests - throttled, throttled, 0)
    return RateLimitResult(instances, 1, 0, window, window, 5.0, 2.0, 0)


def test_littles_bound_is_concurrency_over_two_request_latencies() -> None:
    """64 slots at 2 x 20 ms per event finish at most 1,600 events/s; one slot at most 25."""
    result = peer_result()
    assert result.littles_bound == 1600.0
    assert result.peer_bound == 25.0
    assert result.service.rate == 400.0
    assert result.service.cpu_ms_per_event == 0.9


def test_the_summary_states_the_peer_ratios() -> None:
    """Against the peer: 20 x, 25 % of Little's bound, and both CPU figures per event."""
    table = summary(Findings(peer=peer_result()))
    assert table is not None
    values = {row[0]: row[1] for row in table.rows}
    assert values == {
        "events/s against the sequential peer, concurrency 64, 20 ms per request": (
            "20.0 x (400 against 20.0 events/s)"
        ),
        "share of Little's bound (64 / (2 x 20 ms) = 1,600 events/s)": (
            "25.0 % (the peer: 80 % of its own 25)"
        ),
        "service CPU per event, every event a write (burst of 4,000, concurrency 64)": (
            "0.90 ms (the peer: 3.00 ms)"
        ),
    }


def test_the_summary_reuses_the_rate_limit_results_per_instance_count() -> None:
    """1, 2 and 4 instances at 570, 560 and 550 of 600/min: 95 / 93 / 92 %, worst 429 share."""
    findings = Findings(
        ratelimit=[limit_result(4, 550, 11), limit_result(1, 570, 0), limit_result(2, 560, 5)],
        ratelimit_options=RateLimitOptions(per_minute=600.0),
    )
    table = summary(findings)
    assert table is not None
    assert table.rows == [
        (
            "share of the tenant's 600/min used by 1 / 2 / 4 instances, bucket 1, "
            "no ceiling (adaptive)",
            "95 / 93 / 92 % (at most 2.0 % answered 429)",
            "ratelimit",
        )
    ]


def test_the_summary_takes_the_folded_burst_of_the_aiohttp_transport_only() -> None:
    """Only the default transport's burst is quoted: 5,000 events at 2.5 s of CPU is 0.50 ms."""
    burst = Phase(5000, 3.0, Counter(superseded=4500, synced=500), [], [], 2.5, 1.0, 1.2)
    paced = Phase(1500, 15.0, Counter(synced=1500), [], [], 3.0, 1.0, 0.6)
    findings = Findings(
        throughput=[
            ThroughputResult(HttpTransport.AIOHTTP, 16, burst, paced, 100.0),
            ThroughputResult(HttpTransport.HTTPX, 16, burst, paced, 100.0),
        ]
    )
    table = summary(findings)
    assert table is not None
    assert [row[1:] for row in table.rows] == [("0.50 ms", "throughput")]
    assert "4,500 superseded" in table.rows[0][0]


def test_no_part_that_feeds_the_summary_ran_means_no_summary() -> None:
    """A run of parts that leave no findings (transport, classify) gets no summary table."""
    assert summary(Findings()) is None


def test_the_peer_writes_the_event_s_roles_primary_first() -> None:
    """The peer's roles are the event's own, primary first, with no catalog in between."""
    _, value = role_change(7, 5, run="t")
    event = parse_event(value)
    roles = desired_roles(event)
    assert [(role.value, role.primary) for role in roles] == [
        (event.desired_roles[0].role_id, True)
    ]
