"""One member's share of a budget the whole consumer group holds: split by partition ownership.

A group-wide limit (revocations per window, requests per minute) is split over the input topic's
partitions, not over members: Kafka gives each partition to exactly one member, so the shares of
any assignment add up to at most the whole, however many members there are and however the
partitions are spread, and every rebalance re-splits by itself. An integer budget is split into
whole units per partition (`partition_budgets`); a rate is split by the owned fraction
(`Share.fraction`). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def partition_budgets(limit: int, total: int) -> tuple[int, ...]:
    """Whole units of `limit` per partition, summing to exactly `limit` over all `total`.

    Every partition gets `limit // total`; the remainder goes one unit each to partitions spread
    evenly over the topic, so a member holding a contiguous range (range assignor) or every n-th
    partition (round robin) is as likely as any other to get one.
    """
    if limit < 0:
        raise ValueError("limit must not be negative")
    if total < 1:
        raise ValueError("a topic has at least one partition")
    base, remainder = divmod(limit, total)
    extra = {index * total // remainder for index in range(remainder)}
    return tuple(base + (1 if partition in extra else 0) for partition in range(total))


@dataclass(frozen=True)
class Share:
    """The partitions of the input topic this member owns, out of how many there are."""

    owned: frozenset[int]
    total: int

    def __post_init__(self) -> None:
        if self.total < 1:
            raise ValueError("a topic has at least one partition")
        if any(not 0 <= partition < self.total for partition in self.owned):
            raise ValueError(f"owned partitions must lie in [0, {self.total})")

    @classmethod
    def of(cls, owned: Iterable[int], total: int) -> Share:
        """The share of a member owning `owned` of `total` partitions."""
        return cls(frozenset(owned), total)

    @classmethod
    def whole(cls) -> Share:
        """A member alone with the whole budget (no group, or a single-partition topic)."""
        return cls(frozenset({0}), 1)

    @property
    def fraction(self) -> float:
        """The owned part of the partitions, 0.0 to 1.0."""
        return len(self.owned) / self.total

    def budget(self, limit: int) -> int:
        """This member's whole units of `limit` (the sum of its partitions' budgets)."""
        return sum(self.budget_by_partition(limit).values())

    def budget_by_partition(self, limit: int) -> dict[int, int]:
        """The whole units of `limit` of each owned partition."""
        budgets = partition_budgets(limit, self.total)
        return {partition: budgets[partition] for partition in sorted(self.owned)}

    def describe(self) -> str:
        """The share as logs print it, e.g. `2/4`."""
        return f"{len(self.owned)}/{self.total}"
