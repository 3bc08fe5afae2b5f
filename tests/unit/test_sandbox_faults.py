"""Tests of the simulator's fault plan: scripts, probabilities, latency and the outage."""

from __future__ import annotations

import random

import pytest

from consumer.sandbox.faults import Fault, FaultPlan, LatePut


def test_faults_parse_from_status_codes_and_words() -> None:
    """A fault is named by its status code or its word, and knows its status."""
    assert Fault.parse(503) is Fault.UNAVAILABLE
    assert Fault.parse(" Reset ") is Fault.RESET
    assert Fault.UNAVAILABLE.status == 503
    assert Fault.TIMEOUT.status is None
    with pytest.raises(ValueError, match="boom"):
        Fault.parse("boom")


def test_scripted_faults_come_first_and_in_order() -> None:
    """The script is served one fault per request, then requests pass."""
    plan = FaultPlan()
    plan.script([503, "reset", Fault.TIMEOUT])
    assert [plan.next_fault() for _ in range(4)] == [
        Fault.UNAVAILABLE,
        Fault.RESET,
        Fault.TIMEOUT,
        None,
    ]


def test_probability_picks_faults_at_the_given_rate() -> None:
    """With a seeded generator, about `probability` of the requests fail, with `kind`."""
    plan = FaultPlan(rng=random.Random(7))
    plan.set_probability(0.25, Fault.BAD_GATEWAY)
    outcomes = [plan.next_fault() for _ in range(2000)]
    assert set(outcomes) == {None, Fault.BAD_GATEWAY}
    assert 400 <= outcomes.count(Fault.BAD_GATEWAY) <= 600


def test_outage_overrides_everything_until_cleared() -> None:
    """An outage answers 503 without consuming the script; clearing removes it all."""
    plan = FaultPlan()
    plan.script([500])
    plan.set_latency(0.5)
    plan.outage = True
    assert plan.next_fault() is Fault.UNAVAILABLE
    assert plan.scripted == (Fault.SERVER_ERROR,)
    plan.clear()
    assert (plan.next_fault(), plan.delay(), plan.outage) == (None, 0.0, False)


def test_delay_is_latency_plus_bounded_jitter() -> None:
    """The delay lies between the latency and the latency plus the jitter."""
    plan = FaultPlan(rng=random.Random(1))
    plan.set_latency(0.1, jitter_seconds=0.05)
    delays = [plan.delay() for _ in range(200)]
    assert all(0.1 <= d <= 0.15 for d in delays)
    assert max(delays) - min(delays) > 0.03


def test_bad_settings_are_refused() -> None:
    """Negative latency and a probability outside [0, 1] are refused."""
    plan = FaultPlan()
    with pytest.raises(ValueError, match="negative"):
        plan.set_latency(-1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        plan.set_probability(1.5)


def test_a_stuck_user_gets_503_on_its_own_path_only() -> None:
    """Requests about a stuck user get 503; other users, the list and cleared users pass."""
    plan = FaultPlan()
    plan.stuck_users.add("u-7:x")
    assert plan.stuck_fault("/scim/v2/Users/u-7%3Ax") is Fault.UNAVAILABLE
    assert plan.stuck_fault("/scim/v2/Users/u-8") is None
    assert plan.stuck_fault("/scim/v2/Users") is None
    plan.clear()
    assert plan.stuck_fault("/scim/v2/Users/u-7%3Ax") is None


def test_late_puts_hold_only_puts_on_their_user_and_are_spent() -> None:
    """A late-PUT hold applies to that user's PUTs only, `times` of them, then serving resumes."""
    plan = FaultPlan()
    plan.set_late_put("u-1", LatePut(2.0, times=2))
    assert plan.late_put("GET", "u-1") is None
    assert plan.late_put("PUT", "u-2") is None
    assert plan.late_put("PUT", None) is None
    first = plan.late_put("put", "u-1")
    assert first is not None
    assert first.seconds == 2.0
    assert plan.late_put("PUT", "u-1") is not None
    assert plan.late_put("PUT", "u-1") is None


def test_late_puts_refuse_bad_holds_and_are_cleared() -> None:
    """A negative hold or zero times is refused; `clear` forgets the holds."""
    plan = FaultPlan()
    with pytest.raises(ValueError, match="negative"):
        plan.set_late_put("u-1", LatePut(-1.0))
    with pytest.raises(ValueError, match="times"):
        plan.set_late_put("u-1", LatePut(1.0, times=0))
    plan.set_late_put("u-1", LatePut(1.0, times=None))
    plan.clear()
    assert plan.late_put("PUT", "u-1") is None
