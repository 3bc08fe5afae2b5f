"""The guard's budget shared by a consumer group: split by partition, carried across rebalances."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from consumer.revocation_gate import RevocationGate
from consumer.revocation_guard import RevocationGuard
from consumer.share import Share
from tests.conftest import ManualClock
from tests.integration.harness import wait_until


class Ledger:
    """The guard topic as a dict: what each partition spent, as last written."""

    def __init__(self) -> None:
        self.entries: dict[int, list[float]] = {}
        self.writes: list[dict[int, list[float]]] = []
        self.reads = 0
        self.readable = asyncio.Event()
        self.readable.set()

    async def read(self, partitions: Iterable[int]) -> dict[int, list[float]]:
        """What each partition spent (empty when never written)."""
        await self.readable.wait()
        self.reads += 1
        return {partition: list(self.entries.get(partition, [])) for partition in partitions}

    async def write(self, spends: Mapping[int, Iterable[float]]) -> None:
        """Record what each partition spent."""
        written = {partition: list(times) for partition, times in spends.items()}
        self.entries.update(written)
        self.writes.append(written)


Step = tuple[str, int, float]


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, int, int, float, list[object]]:
    """A group, a limit, and rebalances and revocations in any order."""
    total = draw(st.integers(1, 8))
    members = draw(st.integers(1, 4))
    limit = draw(st.integers(1, 10))
    window = draw(st.floats(1.0, 50.0))
    assignment = st.lists(st.integers(0, members - 1), min_size=total, max_size=total)
    step = st.one_of(
        st.tuples(st.just("rebalance"), assignment),
        st.tuples(st.just("revoke"), st.integers(0, members - 1), st.floats(0.0, 10.0)),
    )
    return total, members, limit, window, draw(st.lists(step, max_size=60))


@settings(max_examples=300)
@given(histories())
def test_the_group_never_lets_more_than_the_limit_through_in_any_window(
    history: tuple[int, int, int, float, list[object]],
) -> None:
    """Whatever the rebalances and arrivals, the group's revocations in any window stay within it.

    Each member's guard is reassigned at every rebalance with what its new partitions spent, as
    the gate does from the ledger; every charge is written to the ledger before it counts.
    """
    total, members, limit, window, steps = history
    ledger: dict[int, list[float]] = {}
    guards = [RevocationGuard(limit, window) for _ in range(members)]
    owner_of = [0] * total
    for member, guard in enumerate(guards):
        guard.reassign(Share.of((p for p in range(total) if owner_of[p] == member), total))
    now = 0.0
    passed: list[float] = []
    for step in steps:
        if step[0] == "rebalance":
            owner_of = list(step[1])  # type: ignore[call-overload]
            for member, guard in enumerate(guards):
                share = Share.of((p for p in range(total) if owner_of[p] == member), total)
                guard.reassign(share, {p: ledger.get(p, []) for p in share.owned})
            continue
        _, member, gap = step  # type: ignore[misc]
        now += gap
        charged = guards[member].charge(now)
        if charged is not None:
            ledger.update({p: list(times) for p, times in charged.items()})
            passed.append(now)
        assert sum(1 for at in passed if now - at < window) <= limit


def test_a_new_owner_counts_what_the_partition_spent_before_it() -> None:
    """Partition 1 spent its one revocation with its old owner: the new owner has no room there."""
    old, new = RevocationGuard(3, 60.0), RevocationGuard(3, 60.0)
    old.reassign(Share.of({0, 1, 2, 3}, 4))
    charged = old.charge(10.0, 2)
    assert charged == {0: (10.0,), 1: (10.0,)}
    new.reassign(Share.of({1, 3}, 4), carried=charged)
    assert (new.budget, new.count_in_window(11.0)) == (1, 1)
    assert new.record(11.0) is False
    assert new.tripped is True


def test_a_carried_spend_leaves_the_window_on_time() -> None:
    """A spend carried over from the old owner expires a window after it was made, not later."""
    guard = RevocationGuard(1, 60.0)
    guard.reassign(Share.of({0}, 2), carried={0: [10.0]})
    assert guard.count_in_window(69.9) == 1
    assert guard.record(70.0) is True


def test_a_kept_partition_keeps_its_own_history_over_the_ledger() -> None:
    """What the member itself spent on a partition it keeps is not replaced by an older entry."""
    guard = RevocationGuard(4, 60.0)
    guard.reassign(Share.of({0, 1}, 2))
    guard.charge(5.0, 2)
    guard.reassign(Share.of({0}, 2), carried={0: []})
    assert guard.spends(0) == (5.0,)
    assert guard.count_in_window(6.0) == 1


def test_a_member_without_budget_trips_at_its_first_revocation() -> None:
    """Three revocations over twelve partitions: a member owning partitions 1-3 has none."""
    guard = RevocationGuard(3, 60.0)
    guard.reassign(Share.of({1, 2, 3}, 12))
    assert guard.budget == 0
    assert guard.record(0.0) is False
    assert guard.status(0.0).as_json() == {
        "tripped": True,
        "share": "3/12",
        "budget": 0,
        "spent": 0,
        "max_revocations": 3,
        "window_seconds": 60.0,
    }


async def test_the_gate_reads_the_ledger_before_it_lets_a_revocation_through(
    manual_clock: ManualClock,
) -> None:
    """After a rebalance the gate waits for the ledger; then it charges and writes the charge."""
    ledger = Ledger()
    ledger.entries = {0: [manual_clock()]}
    gate = RevocationGate(RevocationGuard(2, 60.0), ledger=ledger, clock=manual_clock)
    ledger.readable.clear()
    gate.reassign(Share.of({0, 1}, 2))
    admitting = asyncio.create_task(gate.admit())
    await asyncio.sleep(0)
    assert admitting.done() is False
    ledger.readable.set()
    assert await asyncio.wait_for(admitting, 5) is False
    assert ledger.writes == [{1: [manual_clock()]}]
    # Both partitions spent their one revocation: the next one parks.
    held = asyncio.create_task(gate.admit())
    await wait_until(lambda: gate.tripped, within=5, what="the guard to trip")
    assert held.done() is False
    assert gate.release() is True
    assert await asyncio.wait_for(held, 5) is True
    assert ledger.writes[1] == {0: [], 1: []}
    await gate.aclose()


async def test_a_dry_run_never_parks_and_counts_what_the_guard_would_have_held(
    manual_clock: ManualClock,
) -> None:
    """A dry run with a limit of 2 admits 5 at once: 3 would have been held, none waits."""
    ledger = Ledger()
    gate = RevocationGate(RevocationGuard(2, 60.0), ledger=ledger, dry_run=True, clock=manual_clock)
    with capture_logs() as logs:
        waited = [await asyncio.wait_for(gate.admit(), 5) for _ in range(5)]
    assert waited == [False] * 5
    assert gate.tripped is False
    status = gate.status()
    assert status is not None
    assert status["would_have_held"] == 3
    assert status["tripped"] is False
    assert [entry["event"] for entry in logs] == [
        "guard.would_hold",
        "guard.would_trip",
        "guard.would_hold",
        "guard.would_hold",
    ]
    # A dry run writes nothing, not even to the ledger.
    gate.use_ledger(ledger)
    assert ledger.writes == []


async def test_without_a_guard_the_gate_passes_everything() -> None:
    """No guard in the policy: admit never waits, status is None, release has nothing to do."""
    gate = RevocationGate(None)
    gate.reassign(Share.of({0}, 2))
    assert await gate.admit() is False
    assert (gate.status(), gate.release(), gate.tripped) == (None, False, False)


@pytest.mark.parametrize("revocations", [-1])
def test_negative_charges_are_refused(revocations: int) -> None:
    """Charging a negative number of revocations is a bug."""
    with pytest.raises(ValueError, match="negative"):
        RevocationGuard(1, 10).charge(0.0, revocations)


async def test_a_partition_back_before_the_ledger_was_read_takes_its_other_owners_spend(
    manual_clock: ManualClock,
) -> None:
    """Partition 1 lost and back while the ledger read hangs: its other owner's spend counts."""
    ledger = Ledger()
    gate = RevocationGate(RevocationGuard(2, 60.0), ledger=ledger, clock=manual_clock)
    gate.reassign(Share.of({0, 1}, 2))
    await asyncio.wait_for(gate.admit(), 5)
    ledger.readable.clear()
    gate.reassign(Share.of({0}, 2))
    # Meanwhile the other member spent partition 1's budget.
    ledger.entries[1] = [manual_clock()]
    gate.reassign(Share.of({0, 1}, 2))
    ledger.readable.set()
    held = asyncio.create_task(gate.admit())
    await wait_until(lambda: gate.tripped, within=5, what="the guard to trip")
    status = gate.status()
    assert status is not None
    assert status["spent"] == 2
    gate.release()
    await asyncio.wait_for(held, 5)
    await gate.aclose()
