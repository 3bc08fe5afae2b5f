"""Tests of the users the breaker's probe reads: newest first, in turn, a bounded few."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.scim.probe_targets import ProbeTargets


def test_no_user_known_means_the_search() -> None:
    """Before any user was asked about there is no user to read: None."""
    assert ProbeTargets().next() is None


def test_users_are_probed_newest_first_and_in_turn() -> None:
    """Each probe reads the next user, starting from the one asked about last."""
    targets = ProbeTargets()
    for user_id in ("u-1", "u-2", "u-3"):
        targets.note(user_id)

    assert [targets.next() for _ in range(4)] == ["u-3", "u-2", "u-1", "u-3"]


def test_a_user_asked_about_again_is_newest_and_counted_once() -> None:
    """Noting a known user moves it to the front without a second entry."""
    targets = ProbeTargets()
    for user_id in ("u-1", "u-2", "u-1"):
        targets.note(user_id)

    assert len(targets) == 2
    assert targets.next() == "u-1"


def test_a_bound_below_one_is_refused() -> None:
    """A probe must be able to remember at least one user."""
    with pytest.raises(ValueError, match="at least 1"):
        ProbeTargets(remember=0)


@given(st.lists(st.sampled_from([f"u-{n}" for n in range(40)]), min_size=1, max_size=200))
def test_only_the_most_recent_users_are_kept_and_each_gets_its_turn(noted: list[str]) -> None:
    """However many users were noted, the probe cycles through the newest few, each once."""
    targets = ProbeTargets(remember=5)
    for user_id in noted:
        targets.note(user_id)

    newest = list(dict.fromkeys(reversed(noted)))[:5]
    assert [targets.next() for _ in range(len(newest))] == newest
