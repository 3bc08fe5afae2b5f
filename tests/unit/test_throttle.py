"""Tests of the adaptive rate limiter, on a fake clock, including a simulated shared tenant."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass, field

import pytest

from consumer.scim.throttle import AdaptiveRateLimiter
from consumer.share import Share


class FakeTime:
    """A clock and a sleep that advances it, so pacing runs instantly and deterministically."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(time: FakeTime, **options: float) -> AdaptiveRateLimiter:
    """A limiter on the fake clock."""
    return AdaptiveRateLimiter(clock=time, sleep=time.sleep, **options)  # type: ignore[arg-type]


def sends_within(limit: AdaptiveRateLimiter, time: FakeTime, seconds: float) -> int:
    """How many sends the limiter allows when asked as often as possible for `seconds`."""
    sent = 0
    end = time.now + seconds
    while time.now < end:
        wait = limit.try_acquire()
        if wait <= 0:
            sent += 1
            limit.on_success()
        else:
            time.now += wait
    return sent


async def test_acquire_paces_at_the_ceiling() -> None:
    """At 60 per minute with no burst, ten sends take nine seconds of waiting."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=60, burst=1)

    granted = [await limit.acquire() for _ in range(10)]

    assert granted == [float(second) for second in range(10)]
    assert sum(time.slept) == pytest.approx(9.0)


def test_ceiling_is_never_exceeded() -> None:
    """With a 600/min ceiling and unlimited demand, a minute allows at most 600 plus the burst."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=600, burst=3)

    sent = sends_within(limit, time, 60.0)

    assert 600 <= sent <= 603
    assert limit.current_rate_per_minute == pytest.approx(600)


def test_no_ceiling_starts_unpaced() -> None:
    """Without a ceiling nothing is paced until the first 429."""
    time = FakeTime()
    limit = limiter(time)

    waits = [limit.try_acquire() for _ in range(1000)]

    assert waits == [0.0] * 1000
    assert limit.current_rate_per_minute == math.inf


def test_first_429_without_ceiling_halves_the_measured_rate() -> None:
    """The first 429 after unpaced sending sets the rate to half of what was really sent."""
    time = FakeTime()
    limit = limiter(time)
    for _ in range(400):
        assert limit.try_acquire() == 0.0
        time.now += 0.01

    limit.on_throttled(None)

    # 100 sends per second for four seconds, measured over the last two or so.
    assert limit.current_rate_per_minute == pytest.approx(3000, rel=0.05)


def test_retry_after_blocks_every_send_until_it_passes() -> None:
    """After a 429 with Retry-After 5, nothing is sent for five seconds."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=600)

    limit.on_throttled(5.0)

    assert limit.try_acquire() == pytest.approx(5.0)
    time.now = 4.9
    assert limit.try_acquire() == pytest.approx(0.1)
    time.now = 5.0
    assert limit.try_acquire() == 0.0


async def test_acquire_waits_out_retry_after() -> None:
    """acquire() called during a Retry-After returns only once it has passed."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=600)
    limit.on_throttled(3.0)

    granted = await limit.acquire()

    assert granted == pytest.approx(3.0)


def test_retry_after_is_capped() -> None:
    """An absurd Retry-After blocks no longer than the configured maximum."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=600, max_retry_after_seconds=120)

    limit.on_throttled(86_400.0)

    assert limit.try_acquire() == pytest.approx(120.0)


def test_burst_of_429s_cuts_once() -> None:
    """Twenty 429s arriving together from one overload halve the rate once."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=600)
    sends_within(limit, time, 10.0)

    for _ in range(20):
        limit.on_throttled(None)

    # Half of what the meter saw go out, which is the ceiling give or take its smoothing.
    assert limit.current_rate_per_minute == pytest.approx(300, rel=0.05)


@pytest.mark.parametrize(
    ("share", "kept"),
    [
        (None, 0.5),
        (Share.of({0, 1}, 4), 0.5),
        (Share.of({0, 1, 2, 3}, 4), 0.8),
        (Share.whole(), 0.8),
    ],
    ids=["no assignment yet", "half the partitions", "every partition", "a one-partition topic"],
)
def test_a_member_that_owns_every_partition_cuts_gently(share: Share | None, kept: float) -> None:
    """The group's only sender keeps 0.8 of its rate on a 429; one of several halves it."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=600)
    if share is not None:
        limit.set_share(share)
    sends_within(limit, time, 10.0)

    limit.on_throttled(None)

    assert limit.current_rate_per_minute == pytest.approx(600 * kept, rel=0.05)


def test_a_member_that_loses_partitions_halves_again() -> None:
    """A rebalance that brings a second member back to halving on the next 429."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=600)
    limit.set_share(Share.whole())
    limit.set_share(Share.of({1}, 2))
    sends_within(limit, time, 10.0)

    limit.on_throttled(None)

    assert limit.current_rate_per_minute == pytest.approx(300, rel=0.05)


