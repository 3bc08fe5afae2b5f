"""Tests of the keyed dispatcher: per-key order, the concurrency cap, coalescing, lifecycle."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import pytest
from structlog.testing import capture_logs

from consumer.stream.dispatcher import KeyedDispatcher

DEADLINE = 5.0


@dataclass(frozen=True)
class Item:
    """A work item: a user key, its sequence number, and the partition it came from."""

    key: str
    seq: int
    partition: int = 0


@dataclass
class Recorder:
    """Records what the dispatcher did, with optional gates that hold a handler until opened."""

    handled: list[Item] = field(default_factory=list)
    started: list[Item] = field(default_factory=list)
    superseded: list[tuple[Item, Item]] = field(default_factory=list)
    gates: dict[Item, asyncio.Event] = field(default_factory=dict)
    started_events: dict[Item, asyncio.Event] = field(default_factory=dict)

    def gate(self, item: Item) -> asyncio.Event:
        """Hold `item`'s handler until the returned event is set."""
        self.started_events[item] = asyncio.Event()
        return self.gates.setdefault(item, asyncio.Event())

    async def wait_started(self, item: Item) -> None:
        """Wait, bounded, until the handler of a gated item has started."""
        async with asyncio.timeout(DEADLINE):
            await self.started_events[item].wait()

    async def handle(self, item: Item) -> None:
        """Handler: record the start, wait at the item's gate if any, record the end."""
        self.started.append(item)
        if item in self.started_events:
            self.started_events[item].set()
        if item in self.gates:
            await self.gates[item].wait()
        self.handled.append(item)

    async def supersede(self, old: Item, new: Item) -> None:
        """Superseded hook: record the pair."""
        self.superseded.append((old, new))


def make(
    recorder: Recorder, max_concurrency: int = 4, *, coalesce: bool = True
) -> KeyedDispatcher[Item]:
    """A dispatcher wired to a recorder."""
    return KeyedDispatcher(recorder.handle, recorder.supersede, max_concurrency, coalesce=coalesce)


def by_key(items: list[Item], key: str) -> list[int]:
    """Sequence numbers of the items of one key, in the order given."""
    return [item.seq for item in items if item.key == key]


async def test_per_key_order_is_preserved_under_random_delays() -> None:
    """Without coalescing, every item of a key runs, in submission order."""
    rng = random.Random(7)
    handled: list[Item] = []

    async def handler(item: Item) -> None:
        for _ in range(rng.randrange(20)):
            await asyncio.sleep(0)
        handled.append(item)

    async def never(old: Item, new: Item) -> None:
        raise AssertionError("nothing is superseded without coalescing")

    dispatcher = KeyedDispatcher(handler, never, 3, coalesce=False)
    keys = [f"u-{n}" for n in range(6)]
    for seq in range(30):
        for key in keys:
            dispatcher.submit(key, Item(key, seq))
    assert await dispatcher.drain(DEADLINE)
    for key in keys:
        assert by_key(handled, key) == list(range(30))


async def test_coalesced_keys_run_in_order_and_end_on_the_newest() -> None:
    """With coalescing, a key's handled items rise and end on its newest; others are superseded."""
    rng = random.Random(11)
    recorder = Recorder()

    async def handler(item: Item) -> None:
        for _ in range(rng.randrange(20)):
            await asyncio.sleep(0)
        await recorder.handle(item)

    dispatcher = KeyedDispatcher(handler, recorder.supersede, 2)
    keys = [f"u-{n}" for n in range(5)]
    submitted: list[Item] = []
    for seq in range(60):
        item = Item(rng.choice(keys), seq)
        submitted.append(item)
        dispatcher.submit(item.key, item)
        for _ in range(rng.randrange(5)):
            await asyncio.sleep(0)
    assert await dispatcher.drain(DEADLINE)
    superseded = [old for old, _ in recorder.superseded]
    assert sorted(recorder.handled + superseded, key=lambda i: i.seq) == submitted
    assert all(old.key == new.key and old.seq < new.seq for old, new in recorder.superseded)
    for key in keys:
        handled = by_key(recorder.handled, key)
        assert handled == sorted(handled)
        assert handled[-1:] == by_key(submitted, key)[-1:]


