"""The users the breaker's probe reads: those the service asked CXone about most recently.

A probe must test what the service needs, which is reading and writing single users, not
searching: an API user may be allowed the one and not the other. Every user read or write notes
its user here; the probe reads one of them (`GET /Users/{id}`), newest first and in turn, so a
single user CXone refuses to this API user cannot keep the circuit open while others are served.
The circuit only opens on outcomes of such requests, so a user is known whenever it is open; the
search is the fallback of a client that has asked about no user yet.
"""

from __future__ import annotations

from collections import OrderedDict

REMEMBERED_USERS = 16
"""How many of the most recently asked-about users a probe may read, in turn."""


class ProbeTargets:
    """The most recently asked-about users, newest first, and whose turn it is to be probed."""

    def __init__(self, remember: int = REMEMBERED_USERS) -> None:
        if remember < 1:
            raise ValueError("remember must be at least 1")
        self._remember = remember
        # Oldest first: a noted user moves to the end.
        self._users: OrderedDict[str, None] = OrderedDict()
        self._turn = 0

    def note(self, user_id: str) -> None:
        """The service is about to read or write this user."""
        self._users[user_id] = None
        self._users.move_to_end(user_id)
        if len(self._users) > self._remember:
            self._users.popitem(last=False)

    def next(self) -> str | None:
        """The user the next probe reads, or None when no user is known (then: the search)."""
        if not self._users:
            return None
        newest_first = list(reversed(self._users))
        chosen = newest_first[self._turn % len(newest_first)]
        self._turn += 1
        return chosen

    def __len__(self) -> int:
        return len(self._users)