def test_a_member_grows_by_its_share_of_the_partitions() -> None:
    """After the same cut, a member with 1 of 4 partitions regains sqrt(1/2) of what one with 2
    does: the more members, the slower each probes."""
    gained = []
    for owned in ({0}, {0, 1}):
        time = FakeTime()
        limit = limiter(time, ceiling_per_minute=600)
        limit.set_share(Share.of(owned, 4))
        sends_within(limit, time, 10.0)
        limit.on_throttled(None)
        cut = limit.current_rate_per_minute
        sends_within(limit, time, 20.0)
        gained.append(limit.current_rate_per_minute - cut)

    assert gained[0] > 0
    assert gained[0] == pytest.approx(gained[1] * math.sqrt(0.5), rel=0.1)


def test_429_after_the_cool_down_cuts_again() -> None:
    """Without send times, a 429 more than the cool-down after a cut cuts again."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=600)
    sends_within(limit, time, 10.0)
    limit.on_throttled(None)
    after_first = limit.current_rate_per_minute
    sends_within(limit, time, 1.5)

    limit.on_throttled(None)

    assert limit.current_rate_per_minute == pytest.approx(after_first / 2, rel=0.05)


def test_429_for_a_request_sent_before_the_cut_is_ignored() -> None:
    """With send times, only 429s for requests sent after the last cut cut again."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=600)
    sends_within(limit, time, 10.0)
    sent_before = time.now - 0.5
    limit.on_throttled(None, sent_at=sent_before)
    sends_within(limit, time, 5.0)
    before = limit.current_rate_per_minute

    limit.on_throttled(None, sent_at=sent_before)
    unchanged = limit.current_rate_per_minute
    limit.on_throttled(None, sent_at=time.now - 0.1)

    assert unchanged == before
    assert limit.current_rate_per_minute == pytest.approx(before / 2, rel=0.05)


def test_a_cut_after_a_retry_after_pause_cuts_the_allowance_not_the_pause() -> None:
    """Sends held back by a `Retry-After` do not count as the rate that drew the next 429."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=600)
    sends_within(limit, time, 10.0)
    limit.on_throttled(3.0, sent_at=time.now)
    allowed = limit.current_rate_per_minute
    # Three seconds of pause, then half a second of sends at the allowed rate: the meter's
    # window holds mostly the pause.
    sends_within(limit, time, 3.5)

    limit.on_throttled(None, sent_at=time.now)

    assert allowed == pytest.approx(600 * 0.975 / 2, rel=0.01)
    assert limit.current_rate_per_minute == pytest.approx(allowed / 2, rel=0.05)


def test_rate_never_falls_below_the_floor() -> None:
    """However many separate overloads, the rate stays at or above the floor."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=600, floor_per_minute=6)

    for _ in range(30):
        limit.on_throttled(None)
        time.now += 2.0

    assert limit.current_rate_per_minute == pytest.approx(6.0)


def test_successes_grow_the_rate_back_to_the_ceiling_and_no_further() -> None:
    """After a cut, sustained successes restore the rate, which then stays at the ceiling."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=600)
    sends_within(limit, time, 10.0)
    limit.on_throttled(None)

    sends_within(limit, time, 40.0)
    partly = limit.current_rate_per_minute
    sends_within(limit, time, 300.0)

    assert 300 < partly < 600
    assert limit.current_rate_per_minute == pytest.approx(600)


def test_idle_limiter_does_not_grow() -> None:
    """Successes at a small fraction of the allowed rate do not raise it."""
    time = FakeTime()
    limit = limiter(time, ceiling_per_minute=6000)
    sends_within(limit, time, 5.0)
    limit.on_throttled(None)
    allowed = limit.current_rate_per_minute
    time.now += 10.0

    for _ in range(100):
        time.now += 1.0
        assert limit.try_acquire() == 0.0
        limit.on_success()

    assert limit.current_rate_per_minute == allowed


def test_invalid_options_are_refused() -> None:
    """A negative ceiling, a zero burst or a factor outside (0, 1) is refused."""
    with pytest.raises(ValueError, match="ceiling"):
        AdaptiveRateLimiter(ceiling_per_minute=-1)
    with pytest.raises(ValueError, match="burst"):
        AdaptiveRateLimiter(burst=0)
    with pytest.raises(ValueError, match="decrease_factor"):
        AdaptiveRateLimiter(decrease_factor=1.0)


@dataclass
class Tenant:
    """CXone's limit as a token bucket: 429 with a whole-second Retry-After when empty."""

    per_minute: float
    capacity: float
    tokens: float = 0.0
    updated: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = self.capacity

    def admit(self, now: float) -> float | None:
        """None when the request is served, else the Retry-After of its 429."""
        rate = self.per_minute / 60
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return float(math.ceil((1 - self.tokens) / rate))


