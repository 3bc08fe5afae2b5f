"""The membership lease: renewed by answered heartbeats and assignments, waited on by writes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from consumer.errors import ConfigurationError
from consumer.stream.lease import MembershipLease
from tests.conftest import ManualClock


def test_a_new_lease_holds_nothing_until_renewed(manual_clock: ManualClock) -> None:
    """Before any heartbeat or assignment no write may start."""
    lease = MembershipLease(session_timeout=10.0, margin=3.0, clock=manual_clock)
    assert not lease.holds()


def test_a_renewal_holds_for_the_session_less_the_margin_from_when_it_was_sent(
    manual_clock: ManualClock,
) -> None:
    """A heartbeat sent at t proves membership until t + session - margin, not longer."""
    lease = MembershipLease(session_timeout=10.0, margin=3.0, clock=manual_clock)
    sent = manual_clock.now
    manual_clock.advance(1.0)
    lease.renew(sent)
    assert lease.expires_at == sent + 7.0
    manual_clock.advance(5.9)
    assert lease.holds()
    manual_clock.advance(0.1)
    assert not lease.holds()


def test_an_older_proof_never_shortens_the_lease(manual_clock: ManualClock) -> None:
    """A heartbeat answered late (sent before a newer one) leaves the lease where it was."""
    lease = MembershipLease(session_timeout=10.0, margin=3.0, clock=manual_clock)
    lease.renew(manual_clock.now + 2.0)
    lease.renew(manual_clock.now)
    assert lease.expires_at == manual_clock.now + 9.0


def test_a_margin_as_long_as_the_session_is_refused() -> None:
    """A lease that could never hold is a programming error."""
    with pytest.raises(ValueError, match="margin"):
        MembershipLease(session_timeout=3.0, margin=3.0)


async def test_a_write_waits_while_the_lease_has_run_out_and_goes_once_renewed(
    manual_clock: ManualClock,
) -> None:
    """A paused member's write waits for the next answered heartbeat, not for the clock."""
    lease = MembershipLease(session_timeout=10.0, margin=3.0, clock=manual_clock)
    lease.renew(manual_clock.now)
    manual_clock.advance(30.0)  # woken after a pause
    waiting = asyncio.create_task(lease.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    lease.renew(manual_clock.now - 20.0)  # a heartbeat sent before the pause: proves nothing
    await asyncio.sleep(0)
    assert not waiting.done()
    lease.renew(manual_clock.now)
    await asyncio.wait_for(waiting, 1.0)
    assert lease.holds()


async def test_a_waiting_write_is_cancelled_by_a_revocation(manual_clock: ManualClock) -> None:
    """Cancelling the waiting work (as a revocation does) ends the wait, writing nothing."""
    lease = MembershipLease(session_timeout=10.0, margin=3.0, clock=manual_clock)
    waiting = asyncio.create_task(lease.wait())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not lease.holds()


async def test_watch_renews_with_each_heartbeat_the_coordinator_answers(
    manual_clock: ManualClock,
) -> None:
    """The coordinator's heartbeat renews the lease from its sending time when answered."""
    answers = [True, False]

    async def heartbeat() -> bool:
        manual_clock.advance(0.5)  # the round trip
        return answers.pop(0)

    coordinator = SimpleNamespace(_do_heartbeat=heartbeat)
    kafka: Any = SimpleNamespace(_coordinator=coordinator)
    lease = MembershipLease(session_timeout=10.0, margin=3.0, clock=manual_clock)
    lease.watch(kafka)
    sent = manual_clock.now
    assert await coordinator._do_heartbeat() is True
    assert lease.expires_at == sent + 7.0
    manual_clock.advance(1.0)
    assert await coordinator._do_heartbeat() is False
    assert lease.expires_at == sent + 7.0


def test_watch_refuses_a_consumer_without_the_heartbeat_to_watch() -> None:
    """An aiokafka that no longer has the method is a start-up error, never a silent lease."""
    lease = MembershipLease(session_timeout=10.0, margin=3.0)
    kafka: Any = SimpleNamespace(_coordinator=SimpleNamespace())
    with pytest.raises(ConfigurationError, match="_do_heartbeat"):
        lease.watch(kafka)


async def test_the_running_aiokafka_coordinator_has_the_heartbeat_the_lease_watches() -> None:
    """aiokafka's GroupCoordinator still heartbeats through a `_do_heartbeat` coroutine."""
    from aiokafka.consumer.group_coordinator import GroupCoordinator

    assert asyncio.iscoroutinefunction(GroupCoordinator._do_heartbeat)
