"""The consumer group's send schedule: evenly spaced time slots, each owned by one member.

With a configured ceiling of C requests a minute, slot k starts at wall-clock time k * 60 / C,
counted from the Unix epoch, so every member computes the same grid without talking to the
others. A `replay_share` q of the slots (spread evenly, Bresenham-style) belongs to a replay
running beside the group; the rest go round the input topic's partitions, slot j to partition
j mod P, and a member sends only in the slots of the partitions it owns. Kafka gives each
partition to one member, so two members never send in one slot: together they send at most C a
minute, evenly spaced, which a token bucket without any burst allowance accepts. Pure: the caller
passes the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from consumer.share import Share

# A slot whose start passed less than this part of an interval ago may still be taken: a sleep
# wakes a little late, and skipping the slot for that would waste it. Later than this, the
# send could come too close to the next member's, on time in the slot after.
LATE_FRACTION = 0.1
OWN_LATE_FRACTION = 0.5


@dataclass(frozen=True)
class SlotGrid:
    """Slots `interval` seconds apart: `replay_share` of them a replay's, the rest the group's."""

    interval: float
    replay_share: float = 0.0

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError("the slot interval must be positive")
        if not 0.0 <= self.replay_share < 1.0:
            raise ValueError("replay_share must be at least 0 and below 1")

    @classmethod
    def per_minute(cls, ceiling: float, replay_share: float = 0.0) -> SlotGrid:
        """The grid of a ceiling of `ceiling` requests a minute."""
        if not ceiling > 0:
            raise ValueError("the ceiling must be positive")
        return cls(60.0 / ceiling, replay_share)

    def is_replay(self, slot: int) -> bool:
        """Whether slot `slot` belongs to a replay (always, when no share is set aside for one)."""
        share = self.replay_share
        return share == 0.0 or math.floor((slot + 1) * share) > math.floor(slot * share)

    def partition_of(self, slot: int) -> int | None:
        """The partition lane of a group slot, counting group slots only; None for a replay's."""
        share = self.replay_share
        if share > 0.0 and math.floor((slot + 1) * share) > math.floor(slot * share):
            return None
        return slot - math.floor((slot + 1) * share)

    def next_slot(self, after: float, share: Share | None) -> float | None:
        """The start of the first slot of `share` (None: the replay's) at or after `after`.

        A slot that started less than `LATE_FRACTION` of an interval before `after` counts
        (`OWN_LATE_FRACTION` when the slot after it belongs to `share` too).
        None when the share owns no partition: it has no slots at all.
        """
        if share is not None and not share.owned:
            return None
        first = math.ceil(after / self.interval - OWN_LATE_FRACTION)
        for slot in range(first, first + self._search_bound(share)):
            if not self._holds(slot, share):
                continue
            start = slot * self.interval
            # Late into a slot whose successor is another's, the send could come too close to
            # theirs; when the next slot is ours too, the sender's own spacing keeps them apart.
            allowed = OWN_LATE_FRACTION if self._holds(slot + 1, share) else LATE_FRACTION
            if after - start <= allowed * self.interval:
                return start
        raise AssertionError("unreachable: every lane has a slot within the search bound")

    def rate_per_minute(self, share: Share | None) -> float:
        """The requests a minute the slots of `share` (None: the replay's) add up to."""
        ceiling = 60.0 / self.interval
        if share is None:
            return ceiling * (self.replay_share or 1.0)
        return ceiling * (1.0 - self.replay_share) * share.fraction

    def _holds(self, slot: int, share: Share | None) -> bool:
        if share is None:
            return self.is_replay(slot)
        lane = self.partition_of(slot)
        return lane is not None and lane % share.total in share.owned

    def _search_bound(self, share: Share | None) -> int:
        # Every run of `total` group slots visits each lane once, and group slots are at least
        # 1 - replay_share of all; a replay slot comes at least once every 1 / replay_share.
        if share is None:
            return 2 + (math.ceil(1 / self.replay_share) if self.replay_share else 0)
        return 2 + math.ceil((share.total + 1) / (1.0 - self.replay_share))
