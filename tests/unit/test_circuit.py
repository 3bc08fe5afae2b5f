"""Tests of the circuit breaker's transitions, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from consumer.scim.circuit import CircuitBreaker, CircuitState, ProbeVerdict


class FakeTime:
    """A clock and a sleep that advances it, so waiting runs instantly."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class Changes(list[bool]):
    """Records what the breaker tells its listener."""

    def __call__(self, is_open: bool) -> None:
        self.append(is_open)


def breaker(time: FakeTime, changes: Changes | None = None) -> CircuitBreaker:
    """A breaker with the default thresholds on the fake clock."""
    return CircuitBreaker(on_change=changes, clock=time, sleep=time.sleep)


def trip(circuit: CircuitBreaker) -> None:
    """Ten failures in a row: enough to open a fresh breaker."""
    for _ in range(10):
        circuit.record_failure()


def test_starts_closed_and_allows_requests() -> None:
    """A new breaker is closed and lets requests through."""
    circuit = breaker(FakeTime())

    assert circuit.state is CircuitState.CLOSED
    assert circuit.is_open is False
    assert circuit.allow_request() is True


def test_too_few_calls_do_not_open() -> None:
    """Nine failures stay below the ten calls needed to judge."""
    changes = Changes()
    circuit = breaker(FakeTime(), changes)

    for _ in range(9):
        circuit.record_failure()

    assert circuit.state is CircuitState.CLOSED
    assert changes == []


def test_half_failures_over_the_minimum_open() -> None:
    """Five failures among ten calls reach the 0.5 ratio and open the circuit."""
    changes = Changes()
    circuit = breaker(FakeTime(), changes)

    for _ in range(5):
        circuit.record_success()
    for _ in range(5):
        circuit.record_failure()

    assert circuit.state is CircuitState.OPEN
    assert circuit.allow_request() is False
    assert changes == [True]


def test_failures_below_the_ratio_keep_it_closed() -> None:
    """Four failures in ten calls stay below the threshold."""
    circuit = breaker(FakeTime())

    for _ in range(6):
        circuit.record_success()
    for _ in range(4):
        circuit.record_failure()

    assert circuit.state is CircuitState.CLOSED


def test_window_keeps_only_the_latest_outcomes() -> None:
    """Successes older than the last 20 outcomes do not dilute a run of failures."""
    changes = Changes()
    circuit = breaker(FakeTime(), changes)
    for _ in range(40):
        circuit.record_success()

    for _ in range(9):
        circuit.record_failure()
    before_tenth = circuit.state
    circuit.record_failure()

    assert before_tenth is CircuitState.CLOSED
    assert circuit.state is CircuitState.OPEN
    assert changes == [True]


def test_old_outcomes_expire() -> None:
    """Failures older than the time window are forgotten."""
    time = FakeTime()
    circuit = breaker(time)
    for _ in range(9):
        circuit.record_failure()
    time.now += 61.0

    circuit.record_failure()

    assert circuit.state is CircuitState.CLOSED


def test_open_grants_one_probe_after_the_interval() -> None:
    """Five seconds after opening, exactly one probe is allowed and the state is half-open."""
    time = FakeTime()
    circuit = breaker(time)
    trip(circuit)

    time.now += 4.9
    early = circuit.allow_request()
    time.now += 0.1
    probe = circuit.allow_request()
    second = circuit.allow_request()

    assert (early, probe, second) == (False, True, False)
    assert circuit.state is CircuitState.HALF_OPEN


def test_successful_probe_closes() -> None:
    """A successful probe closes the circuit and tells the listener."""
    time = FakeTime()
    changes = Changes()
    circuit = breaker(time, changes)
    trip(circuit)
    time.now += 5.0
    assert circuit.allow_request() is True

    circuit.record_success()

    assert circuit.state is CircuitState.CLOSED
    assert circuit.allow_request() is True
    assert changes == [True, False]


def test_closing_clears_the_window() -> None:
    """After closing, earlier failures do not count towards opening again."""
    time = FakeTime()
    circuit = breaker(time)
    trip(circuit)
    time.now += 5.0
    circuit.allow_request()
    circuit.record_success()

    for _ in range(9):
        circuit.record_failure()

    assert circuit.state is CircuitState.CLOSED


def test_failed_probe_reopens_with_a_longer_interval() -> None:
    """A failed probe reopens the circuit and doubles the wait, without telling the listener."""
    time = FakeTime()
    changes = Changes()
    circuit = breaker(time, changes)
    trip(circuit)
    time.now += 5.0
    circuit.allow_request()

    circuit.record_failure()

    assert circuit.state is CircuitState.OPEN
    assert circuit.probe_interval == 10.0
    time.now += 9.9
    assert circuit.allow_request() is False
    time.now += 0.1
    assert circuit.allow_request() is True
    assert changes == [True]


