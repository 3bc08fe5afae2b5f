"""The mass-revocation guard: the group's budget per window, this member's share, and the gate.

The policy's `max_revocations` per `window_seconds` holds for the whole consumer group. It is
split over the input topic's partitions (`consumer.share.partition_budgets`); a member may spend
the budgets of the partitions it owns, in any mix, and each revocation it lets through is
charged to one of them. Kafka gives a partition to one member at a time, so the charges to a
partition never pass its budget, and the group's never pass the limit. What a partition spent in
the current window travels with it through the ledger (`consumer.stream.guard_ledger`): it is
written before the revocation is, and read by the next owner before it lets any through, so a
handover neither forgets nor doubles a window.

`RevocationGuard` is the pure window (the caller passes the clock, a wall clock since members on
several hosts share it); `RevocationGate` is the async side that parks revocations while this
member's guard is tripped, until an operator releases it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consumer.share import Share


@dataclass(frozen=True)
class GuardStatus:
    """What `/readyz` and the logs say about the guard of this member."""

    tripped: bool
    share: str
    budget: int
    spent: int
    max_revocations: int
    window_seconds: float

    def as_json(self) -> dict[str, object]:
        """The status as `/readyz` serves it."""
        return {
            "tripped": self.tripped,
            "share": self.share,
            "budget": self.budget,
            "spent": self.spent,
            "max_revocations": self.max_revocations,
            "window_seconds": self.window_seconds,
        }


class RevocationGuard:
    """Lets through at most this member's share of `max_revocations` per window; sticky trip.

    The share is the sum of the budgets of the partitions owned; each revocation let through is
    charged to an owned partition with room, and one that finds no room trips the guard until
    it is released. Not thread-safe: it belongs to the one event loop that applies changes.
    """

    def __init__(
        self, max_revocations: int, window_seconds: float, share: Share | None = None
    ) -> None:
        if max_revocations < 1:
            raise ValueError("max_revocations must be at least 1")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.max_revocations = max_revocations
        self.window_seconds = window_seconds
        self._share = Share.of((), 1)
        self._budgets: dict[int, int] = {}
        self._spends: dict[int, list[float]] = {}
        self._tripped = False
        self.reassign(share or Share.whole())

    @property
    def tripped(self) -> bool:
        """Whether revocations are held back until an operator releases the guard."""
        return self._tripped

    @property
    def share(self) -> Share:
        """The partitions whose budgets this member spends."""
        return self._share

    @property
    def budget(self) -> int:
        """This member's share of `max_revocations` per window."""
        return sum(self._budgets.values())

    def reassign(self, share: Share, carried: Mapping[int, Iterable[float]] | None = None) -> None:
        """Spend the budgets of `share` from now on; `carried` is what new partitions spent.

        Partitions kept keep their own history; partitions gone are forgotten (their next owner
        reads what they spent from the ledger).
        """
        budgets = share.budget_by_partition(self.max_revocations)
        carried = carried or {}
        spends: dict[int, list[float]] = {}
        # The same partition only when the topic is the same size: a lone member's whole share
        # (one partition of one) is not partition 0 of a topic of four.
        same = self._share.total == share.total
        for partition in share.owned:
            if same and partition in self._share.owned:
                spends[partition] = list(self._spends[partition])
            else:
                spends[partition] = sorted(carried.get(partition, ()))
        self._share = share
        self._budgets = budgets
        self._spends = spends

    def count_in_window(self, now: float) -> int:
        """How many revocations the owned partitions let through in the window ending at `now`."""
        self._expire(now)
        return sum(len(spends) for spends in self._spends.values())

    def charge(self, now: float, revocations: int = 1) -> dict[int, tuple[float, ...]] | None:
        """Count revocations arriving at `now`: the partitions charged and what each has spent.

        None when they may not proceed: the share has no room for all of them, and the guard is
        tripped (or already was).
        """
        if revocations < 0:
            raise ValueError("revocations must not be negative")
        if self._tripped:
            return None
        self._expire(now)
        room = {
            partition: budget - len(self._spends[partition])
            for partition, budget in self._budgets.items()
        }
        if revocations > sum(max(0, left) for left in room.values()):
            # Tripping is sticky: a burst that looks like an IdP mistake needs a human to
            # look before anything more is taken away, not just a quiet minute.
            self._tripped = True
            return None
        charged: set[int] = set()
        for _ in range(revocations):
            # The partition with the most room left, so a member's charges spread out.
            partition = max(sorted(room), key=lambda candidate: room[candidate])
            room[partition] -= 1
            self._spends[partition].append(now)
            charged.add(partition)
        return {partition: tuple(self._spends[partition]) for partition in sorted(charged)}

    def record(self, now: float, revocations: int = 1) -> bool:
        """Count revocations arriving at `now`: True if they may proceed, False if tripped."""
        return self.charge(now, revocations) is not None

    def release(self) -> tuple[int, ...]:
        """Forget the window of the owned partitions and let revocations through again."""
        for spends in self._spends.values():
            spends.clear()
        self._tripped = False
        return tuple(sorted(self._spends))

    def spends(self, partition: int) -> tuple[float, ...]:
        """When the revocations charged to an owned partition in the window were let through."""
        return tuple(self._spends.get(partition, ()))

    def status(self, now: float) -> GuardStatus:
        """The guard as `/readyz` shows it."""
        return GuardStatus(
            tripped=self._tripped,
            share=self._share.describe(),
            budget=self.budget,
            spent=self.count_in_window(now),
            max_revocations=self.max_revocations,
            window_seconds=self.window_seconds,
        )

    def _expire(self, now: float) -> None:
        for partition, spends in self._spends.items():
            if spends and now - spends[0] >= self.window_seconds:
                self._spends[partition] = [at for at in spends if now - at < self.window_seconds]
