"""The keyed dispatcher: one item at a time per key, many keys at once, queued items folded.

Each key with work has one worker task that runs its items in submission order; a semaphore caps
how many items run at once across keys, so a slow key holds one slot and never blocks the others.

With coalescing on, a worker about to start a key's next item takes every queued item at once:
`fold(newest, older)` makes the one item to run (by default the newest as it is), and every older
one goes to `on_superseded(older, folded)` first, so a user's queued events become one write. An
item already running is never cancelled.

`on_superseded` runs in the concurrency slot of the newest item, before its handler. Both
callbacks are expected to handle their own errors; one that escapes is logged as an error and the
item counts as done here, so its key moves on. What that means for offsets is the caller's
decision: the stream consumer turns every error of producing a result into an audited result, and
never commits past a record whose audit was not published, so a handler that still raises leaves
its record the oldest unfinished one of its partition (seen in the age gauge, bounded by the
partition's window) rather than silently committed.

An item is started once its worker takes it off the queue: `inflight` counts running handlers,
while `drain`, `wait_for` and `close` also wait for items whose `on_superseded` is running.
`pause` only holds back items not yet started.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)


T = TypeVar("T")


class KeyedDispatcher(Generic[T]):
    """Runs items of one key serially and items of different keys concurrently, capped."""

    def __init__(
        self,
        handler: Callable[[T], Awaitable[None]],
        on_superseded: Callable[[T, T], Awaitable[None]],
        max_concurrency: int,
        *,
        coalesce: bool = True,
        fold: Callable[[T, list[T]], T] | None = None,
        on_inflight_change: Callable[[int], None] | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        self._handler = handler
        self._on_superseded = on_superseded
        self._coalesce = coalesce
        self._fold = fold
        self._on_inflight_change = on_inflight_change
        self._slots = asyncio.Semaphore(max_concurrency)
        # A key is in `_queues` exactly when it has a worker in `_workers`.
        self._queues: dict[str, deque[T]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        # Items a worker took off its queue and has not finished: the one handled, the superseded.
        self._taken: dict[str, list[T]] = {}
        # Cancelled idle workers, kept referenced until they have unwound.
        self._retiring: set[asyncio.Task[None]] = set()
        self._queued = 0
        self._inflight = 0
        self._running = asyncio.Event()
        self._running.set()
        self._closing = False
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def inflight(self) -> int:
        """How many handlers are running now."""
        return self._inflight

    @property
    def queued(self) -> int:
        """How many submitted items have not started yet."""
        return self._queued

    @property
    def active_keys(self) -> int:
        """How many keys have queued or running items."""
        return len(self._workers)

    @property
    def paused(self) -> bool:
        """Whether starting new items is paused."""
        return not self._running.is_set()

    def queued_for(self, key: str) -> int:
        """How many items of `key` are queued, not started yet."""
        queue = self._queues.get(key)
        return 0 if queue is None else len(queue)

    def submit(self, key: str, item: T) -> None:
        """Queue `item` behind the earlier items of `key`; never blocks."""
        if self._closing:
            raise RuntimeError("the dispatcher is closed")
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._workers[key] = asyncio.get_running_loop().create_task(
                self._work(key, queue), name=f"dispatch:{key}"
            )
        queue.append(item)
        self._queued += 1

    def pause(self) -> None:
        """Stop starting new items; running ones carry on."""
        self._running.clear()

    def resume(self) -> None:
        """Start new items again."""
        self._running.set()

    def discard(self, predicate: Callable[[T], bool]) -> list[T]:
        """Drop the queued, not yet started items matching `predicate` and return them."""
        dropped: list[T] = []
        for key, queue in list(self._queues.items()):
            kept: list[T] = []
            matched: list[T] = []
            for item in queue:
                (matched if predicate(item) else kept).append(item)
            if not matched:
                continue
            dropped.extend(matched)
            # In place: the key's worker holds this very deque.
            queue.clear()
            queue.extend(kept)
            if not queue and key not in self._taken:
                self._retire(key)
        self._queued -= len(dropped)
        if dropped:
            self._notify()
        return dropped

    # `drain` and `wait_for` take their own timeout because callers want to know whether the
    # wait settled and then carry on either way; `asyncio.timeout` would make that a try/except.
    async def drain(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        """Wait until nothing is queued or running; False if `timeout` seconds pass first."""
        return await self._wait_until(lambda: self._queued == 0 and not self._taken, timeout)

    async def wait_for(
        self,
        predicate: Callable[[T], bool],
        timeout: float | None,  # noqa: ASYNC109
    ) -> bool:
        """Wait until no started item matches `predicate`; False if `timeout` seconds pass first."""

        def settled() -> bool:
            return not any(predicate(item) for items in self._taken.values() for item in items)

        return await self._wait_until(settled, timeout)

    async def close(self, grace: float) -> list[T]:
        """Stop starting items, give running ones `grace` seconds, cancel the rest.

        Returns the items that did not complete: never started, or cancelled.
        """
        self._closing = True
        abandoned: list[T] = []
        for key, queue in list(self._queues.items()):
            abandoned.extend(queue)
            queue.clear()
            if key not in self._taken:
                self._retire(key)
        self._queued = 0
        self._notify()
        if not await self._wait_until(lambda: not self._taken, grace):
            for items in self._taken.values():
                abandoned.extend(items)
            for task in self._workers.values():
                task.cancel()
        await asyncio.gather(*self._workers.values(), *self._retiring, return_exceptions=True)
        return abandoned

    async def _work(self, key: str, queue: deque[T]) -> None:
        """Run the items of one key until its queue is empty."""
        try:
            while queue and not self._closing:
                await self._running.wait()
                async with self._slots:
                    # Paused, closed or discarded while waiting for the slot: look again.
                    if self.paused or self._closing or not queue:
                        continue
                    item, older = self._take(queue)
                    await self._run(key, item, older)
        finally:
            # A retired worker was already unregistered, maybe replaced by a new one for the key.
            if self._workers.get(key) is asyncio.current_task():
                del self._workers[key]
                del self._queues[key]
                self._notify()

    def _take(self, queue: deque[T]) -> tuple[T, list[T]]:
        """Take the next item to run (the queue folded into one) and the older ones it replaces."""
        if self._coalesce and len(queue) > 1:
            item = queue.pop()
            older = list(queue)
            queue.clear()
            if self._fold is not None:
                item = self._fold(item, older)
        else:
            item = queue.popleft()
            older = []
        self._queued -= 1 + len(older)
        return item, older

    async def _run(self, key: str, item: T, older: list[T]) -> None:
        """Supersede the older items, then handle the item."""
        taken = self._taken[key] = [item, *older]
        try:
            for old in older:
                try:
                    await self._on_superseded(old, item)
                except Exception:
                    # Auditing a superseded item must not fail; if it does, that is a bug.
                    log.exception("dispatch_on_superseded_crashed", key=key)
                taken.remove(old)
                self._notify()
            self._set_inflight(self._inflight + 1)
            try:
                await self._handler(item)
            except Exception:
                # The handler owns its errors; one escaping is a bug, so say so loudly.
                log.exception("dispatch_handler_crashed", key=key)
            finally:
                self._set_inflight(self._inflight - 1)
        finally:
            del self._taken[key]
            self._notify()

    def _retire(self, key: str) -> None:
        """Cancel the idle worker of `key` and forget the key."""
        task = self._workers.pop(key)
        del self._queues[key]
        task.cancel()
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _set_inflight(self, count: int) -> None:
        self._inflight = count
        if self._on_inflight_change is not None:
            self._on_inflight_change(count)

    def _notify(self) -> None:
        """Wake everyone waiting in `_wait_until` to check their condition again."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_until(self, condition: Callable[[], bool], seconds: float | None) -> bool:
        """Wait until `condition()` holds, at most `seconds`; return whether it holds."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(seconds):
                while not condition():
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._waiters.append(waiter)
                    await waiter
        except TimeoutError:
            return condition()
        return True
