"""The audit topic's partitions merged in time order, one fetch per partition at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from consumer.audit_order import PartitionMerge, time_order
from consumer.events import AuditEvent, Outcome, SourcePosition, SyncResult, audit_event_of

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(partition: int, offset: int, second: int) -> AuditEvent:
    """The audit of input `partition`@`offset`, processed `second` seconds after START."""
    return audit_event_of(
        SyncResult(
            event_id=f"e-{partition}-{offset}",
            user_id="u-1",
            outcome=Outcome.SYNCED,
            source=SourcePosition(topic="in", partition=partition, offset=offset),
            processed_at=START + timedelta(seconds=second),
        )
    )


def test_nothing_is_let_out_while_a_partition_with_more_to_read_is_empty() -> None:
    """Partition 1 unread: partition 0's result waits; once 1 has one, the earlier goes first."""
    merge: PartitionMerge[int] = PartitionMerge([0, 1])
    merge.add(0, [at(0, 0, 5)])
    assert (merge.starving(), list(merge.ready())) == ([1], [])
    merge.add(1, [at(1, 0, 3), at(1, 1, 9)])
    assert [event.data.event_id for event in merge.ready()] == ["e-1-0", "e-0-0"]
    assert merge.starving() == [0]
    merge.finish(0)
    assert [event.data.event_id for event in merge.ready()] == ["e-1-1"]
    merge.finish(1)
    assert merge.done


@given(
    st.lists(st.lists(st.integers(0, 50), max_size=12), min_size=1, max_size=4),
    st.data(),
)
def test_partitions_read_in_any_chunks_come_out_in_time_order(
    seconds: list[list[int]], data: st.DataObject
) -> None:
    """Each partition sorted in itself, fetched in chunks of any size: all comes out sorted."""
    logs = {
        partition: [at(partition, offset, s) for offset, s in enumerate(sorted(times))]
        for partition, times in enumerate(seconds)
    }
    read = dict.fromkeys(logs, 0)
    merge: PartitionMerge[int] = PartitionMerge(logs)
    out: list[AuditEvent] = []
    while not merge.done:
        for partition in merge.starving():
            chunk = data.draw(st.integers(0, 4))
            taken = logs[partition][read[partition] : read[partition] + chunk]
            read[partition] += len(taken)
            merge.add(partition, taken)
            if not taken and read[partition] == len(logs[partition]):
                merge.finish(partition)
        out.extend(merge.ready())
    assert out == sorted((event for log in logs.values() for event in log), key=time_order)
