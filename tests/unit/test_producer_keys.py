"""Every producer in the project keys a valid event by its user id, as the consumer requires."""

from __future__ import annotations

import itertools
import random

import pytest

from bench import classify
from bench.workload import role_changes
from consumer.errors import InvalidEvent
from consumer.events import parse_event
from consumer.sandbox.samples import follow_ups, promotions
from consumer.sandbox.traffic import traffic

Record = tuple[bytes | None, bytes | None]


def valid_records(records: list[Record]) -> list[tuple[bytes | None, str]]:
    """(key, data.user_id) of each record whose value is a valid event."""
    found = []
    for key, value in records:
        try:
            found.append((key, parse_event(value).user_id))
        except InvalidEvent:
            continue
    return found


@pytest.mark.parametrize(
    "producer",
    ["demo promotions", "demo follow-ups", "sandbox traffic", "bench workload", "bench classify"],
)
def test_every_valid_event_a_producer_makes_is_keyed_by_its_user(producer: str) -> None:
    """Demo feed, sandbox traffic and bench records: a valid event's key is its data.user_id."""
    records: list[Record] = {
        "demo promotions": lambda: [(r.key, r.value) for r in promotions()],
        "demo follow-ups": lambda: [(r.key, r.value) for r in follow_ups()],
        "sandbox traffic": lambda: [
            (r.key, r.value) for r in itertools.islice(traffic(40, random.Random(3)), 2_000)
        ],
        "bench workload": lambda: list(role_changes(0, 500, 50, run="keys")),
        "bench classify": lambda: list(classify.edge_records().values()),
    }[producer]()
    valid = valid_records(records)
    assert len(valid) >= 2
    assert [key for key, _ in valid] == [user_id.encode() for _, user_id in valid]