@dataclass(frozen=True)
class Step:
    """One thing that happens to a request: a worker asks, the tenant admits, the answer returns."""

    kind: str
    instance: int
    sent: float = 0.0
    retry_after: float | None = None


@dataclass
class Simulation:
    """Instances with their own limiters and a few concurrent workers each, sharing one tenant."""

    instances: int
    workers: int
    tenant: Tenant
    latency: float = 0.05
    ceiling_per_minute: float = 0.0
    warm_up: float = 120.0
    # Each limiter told it owns this many of 4 partitions (None: never told, as before a join).
    partitions_each: int | None = None
    now: float = 0.0
    served: int = 0
    throttled: int = 0
    queue: list[tuple[float, int, Step]] = field(default_factory=list)

    def run(self, seconds: float, seed: int) -> None:
        """Run the discrete-event simulation for `seconds` of simulated time."""
        rng = random.Random(seed)
        limiters = [
            AdaptiveRateLimiter(ceiling_per_minute=self.ceiling_per_minute, clock=lambda: self.now)
            for _ in range(self.instances)
        ]
        if self.partitions_each is not None:
            for limit in limiters:
                limit.set_share(Share.of(range(self.partitions_each), 4))

        order = itertools.count()

        def later(delay: float, step: Step) -> None:
            heapq.heappush(self.queue, (self.now + delay, next(order), step))

        def hop() -> float:
            return self.latency / 2 * (0.5 + rng.random())

        for instance in range(self.instances):
            for _ in range(self.workers):
                later(rng.random() * 0.1, Step("ask", instance))
        while self.queue and self.queue[0][0] <= seconds:
            self.now, _, step = heapq.heappop(self.queue)
            limit = limiters[step.instance]
            if step.kind == "ask":
                wait = limit.try_acquire()
                if wait > 0:
                    later(wait, step)
                else:
                    later(hop(), Step("arrive", step.instance, sent=self.now))
            elif step.kind == "arrive":
                retry_after = self.tenant.admit(self.now)
                later(hop(), Step("answer", step.instance, step.sent, retry_after))
            else:
                counted = self.now > self.warm_up
                if step.retry_after is None:
                    limit.on_success()
                    self.served += counted
                else:
                    limit.on_throttled(step.retry_after, sent_at=step.sent)
                    self.throttled += counted
                later(0.0, Step("ask", step.instance))

    @property
    def throttled_fraction(self) -> float:
        """The share of answers after warm-up that were 429s."""
        return self.throttled / (self.served + self.throttled)

    @property
    def served_per_minute(self) -> float:
        """Requests served per minute after warm-up."""
        return self.served / ((self.now - self.warm_up) / 60)


@pytest.mark.parametrize(
    ("instances", "workers", "latency", "ceiling"),
    [(4, 8, 0.05, 0.0), (8, 4, 0.05, 0.0), (2, 32, 0.5, 0.0), (4, 8, 0.05, 6000.0)],
)
def test_instances_converge_on_an_unannounced_tenant_limit(
    instances: int, workers: int, latency: float, ceiling: float
) -> None:
    """Limiters sharing a 600/min tenant find it: under 2% 429s and over 85% of it served."""
    tenant = Tenant(per_minute=600, capacity=10)
    simulation = Simulation(instances, workers, tenant, latency=latency, ceiling_per_minute=ceiling)

    simulation.run(seconds=600.0, seed=7)

    assert simulation.throttled_fraction < 0.02
    assert 0.85 * 600 < simulation.served_per_minute <= 600 + 10


@pytest.mark.parametrize(
    ("instances", "partitions_each"), [(1, 4), (2, 2), (4, 1)], ids=["alone", "two", "four"]
)
def test_a_group_without_a_ceiling_uses_90_percent_of_a_bursty_limit(
    instances: int, partitions_each: int
) -> None:
    """Members told their shares: over 90 % of a 600/min tenant (bucket of 10), under 1 % 429."""
    tenant = Tenant(per_minute=600, capacity=10)
    simulation = Simulation(
        instances, 8, tenant, latency=0.03, warm_up=60.0, partitions_each=partitions_each
    )

    simulation.run(seconds=600.0, seed=11)

    assert simulation.throttled_fraction < 0.01
    assert 0.9 * 600 < simulation.served_per_minute <= 600 + 10
