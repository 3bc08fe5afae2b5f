"""The late-write watch: which users to read again, when, and with which newest state."""

from __future__ import annotations

import pytest

from consumer.stream.settle import LateWriteWatch
from tests.conftest import ManualClock


def test_a_user_is_due_once_the_bound_has_passed_with_its_newest_item(
    manual_clock: ManualClock,
) -> None:
    """Expected at t, the user is due at t + settle_after with the newest item applied since."""
    watch: LateWriteWatch[str] = LateWriteWatch(60.0, clock=manual_clock)
    watch.expect("u-1", "event 1")
    watch.applied("u-1", "event 2")
    watch.applied("u-2", "not watched")
    manual_clock.advance(59.9)
    assert watch.take_due() == []
    manual_clock.advance(0.1)
    assert watch.take_due() == [("u-1", "event 2")]
    assert watch.take_due() == []
    # Handed out once, but watched (its record held) until the look has read the user.
    assert len(watch) == 1
    assert watch.looked("u-1") == "event 1"
    assert len(watch) == 0
    assert watch.looked("u-1") is None


def test_a_second_give_up_moves_the_look_later(manual_clock: ManualClock) -> None:
    """Expected again before it was due, the user is looked at after the later bound."""
    watch: LateWriteWatch[str] = LateWriteWatch(10.0, clock=manual_clock)
    watch.expect("u-1", "event 1")
    manual_clock.advance(5.0)
    watch.expect("u-1", "event 2")
    manual_clock.advance(5.0)
    assert watch.take_due() == []
    manual_clock.advance(5.0)
    assert watch.take_due() == [("u-1", "event 2")]


def test_expecting_again_hands_back_the_record_held_until_then(manual_clock: ManualClock) -> None:
    """A user expected again holds its newer record instead; the older one is handed back."""
    watch: LateWriteWatch[str] = LateWriteWatch(10.0, clock=manual_clock)
    assert watch.expect("u-1", "event 1") is None
    assert watch.applied("u-1", "event 2") is None
    assert watch.expect("u-1", "event 3") == "event 1"
    manual_clock.advance(10.0)
    assert watch.take_due() == [("u-1", "event 3")]
    assert watch.looked("u-1") == "event 3"


def test_a_write_made_after_the_look_fell_due_ends_it(manual_clock: ManualClock) -> None:
    """Once the look is handed out, a newer write of the user read it after the bound: the look
    is done and the held record handed back; before that, a write only updates the newest state."""
    watch: LateWriteWatch[str] = LateWriteWatch(10.0, clock=manual_clock)
    watch.expect("u-1", "event 1")
    assert watch.applied("u-1", "event 2") is None
    manual_clock.advance(10.0)
    assert watch.take_due() == [("u-1", "event 2")]
    assert watch.applied("u-1", "event 3") == "event 1"
    assert len(watch) == 0
    assert watch.looked("u-1") is None


def test_a_look_outrun_by_a_new_give_up_leaves_the_new_one_due(manual_clock: ManualClock) -> None:
    """Expected again while its look runs, the user keeps the new look; the old one ends with
    nothing to hand back."""
    watch: LateWriteWatch[str] = LateWriteWatch(10.0, clock=manual_clock)
    watch.expect("u-1", "event 1")
    manual_clock.advance(10.0)
    assert watch.take_due() == [("u-1", "event 1")]
    assert watch.expect("u-1", "event 2") == "event 1"
    assert watch.looked("u-1") is None
    manual_clock.advance(10.0)
    assert watch.take_due() == [("u-1", "event 2")]
    assert watch.looked("u-1") == "event 2"


def test_an_abandoned_put_is_reported_once_per_user() -> None:
    """The client's report of a PUT without an answer is taken once, by that user only."""
    watch: LateWriteWatch[str] = LateWriteWatch(10.0)
    watch.abandoned("u-1")
    assert watch.take_abandoned("u-2") is False
    assert watch.take_abandoned("u-1") is True
    assert watch.take_abandoned("u-1") is False


def test_users_of_partitions_given_up_are_forgotten(manual_clock: ManualClock) -> None:
    """After a revocation the watch drops the users whose newest item the member gave up."""
    watch: LateWriteWatch[tuple[int, str]] = LateWriteWatch(1.0, clock=manual_clock)
    watch.expect("u-1", (0, "a"))
    watch.expect("u-2", (1, "b"))
    assert watch.forget(lambda item: item[0] == 0) == 1
    manual_clock.advance(1.0)
    assert watch.take_due() == [("u-2", (1, "b"))]


def test_a_negative_bound_is_refused() -> None:
    """The bound is a duration."""
    with pytest.raises(ValueError, match="negative"):
        LateWriteWatch(-1.0)