async def test_concurrency_cap_is_never_exceeded() -> None:
    """At most max_concurrency handlers run at once, and the cap is reached under load."""
    running = 0
    peak = 0
    gauge: list[int] = []

    async def handler(item: Item) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(item.seq % 7 + 1):
            await asyncio.sleep(0)
        running -= 1

    async def supersede(old: Item, new: Item) -> None:
        return None

    dispatcher = KeyedDispatcher(
        handler, supersede, 4, coalesce=False, on_inflight_change=gauge.append
    )
    for seq in range(200):
        dispatcher.submit(f"u-{seq % 50}", Item(f"u-{seq % 50}", seq))
    assert await dispatcher.drain(DEADLINE)
    assert peak == 4
    assert max(gauge) == 4
    assert gauge[-1] == 0
    assert dispatcher.inflight == 0


async def test_queued_items_of_a_busy_key_coalesce_to_the_newest() -> None:
    """Twenty items of a key behind a slow first: the first runs, then the newest; 18 superseded."""
    recorder = Recorder()
    dispatcher = make(recorder)
    items = [Item("u-1", seq) for seq in range(20)]
    gate = recorder.gate(items[0])
    dispatcher.submit("u-1", items[0])
    await recorder.wait_started(items[0])
    for item in items[1:]:
        dispatcher.submit("u-1", item)
    assert dispatcher.queued == 19
    assert dispatcher.inflight == 1
    gate.set()
    assert await dispatcher.drain(DEADLINE)
    assert recorder.handled == [items[0], items[19]]
    assert recorder.superseded == [(item, items[19]) for item in items[1:19]]
    assert dispatcher.queued == 0


@dataclass(frozen=True)
class Folded:
    """An item that carries the sequence numbers of the older items folded into it."""

    key: str
    seq: int
    folded: tuple[int, ...] = ()


async def test_queued_items_are_folded_into_the_one_that_runs() -> None:
    """With a fold hook, the item run is the fold of the queue; the older ones are superseded."""
    handled: list[Folded] = []
    superseded: list[tuple[Folded, Folded]] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def handle(item: Folded) -> None:
        if item.seq == 0:
            started.set()
            await release.wait()
        handled.append(item)

    async def supersede(old: Folded, new: Folded) -> None:
        superseded.append((old, new))

    def fold(newest: Folded, older: list[Folded]) -> Folded:
        return Folded(newest.key, newest.seq, tuple(item.seq for item in older))

    dispatcher = KeyedDispatcher(handle, supersede, 2, fold=fold)
    items = [Folded("u-1", seq) for seq in range(4)]
    dispatcher.submit("u-1", items[0])
    async with asyncio.timeout(DEADLINE):
        await started.wait()
    for item in items[1:]:
        dispatcher.submit("u-1", item)
    release.set()
    assert await dispatcher.drain(DEADLINE)
    assert handled == [items[0], Folded("u-1", 3, (1, 2))]
    assert superseded == [(items[1], handled[1]), (items[2], handled[1])]


async def test_a_slow_key_does_not_block_other_keys() -> None:
    """While one key's handler is stuck, other keys' items all run."""
    recorder = Recorder()
    dispatcher = make(recorder, max_concurrency=2, coalesce=False)
    slow = Item("slow", 0)
    gate = recorder.gate(slow)
    dispatcher.submit("slow", slow)
    dispatcher.submit("slow", Item("slow", 1))
    await recorder.wait_started(slow)
    others = [Item(f"u-{n}", seq) for n in range(5) for seq in range(3)]
    for item in others:
        dispatcher.submit(item.key, item)
    assert await dispatcher.wait_for(lambda item: item.key != "slow", DEADLINE)
    assert await dispatcher.drain(0.01) is False
    assert sorted(recorder.handled, key=lambda i: (i.key, i.seq)) == others
    assert dispatcher.inflight == 1
    assert dispatcher.queued == 1
    gate.set()
    assert await dispatcher.drain(DEADLINE)
    assert by_key(recorder.handled, "slow") == [0, 1]


