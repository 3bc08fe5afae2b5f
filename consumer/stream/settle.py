"""Late writes: a request the service gave up on may still land; its users are read again later.

Nothing can recall a request already sent. A PUT abandoned on a timeout, or cancelled by a
shutdown or a handover, may be applied by CXone after the service wrote a newer state, putting an
older one back. So each user such a request may have touched is read again once it can no longer
land, `settle_after` seconds later, and the newest event's state is written back when CXone holds
anything else:

* a user whose PUT got no answer (a timeout, a reset) in this process: from when it gave up;
* a user whose records were read ahead after an assignment: the previous owner may have left a
  request behind (cancelled by its shutdown or handover, or sent before it was paused), from
  when the read-ahead was dispatched.

The watch keeps the time, the user's newest applied item, and the item whose record the stream
consumer holds uncommitted until the look is done when its own write got no answer (`held`): a
handover or a restart before then redelivers that record, and the next owner reads the user again
instead (it was read ahead). The stream consumer runs the second look through its dispatcher, in
the user's order, and counts what it had to put back. A look is done when it has read the user
(`looked`), or when a newer write of the user was made after the look fell due (`applied`): that
write read the user after the bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Due(Generic[T]):
    at: float
    # The newest state applied to the user, and the item whose record waits for the look.
    item: T
    held: T
    # Handed out by `take_due`: the look is running or queued.
    looking: bool = False


class LateWriteWatch(Generic[T]):
    """The users to read again once a request the service gave up on can no longer land."""

    def __init__(self, settle_after: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if settle_after < 0:
            raise ValueError("settle_after cannot be negative")
        self.settle_after = settle_after
        self._clock = clock
        self._due: dict[str, _Due[T]] = {}
        self._abandoned: set[str] = set()

    def __len__(self) -> int:
        return len(self._due)

    def abandoned(self, user_id: str) -> None:
        """A PUT on `user_id` got no answer: it may land later (the SCIM client's hook)."""
        self._abandoned.add(user_id)

    def take_abandoned(self, user_id: str) -> bool:
        """Whether a PUT on `user_id` got no answer since the last call for that user."""
        if user_id in self._abandoned:
            self._abandoned.discard(user_id)
            return True
        return False

    def expect(self, user_id: str, item: T) -> T | None:
        """Read `user_id` again `settle_after` from now, with `item` as its newest state and its
        record held; returns the item held until now for that user, no longer held."""
        at = self._clock() + self.settle_after
        due = self._due.get(user_id)
        self._due[user_id] = _Due(at if due is None else max(due.at, at), item, item)
        return None if due is None else due.held

    def applied(self, user_id: str, item: T) -> T | None:
        """`item` is now the newest state written (or found) for `user_id`. Returns the held item
        when that write was made after the user's look fell due: the look is done."""
        due = self._due.get(user_id)
        if due is None:
            return None
        if due.looking:
            del self._due[user_id]
            return due.held
        due.item = item
        return None

    def take_due(self) -> list[tuple[str, T]]:
        """The users whose second look is due now, with their newest item, each handed out
        once; each stays watched until `looked` or a newer write (`applied`)."""
        now = self._clock()
        ready: list[tuple[str, T]] = []
        for user, due in self._due.items():
            if not due.looking and due.at <= now:
                due.looking = True
                ready.append((user, due.item))
        return ready

    def looked(self, user_id: str) -> T | None:
        """The user's look read it; returns the held item, now released. Nothing if the user was
        expected again since the look was handed out (a newer look is due)."""
        due = self._due.get(user_id)
        if due is None or not due.looking:
            return None
        del self._due[user_id]
        return due.held

    def forget(self, gone: Callable[[T], bool]) -> int:
        """Drop the users whose held item `gone` says this member no longer owns."""
        dropped = [user for user, due in self._due.items() if gone(due.held)]
        for user in dropped:
            del self._due[user]
        return len(dropped)
