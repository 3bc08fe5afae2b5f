"""Turns changes of the IdP's view into input events: the imperative shell around the pure core.

Users whose state a SCIM write may have changed are marked; one task takes them in turn,
computes each desired state, and when it differs from the last one emitted, publishes the event
on the input topic (keyed by the CXone user id) and then records it as emitted on the state
topic, each acknowledged. A crash between the two emits the event again after the restart, with
the same id (at-least-once); a crash before the event leaves the user marked by the start-up pass,
which compares every user's state with what was emitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from consumer.catalog import Policy
from consumer.ingress.desired import IdpView, desired_state
from consumer.ingress.directory import CxoneDirectory, Unresolved
from consumer.ingress.emission import EmittedState, due_event
from consumer.ingress.resources import view_of
from consumer.ingress.state_topic import StateTopic
from consumer.ingress.store import PersistedStorage
from consumer.observability.metrics import (
    INGRESS_EVENTS,
    INGRESS_MAPPING_MISSES,
    INGRESS_STATE,
    INGRESS_UNRESOLVED,
)

__all__ = ["EMITTED_PREFIX", "Emitter"]

log = structlog.get_logger(__name__)

EMITTED_PREFIX = "Emitted/"
# After the broker refused a write, wait this long before the next attempt.
KAFKA_BACKOFF_SECONDS = 1.0


class Emitter:
    """Marks users, and emits the event each marked user's new desired state calls for."""

    def __init__(
        self,
        storage: PersistedStorage,
        journal: StateTopic,
        producer: AIOKafkaProducer,
        *,
        input_topic: str,
        policy: Policy,
        directory: CxoneDirectory,
        source: str,
        approval_key: bytes | None,
        retry_seconds: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._storage = storage
        self._journal = journal
        self._producer = producer
        self._input_topic = input_topic
        self._policy = policy
        self._directory = directory
        self._source = source
        self._approval_key = approval_key
        self._retry_seconds = retry_seconds
        self._clock = clock
        self.emitted: dict[str, EmittedState] = {}
        self.unresolved: set[str] = set()
        self._misses: dict[str, tuple[str, ...]] = {}
        self._marked: set[str] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        # Only the writer emits: cleared the moment this instance loses the state topic.
        self.active = False

    def load(self, records: dict[str, dict[str, Any]]) -> None:
        """Take the emitted states read back from the state topic, and mark every user."""
        self.emitted.clear()
        self.unresolved.clear()
        self._misses.clear()
        self._marked.clear()
        for key, document in records.items():
            if key.startswith(EMITTED_PREFIX):
                try:
                    self.emitted[key.removeprefix(EMITTED_PREFIX)] = EmittedState.from_json(
                        document
                    )
                except (KeyError, TypeError, ValueError):
                    log.warning("ingress.emitted_unreadable")
        view = view_of(self._storage.resources())
        self.mark([*view.users, *self.emitted])

    def mark(self, user_ids: Iterable[str]) -> None:
        """Note users whose desired state may have changed; the task looks at them soon."""
        self._marked.update(user_ids)
        if self._marked:
            self._idle.clear()
            self._wake.set()

    async def settled(self) -> None:
        """Wait until every marked user was looked at (for tests and an orderly stop)."""
        await self._idle.wait()

    async def run(self, stop: asyncio.Event) -> None:
        """Emit for marked users until `stop`; users not found in CXone are retried on a timer."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._retry_seconds)
            except TimeoutError:
                self.mark(self.unresolved)
            self._wake.clear()
            if not await self.pass_once():
                await asyncio.sleep(KAFKA_BACKOFF_SECONDS)

    async def pass_once(self) -> bool:
        """Look at every marked user once; False when the broker refused a write (kept marked)."""
        if not self.active:
            self._idle.set()
            return True
        chosen = sorted(self._marked)
        self._marked.clear()
        view = view_of(self._storage.resources())
        INGRESS_STATE.labels(kind="users").set(len(view.users))
        INGRESS_STATE.labels(kind="groups").set(len(view.groups))
        for index, user_id in enumerate(chosen):
            if not self.active:
                return True
            try:
                await self._consider(view, user_id)
            except KafkaError as error:
                log.warning("ingress.emit_failed", error=type(error).__name__)
                self.mark(chosen[index:])
                return False
        INGRESS_UNRESOLVED.set(len(self.unresolved))
        INGRESS_MAPPING_MISSES.set(len({m for found in self._misses.values() for m in found}))
        if not self._marked:
            self._idle.set()
        return True

    async def _consider(self, view: IdpView, user_id: str) -> None:
        desired = desired_state(view, user_id, self._policy)
        if desired is not None and desired.misses:
            self._misses[user_id] = desired.misses
        else:
            self._misses.pop(user_id, None)
        previous = self.emitted.get(user_id)
        user = view.users.get(user_id)
        if user is None and previous is None:
            self.unresolved.discard(user_id)
            return
        if user is None:
            cxone_id = previous.cxone_user_id if previous is not None else ""
        else:
            try:
                cxone_id = await self._cxone_id(user_id, view, previous)
            except Unresolved as why:
                if user_id not in self.unresolved:
                    log.warning("ingress.user_unresolved", idp_user_id=user_id, reason=str(why))
                self.unresolved.add(user_id)
                return
        self.unresolved.discard(user_id)
        due = due_event(
            self._policy,
            idp_user_id=user_id,
            previous=previous,
            desired=desired,
            cxone_user_id=cxone_id,
            user_name=user.user_name if user is not None else None,
            source=self._source,
            now=self._clock(),
            approval_key=self._approval_key,
        )
        if due is None:
            return
        event, state = due
        value = event.model_dump_json(exclude_none=True).encode()
        await self._producer.send_and_wait(self._input_topic, value=value, key=cxone_id.encode())
        await self._journal.put(f"{EMITTED_PREFIX}{user_id}", state.to_json())
        self.emitted[user_id] = state
        INGRESS_EVENTS.labels(type=event.type.value).inc()
        log.info(
            "ingress.emitted",
            event_id=event.id,
            event_type=event.type.value,
            user_id=cxone_id,
            roles=list(state.roles),
            approval=state.ticket,
        )

    async def _cxone_id(self, user_id: str, view: IdpView, previous: EmittedState | None) -> str:
        # The id found once is kept with the emitted state: no search per change.
        if previous is not None:
            return previous.cxone_user_id
        return await self._directory.cxone_id(view.users[user_id])
