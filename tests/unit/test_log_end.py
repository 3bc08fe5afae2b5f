"""Reading a partition's end through Tansu's undercount: what `LogEnd.holds` counts as there."""

from __future__ import annotations

from consumer.stream.kafka import LogEnd

END = LogEnd(offset=10, taken_ms=5_000)


def test_a_record_below_the_reported_end_was_there_whenever_it_was_written() -> None:
    """An offset below the reported end belongs, even with a timestamp after the end was taken."""
    assert END.holds(9, 9_999) is True


def test_a_record_past_the_reported_end_written_before_it_was_taken_was_there() -> None:
    """Tansu reports the base of the last batch + 1: the rest of that batch belongs by its time."""
    assert END.holds(12, 4_999) is True
    assert END.holds(12, 5_000) is True


def test_a_record_past_the_end_written_after_it_was_taken_was_not_there() -> None:
    """The first record both past the offset and written later is beyond the end."""
    assert END.holds(10, 5_001) is False


def test_an_exact_end_counts_only_offsets_below_it_whatever_their_time() -> None:
    """Where the broker reports the end right (no `taken_ms`), a record's time adds nothing."""
    exact = LogEnd(offset=10)
    assert exact.holds(9, 9_999) is True
    assert exact.holds(10, 0) is False
