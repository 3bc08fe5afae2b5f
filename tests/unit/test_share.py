"""Tests of the split of a group-wide budget by partition ownership."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.share import Share, partition_budgets


def assignments(total: int, members: int, owner_of: list[int]) -> list[Share]:
    """The shares of `members` members when partition p belongs to member owner_of[p]."""
    return [
        Share.of((p for p in range(total) if owner_of[p] == member), total)
        for member in range(members)
    ]


@st.composite
def group(draw: st.DrawFn) -> tuple[int, list[Share]]:
    """A limit and the shares of any assignment of any topic to any number of members."""
    total = draw(st.integers(1, 64))
    members = draw(st.integers(1, 12))
    owner_of = draw(st.lists(st.integers(0, members - 1), min_size=total, max_size=total))
    limit = draw(st.integers(0, 500))
    return limit, assignments(total, members, owner_of)


@given(group())
def test_shares_of_any_assignment_add_up_to_exactly_the_limit(
    drawn: tuple[int, list[Share]],
) -> None:
    """However the partitions are spread, the members' budgets sum to the limit, never above."""
    limit, shares = drawn
    assert sum(share.budget(limit) for share in shares) == limit
    assert sum(share.fraction for share in shares) == pytest.approx(1.0)


@given(group(), st.data())
def test_a_rebalance_never_raises_the_sum_of_budgets(
    drawn: tuple[int, list[Share]], data: st.DataObject
) -> None:
    """Re-split for a new assignment (members joining or leaving), the sum stays the limit."""
    limit, before = drawn
    total = before[0].total
    members = data.draw(st.integers(1, 12))
    owner_of = data.draw(st.lists(st.integers(0, members - 1), min_size=total, max_size=total))
    after = assignments(total, members, owner_of)
    assert sum(share.budget(limit) for share in after) == limit
    # A member owning no partition has no budget, whatever the limit.
    assert all(share.budget(limit) == 0 for share in after if not share.owned)


@given(st.integers(0, 1000), st.integers(1, 100))
def test_partition_budgets_differ_by_at_most_one(limit: int, total: int) -> None:
    """Every partition gets the limit's floor share, some one more: never more apart than one."""
    budgets = partition_budgets(limit, total)
    assert len(budgets) == total
    assert sum(budgets) == limit
    assert max(budgets) - min(budgets) <= 1


def test_the_remainder_is_spread_over_the_topic() -> None:
    """Three units over twelve partitions go to partitions 0, 4 and 8, not to 0, 1 and 2."""
    assert partition_budgets(3, 12) == (1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0)


def test_two_members_of_four_partitions_split_three_revocations_two_and_one() -> None:
    """The issue's reproduction: limit 3, two members of two partitions each: 2 + 1, not 3 + 3."""
    first, second = Share.of({0, 1}, 4), Share.of({2, 3}, 4)
    assert (first.budget(3), second.budget(3)) == (2, 1)
    assert (first.describe(), first.fraction) == ("2/4", 0.5)


def test_a_lone_member_has_the_whole_budget() -> None:
    """The whole share owns everything: the budget is the limit and the fraction 1."""
    assert Share.whole().budget(50) == 50
    assert Share.whole().fraction == 1.0


@pytest.mark.parametrize(
    ("owned", "total"),
    [({0}, 0), ({4}, 4), ({-1}, 4)],
    ids=["no-partitions", "past-end", "negative"],
)
def test_impossible_shares_are_refused(owned: set[int], total: int) -> None:
    """A topic without partitions, or a partition outside the topic, is a bug: refused."""
    with pytest.raises(ValueError, match="partition"):
        Share.of(owned, total)


def test_a_negative_limit_is_refused() -> None:
    """A negative budget makes no sense."""
    with pytest.raises(ValueError, match="negative"):
        partition_budgets(-1, 4)