async def test_one_task_per_active_key_and_none_left_after() -> None:
    """A hundred items of one key make one task, and a drained dispatcher keeps no keys."""
    recorder = Recorder()
    dispatcher = make(recorder, coalesce=False)
    dispatcher.pause()
    before = len(asyncio.all_tasks())
    for seq in range(100):
        dispatcher.submit("u-1", Item("u-1", seq))
    dispatcher.submit("u-2", Item("u-2", 0))
    assert len(asyncio.all_tasks()) == before + 2
    assert dispatcher.active_keys == 2
    dispatcher.resume()
    assert await dispatcher.drain(DEADLINE)
    assert dispatcher.active_keys == 0
    assert len(recorder.handled) == 101


async def test_discard_drops_matching_queued_items_only() -> None:
    """Discard returns the queued items of a revoked partition; the in-flight one still runs."""
    recorder = Recorder()
    dispatcher = make(recorder, coalesce=False)
    running = Item("a", 0, partition=0)
    gate = recorder.gate(running)
    dispatcher.submit("a", running)
    await recorder.wait_started(running)
    dispatcher.pause()
    queued_a = [Item("a", seq, partition=0) for seq in (1, 2)]
    queued_b = [Item("b", seq, partition=0) for seq in (0, 1)]
    kept = [Item("c", 0, partition=1), Item("b", 2, partition=1)]
    for item in [*queued_a, queued_b[0], kept[0], queued_b[1], kept[1]]:
        dispatcher.submit(item.key, item)
    dropped = dispatcher.discard(lambda item: item.partition == 0)
    assert dropped == [*queued_a, *queued_b]
    assert dispatcher.queued == 2
    assert dispatcher.active_keys == 3
    dispatcher.resume()
    gate.set()
    assert await dispatcher.drain(DEADLINE)
    assert sorted(recorder.handled, key=lambda i: (i.key, i.seq)) == [running, kept[1], kept[0]]


async def test_discard_of_an_idle_key_forgets_it() -> None:
    """Discarding every queued item of a key that is not running removes the key."""
    recorder = Recorder()
    dispatcher = make(recorder)
    dispatcher.pause()
    dispatcher.submit("a", Item("a", 0))
    # Let the worker start, so the discard retires a task that is parked on the pause.
    await asyncio.sleep(0)
    assert dispatcher.discard(lambda item: item.key == "a") == [Item("a", 0)]
    assert dispatcher.active_keys == 0
    assert await dispatcher.drain(0)
    dispatcher.resume()
    dispatcher.submit("a", Item("a", 1))
    assert await dispatcher.drain(DEADLINE)
    assert recorder.handled == [Item("a", 1)]


async def test_pause_stops_starts_and_resume_restarts_them() -> None:
    """While paused nothing new starts, a running item finishes, and resume runs the rest."""
    recorder = Recorder()
    dispatcher = make(recorder, coalesce=False)
    first = Item("a", 0)
    gate = recorder.gate(first)
    dispatcher.submit("a", first)
    await recorder.wait_started(first)
    dispatcher.pause()
    for item in (Item("a", 1), Item("b", 0)):
        dispatcher.submit(item.key, item)
    gate.set()
    assert await dispatcher.drain(0.05) is False
    assert dispatcher.paused
    assert recorder.started == [first]
    assert recorder.handled == [first]
    assert dispatcher.queued == 2
    dispatcher.resume()
    assert await dispatcher.drain(DEADLINE)
    assert sorted(recorder.handled, key=lambda i: (i.key, i.seq)) == [
        first,
        Item("a", 1),
        Item("b", 0),
    ]


async def test_wait_for_tracks_matching_in_flight_items() -> None:
    """wait_for times out while a matching item runs and succeeds once it is done."""
    recorder = Recorder()
    dispatcher = make(recorder)
    item = Item("a", 0, partition=3)
    gate = recorder.gate(item)
    dispatcher.submit("a", item)
    await recorder.wait_started(item)
    assert await dispatcher.wait_for(lambda i: i.partition == 3, 0.01) is False
    assert await dispatcher.wait_for(lambda i: i.partition == 4, 0.01) is True
    gate.set()
    assert await dispatcher.wait_for(lambda i: i.partition == 3, DEADLINE) is True
    assert recorder.handled == [item]


