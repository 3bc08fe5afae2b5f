"""Tests of the sandbox's steady traffic: a realistic mix of valid events and a few bad records."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from consumer.errors import InvalidEvent
from consumer.events import parse_event
from consumer.sandbox.traffic import traffic


def test_traffic_is_mostly_everyday_changes_with_every_kind_among_them() -> None:
    """Two thousand records hold every kind of change, everyday ones the large majority."""
    records = list(itertools.islice(traffic(40, random.Random(1)), 2000))
    kinds = Counter(record.label for record in records)
    assert set(kinds) == {
        "everyday change",
        "approved privileged grant",
        "escalation",
        "separation-of-duties conflict",
        "deactivation",
        "bad record",
    }
    assert kinds["everyday change"] > 0.7 * len(records)
    # Deactivations stay rare so the mass-revocation guard is not tripped by the sandbox itself.
    assert kinds["deactivation"] < 0.02 * len(records)


def test_traffic_records_are_valid_events_except_the_bad_ones() -> None:
    """Every record but the bad ones is a valid event with a new id, keyed by its user."""
    ids = set()
    for record in itertools.islice(traffic(40, random.Random(2)), 500):
        if record.label == "bad record":
            with pytest.raises(InvalidEvent) as refused:
                parse_event(record.value)
            assert refused.value.reason == "invalid_json"
            continue
        event = parse_event(record.value)
        assert record.key == event.user_id.encode()
        assert event.id not in ids
        ids.add(event.id)
        assert (event.data.approval is not None) == (
            record.label in {"approved privileged grant", "separation-of-duties conflict"}
        )