def test_probe_interval_grows_to_its_maximum_and_resets_on_close() -> None:
    """Repeated failed probes double the interval up to 60 s; closing resets it to 5 s."""
    time = FakeTime()
    circuit = breaker(time)
    trip(circuit)
    intervals = []
    for _ in range(6):
        time.now += circuit.probe_interval
        assert circuit.allow_request() is True
        circuit.record_failure()
        intervals.append(circuit.probe_interval)

    time.now += circuit.probe_interval
    circuit.allow_request()
    circuit.record_success()

    assert intervals == [10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    assert circuit.probe_interval == 5.0


def test_late_outcomes_while_open_change_nothing() -> None:
    """Answers to requests sent before the circuit opened neither close nor extend it."""
    time = FakeTime()
    circuit = breaker(time)
    trip(circuit)

    circuit.record_success()
    circuit.record_failure()
    time.now += 5.0

    assert circuit.state is CircuitState.OPEN
    assert circuit.allow_request() is True


def test_lost_probe_is_replaced_after_the_probe_timeout() -> None:
    """A probe that never reports back does not keep the circuit half-open for ever."""
    time = FakeTime()
    circuit = breaker(time)
    trip(circuit)
    time.now += 5.0
    assert circuit.allow_request() is True

    time.now += 59.0
    blocked = circuit.allow_request()
    time.now += 1.0
    replaced = circuit.allow_request()

    assert (blocked, replaced) == (False, True)


def test_failing_listener_does_not_break_the_breaker() -> None:
    """An exception in the listener is logged, not raised into the request path."""

    def broken(is_open: bool) -> None:
        raise RuntimeError("listener down")

    circuit = CircuitBreaker(on_change=broken, clock=FakeTime())

    for _ in range(10):
        circuit.record_failure()

    assert circuit.state is CircuitState.OPEN


async def test_wait_returns_at_once_when_closed() -> None:
    """Waiting on a closed circuit does not wait."""
    time = FakeTime()
    circuit = breaker(time)

    await circuit.wait_until_closed_or_probe()

    assert time.now == 0.0


async def test_wait_returns_when_the_probe_is_due() -> None:
    """Waiting on an open circuit returns when the probe interval has passed."""
    time = FakeTime()
    circuit = breaker(time)
    trip(circuit)

    await circuit.wait_until_closed_or_probe()

    assert time.now == pytest.approx(5.0)
    assert circuit.allow_request() is True


async def test_wait_returns_when_the_probe_closes_the_circuit() -> None:
    """A waiter blocked behind a probe in flight is released when the probe succeeds."""
    time = FakeTime()
    circuit = CircuitBreaker(clock=time)  # real sleep: only the close may release the waiter
    trip(circuit)
    time.now += 5.0
    assert circuit.allow_request() is True
    waiter = asyncio.create_task(circuit.wait_until_closed_or_probe())
    await asyncio.sleep(0)
    assert not waiter.done()

    circuit.record_success()
    await asyncio.wait_for(waiter, timeout=5.0)

    assert circuit.state is CircuitState.CLOSED


async def test_wait_until_allowed_grants_the_probe_to_one_caller() -> None:
    """Of two callers waiting on an open circuit, one gets the probe and the other waits on."""
    time = FakeTime()
    circuit = CircuitBreaker(clock=time)
    trip(circuit)
    time.now += 5.0

    first = asyncio.create_task(circuit.wait_until_allowed())
    second = asyncio.create_task(circuit.wait_until_allowed())
    await asyncio.wait_for(first, timeout=5.0)
    await asyncio.sleep(0)
    second_waiting = not second.done()
    circuit.record_success()
    await asyncio.wait_for(second, timeout=5.0)

    assert second_waiting is True
    assert circuit.state is CircuitState.CLOSED


def test_invalid_thresholds_are_refused() -> None:
    """min_calls above the window or a ratio outside (0, 1] is refused."""
    with pytest.raises(ValueError, match="min_calls"):
        CircuitBreaker(window=5, min_calls=10)
    with pytest.raises(ValueError, match="failure_ratio"):
        CircuitBreaker(failure_ratio=0.0)


class ScriptedProbe:
    """A probe that fails, then is forbidden, a given number of times each, then works."""

    def __init__(self, failures: int, forbidden: int = 0) -> None:
        self.failures = failures
        self.forbidden = forbidden
        self.calls = 0

    async def __call__(self) -> ProbeVerdict:
        self.calls += 1
        await asyncio.sleep(0)
        if self.calls <= self.failures:
            raise ConnectionError("still down")
        if self.calls <= self.failures + self.forbidden:
            return ProbeVerdict.FORBIDDEN
        return ProbeVerdict.WORKS


async def test_own_probe_closes_the_circuit_with_no_sender_at_all() -> None:
    """With a probe given, the breaker probes on its own timer and closes without any sender."""
    time = FakeTime()
    changes = Changes()
    circuit = breaker(time, changes)
    probe = ScriptedProbe(failures=2)
    circuit.probe_with(probe)

    trip(circuit)
    waiter = asyncio.create_task(circuit.wait_until_allowed())
    await asyncio.wait_for(waiter, timeout=5.0)
    await circuit.aclose()

    assert probe.calls == 3
    assert circuit.state is CircuitState.CLOSED
    assert changes == [True, False]
    # 5 s, then 10 s and 20 s after the two failed probes: the interval doubles.
    assert time.now == pytest.approx(35.0)
    assert waiter.result() is False


async def test_a_forbidden_probe_keeps_it_open_without_backing_off() -> None:
    """A 403 to the probe ends the outage's backoff but not the open state: the next probe
    follows at the base interval, and the circuit closes only when a probe works."""
    time = FakeTime()
    changes = Changes()
    circuit = breaker(time, changes)
    probe = ScriptedProbe(failures=2, forbidden=3)
    circuit.probe_with(probe)

    trip(circuit)
    waiter = asyncio.create_task(circuit.wait_until_allowed())
    await asyncio.wait_for(waiter, timeout=5.0)
    await circuit.aclose()

    assert probe.calls == 6
    assert circuit.state is CircuitState.CLOSED
    assert changes == [True, False]
    # 5 s, 10 s and 20 s for the outage; then the forbidden probes go back to 5 s each.
    assert time.now == pytest.approx(5 + 10 + 20 + 5 + 5 + 5)


async def test_probes_forbidden_for_ever_keep_it_open_for_ever() -> None:
    """Credentials refused everything: the circuit never closes, probing at the base interval."""
    time = FakeTime()
    changes = Changes()
    circuit = breaker(time, changes)
    fiftieth = asyncio.Event()
    calls = 0

    async def forbidden_probe() -> ProbeVerdict:
        nonlocal calls
        calls += 1
        if calls == 50:
            fiftieth.set()
        await asyncio.sleep(0)
        return ProbeVerdict.FORBIDDEN

    circuit.probe_with(forbidden_probe)
    trip(circuit)
    await asyncio.wait_for(fiftieth.wait(), timeout=5.0)
    await circuit.aclose()

    assert circuit.is_open is True
    assert changes == [True]
    assert circuit.probe_interval == 5.0
    # Each probe came the base interval after the one before, never a doubled one.
    assert time.now <= (calls + 1) * 5.0


async def test_own_probe_keeps_senders_waiting_while_open() -> None:
    """While the breaker probes for itself, no sender is granted a request, even when due."""
    time = FakeTime()
    circuit = CircuitBreaker(clock=time)  # real sleep: the probe never comes due by itself
    circuit.probe_with(ScriptedProbe(failures=0))
    trip(circuit)
    time.now += 5.0

    granted = circuit.allow_request()
    await circuit.aclose()

    assert granted is False
    assert circuit.state is CircuitState.OPEN


async def test_own_probe_that_hangs_times_out_and_another_follows() -> None:
    """A probe that never answers is given up after probe_timeout, and the next one is sent."""
    time = FakeTime()
    circuit = CircuitBreaker(clock=time, sleep=time.sleep, probe_timeout=0.05)
    calls = 0
    second = asyncio.Event()

    async def hanging_probe() -> ProbeVerdict:
        nonlocal calls
        calls += 1
        if calls == 2:
            second.set()
        await asyncio.Event().wait()
        return ProbeVerdict.WORKS

    circuit.probe_with(hanging_probe)
    trip(circuit)
    await asyncio.wait_for(second.wait(), timeout=5.0)
    state = circuit.state
    await circuit.aclose()

    assert calls == 2
    assert state is CircuitState.HALF_OPEN
    # The hung probe counted as a failure: the interval doubled from 5 s.
    assert circuit.probe_interval == 10.0


def test_an_abandoned_sender_probe_makes_the_next_probe_due_at_once() -> None:
    """A sender holding the probe that is cancelled reopens the circuit with a probe due now."""
    time = FakeTime()
    circuit = breaker(time)
    trip(circuit)
    time.now += 5.0
    assert circuit.allow_request() is True
    assert circuit.state is CircuitState.HALF_OPEN

    circuit.abandon_probe()

    assert circuit.state is CircuitState.OPEN
    assert circuit.allow_request() is True