async def test_drain_waits_for_everything() -> None:
    """Drain times out while work remains and returns True once all of it is done."""
    recorder = Recorder()
    dispatcher = make(recorder)
    item = Item("a", 0)
    gate = recorder.gate(item)
    dispatcher.submit("a", item)
    assert await dispatcher.drain(0.01) is False
    gate.set()
    assert await dispatcher.drain(DEADLINE) is True
    assert (dispatcher.inflight, dispatcher.queued, dispatcher.active_keys) == (0, 0, 0)


async def test_close_lets_running_items_finish_within_grace() -> None:
    """Close waits for running items within its grace and returns the never-started ones."""
    recorder = Recorder()
    dispatcher = make(recorder, coalesce=False)
    running = Item("a", 0)
    gate = recorder.gate(running)
    dispatcher.submit("a", running)
    await recorder.wait_started(running)
    waiting = [Item("a", 1), Item("b", 0)]
    dispatcher.pause()
    for item in waiting:
        dispatcher.submit(item.key, item)
    closing = asyncio.create_task(dispatcher.close(DEADLINE))
    gate.set()
    assert await closing == waiting
    assert recorder.handled == [running]
    assert dispatcher.active_keys == 0


async def test_close_cancels_stragglers_after_grace() -> None:
    """Close cancels a handler still running after its grace and reports it as abandoned."""
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def handler(item: Item) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def supersede(old: Item, new: Item) -> None:
        return None

    gauge: list[int] = []
    dispatcher = KeyedDispatcher(handler, supersede, 2, on_inflight_change=gauge.append)
    stuck = Item("a", 0)
    dispatcher.submit("a", stuck)
    async with asyncio.timeout(DEADLINE):
        await started.wait()
    dispatcher.submit("a", Item("a", 1))
    abandoned = await dispatcher.close(0.01)
    assert abandoned == [Item("a", 1), stuck]
    assert cancelled.is_set()
    assert gauge == [1, 0]
    assert (dispatcher.inflight, dispatcher.queued, dispatcher.active_keys) == (0, 0, 0)
    with pytest.raises(RuntimeError, match="closed"):
        dispatcher.submit("a", Item("a", 2))


async def test_escaping_handler_error_is_logged_and_the_key_moves_on() -> None:
    """A handler exception is logged as an error and the key's next item still runs."""
    handled: list[Item] = []

    async def handler(item: Item) -> None:
        if item.seq == 0:
            raise RuntimeError("boom")
        handled.append(item)

    async def supersede(old: Item, new: Item) -> None:
        return None

    dispatcher = KeyedDispatcher(handler, supersede, 1, coalesce=False)
    with capture_logs() as logs:
        dispatcher.submit("a", Item("a", 0))
        dispatcher.submit("a", Item("a", 1))
        assert await dispatcher.drain(DEADLINE)
    assert handled == [Item("a", 1)]
    assert [(log["event"], log["log_level"], log["key"]) for log in logs] == [
        ("dispatch_handler_crashed", "error", "a")
    ]


async def test_escaping_superseded_error_is_logged_and_the_newest_still_runs() -> None:
    """An on_superseded exception is logged as an error and the newest item still runs."""
    recorder = Recorder()

    async def supersede(old: Item, new: Item) -> None:
        raise RuntimeError("audit down")

    dispatcher = KeyedDispatcher(recorder.handle, supersede, 1)
    first = Item("a", 0)
    gate = recorder.gate(first)
    dispatcher.submit("a", first)
    await recorder.wait_started(first)
    dispatcher.submit("a", Item("a", 1))
    dispatcher.submit("a", Item("a", 2))
    with capture_logs() as logs:
        gate.set()
        assert await dispatcher.drain(DEADLINE)
    assert recorder.handled == [first, Item("a", 2)]
    assert [log["event"] for log in logs] == ["dispatch_on_superseded_crashed"]


@pytest.mark.parametrize("bad", [0, -1])
def test_max_concurrency_must_be_positive(bad: int) -> None:
    """A concurrency cap below one is refused."""
    with pytest.raises(ValueError, match="at least 1"):
        make(Recorder(), bad)
