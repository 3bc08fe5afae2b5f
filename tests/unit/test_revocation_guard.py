"""The mass-revocation guard: a sliding window that trips and stays tripped until released, and
the gate that holds revocations while it is tripped and says how to release them."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from consumer.catalog import parse_policy
from consumer.revocation_gate import RevocationGate, build_gate
from consumer.revocation_guard import RevocationGuard
from tests.conftest import ManualClock
from tests.integration.harness import wait_until
from tests.unit.test_catalog import document


def test_revocations_up_to_the_limit_proceed() -> None:
    """Exactly max_revocations inside the window all proceed."""
    guard = RevocationGuard(max_revocations=3, window_seconds=60)
    assert [guard.record(now) for now in (0.0, 1.0, 2.0)] == [True, True, True]
    assert guard.count_in_window(2.0) == 3
    assert not guard.tripped


def test_one_more_than_the_limit_trips_the_guard() -> None:
    """The revocation past the limit is refused and trips the guard."""
    guard = RevocationGuard(max_revocations=2, window_seconds=60)
    guard.record(0.0)
    guard.record(1.0)
    assert guard.record(2.0) is False
    assert guard.tripped
    assert guard.count_in_window(2.0) == 2


def test_tripped_guard_stays_tripped_after_the_window_passes() -> None:
    """Once tripped, time alone does not let revocations through again."""
    guard = RevocationGuard(max_revocations=1, window_seconds=10)
    guard.record(0.0)
    guard.record(1.0)
    assert guard.record(1000.0) is False
    assert guard.tripped


def test_release_clears_the_window_and_untrips() -> None:
    """After a release the guard counts from zero and lets revocations through."""
    guard = RevocationGuard(max_revocations=1, window_seconds=10)
    guard.record(0.0)
    guard.record(1.0)
    guard.release()
    assert not guard.tripped
    assert guard.count_in_window(1.0) == 0
    assert guard.record(1.0) is True


def test_old_revocations_leave_the_window() -> None:
    """A revocation older than the window no longer counts."""
    guard = RevocationGuard(max_revocations=2, window_seconds=10)
    guard.record(0.0)
    guard.record(5.0)
    assert guard.count_in_window(9.9) == 2
    assert guard.count_in_window(10.0) == 1
    assert guard.record(10.0) is True
    assert guard.count_in_window(10.0) == 2


def test_a_batch_larger_than_the_limit_trips_at_once() -> None:
    """Recording many revocations at once counts them all."""
    guard = RevocationGuard(max_revocations=50, window_seconds=300)
    assert guard.record(0.0, revocations=40) is True
    assert guard.record(1.0, revocations=11) is False
    assert guard.tripped


def test_zero_revocations_proceed_without_counting() -> None:
    """Recording nothing is allowed and leaves the count alone."""
    guard = RevocationGuard(max_revocations=1, window_seconds=10)
    assert guard.record(0.0, revocations=0) is True
    assert guard.count_in_window(0.0) == 0


@pytest.mark.parametrize(("max_revocations", "window_seconds"), [(0, 10.0), (1, 0.0), (1, -5.0)])
def test_nonsense_limits_are_refused(max_revocations: int, window_seconds: float) -> None:
    """A guard that could never let anything through, or has no window, is a ValueError."""
    with pytest.raises(ValueError, match="must be"):
        RevocationGuard(max_revocations, window_seconds)


def test_negative_revocations_are_refused() -> None:
    """A negative count is a programming error."""
    with pytest.raises(ValueError, match="must not be negative"):
        RevocationGuard(1, 10).record(0.0, revocations=-1)


@given(
    st.integers(1, 5),
    st.floats(1, 50),
    st.lists(st.tuples(st.floats(0, 10), st.integers(0, 3)), max_size=30),
)
def test_never_more_than_the_limit_proceed_inside_any_window(
    max_revocations: int, window: float, steps: list[tuple[float, int]]
) -> None:
    """Whatever the arrivals, the revocations let through in any window never exceed the limit."""
    guard = RevocationGuard(max_revocations, window)
    now = 0.0
    passed: list[tuple[float, int]] = []
    for gap, count in steps:
        now += gap
        if guard.record(now, count):
            passed.append((now, count))
        in_window = sum(n for at, n in passed if now - at < window)
        assert in_window <= max_revocations
        assert guard.count_in_window(now) == in_window


async def test_a_tripped_guard_logs_how_to_release_with_and_without_a_token(
    manual_clock: ManualClock,
) -> None:
    """The guard.tripped line names the authenticated release and, without ADMIN_TOKEN, restart."""
    gate = RevocationGate(RevocationGuard(1, 60.0), clock=manual_clock)
    assert await gate.admit() is False
    with capture_logs() as logs:
        held = asyncio.create_task(gate.admit())
        await wait_until(lambda: bool(logs), within=5, what="the guard to trip")
        assert held.done() is False
        assert gate.release() is True
        assert await held is True
    [tripped] = [entry for entry in logs if entry["event"] == "guard.tripped"]
    assert tripped["log_level"] == "error"
    assert "POST /guard/release" in tripped["action"]
    assert "Authorization: Bearer <ADMIN_TOKEN>" in tripped["action"]
    assert "ADMIN_TOKEN unset" in tripped["action"]
    assert "restart the service" in tripped["action"]


async def test_the_gate_built_from_the_policy_carries_its_limits(manual_clock: ManualClock) -> None:
    """The policy file's guard (2 per 300 s) lets 2 through per window and holds the third."""
    guard = {"max_revocations": 2, "window_seconds": 300}
    gate = build_gate(parse_policy(document(mass_revocation_guard=guard)), clock=manual_clock)
    assert await gate.admit() is False
    manual_clock.advance(300)
    # Had the first revocation still counted, the second of these would wait for a release.
    assert [await asyncio.wait_for(gate.admit(), 5) for _ in range(2)] == [False, False]
    held = asyncio.create_task(gate.admit())
    await wait_until(lambda: gate.tripped, within=5, what="the guard to trip")
    assert held.done() is False
    assert gate.release() is True
    assert await held is True


async def test_a_policy_without_a_guard_builds_a_gate_that_never_holds() -> None:
    """Without mass_revocation_guard the gate lets every revocation through at once."""
    gate = build_gate(parse_policy(document()))
    assert [await gate.admit() for _ in range(100)] == [False] * 100
    assert gate.tripped is False
