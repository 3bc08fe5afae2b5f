"""How far a replay is: one line redrawn in place on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

import structlog

from consumer.events import Outcome, SyncResult

log = structlog.get_logger(__name__)

_WRITTEN = frozenset({Outcome.SYNCED, Outcome.DRY_RUN})


class ReplayProgress:
    """Counts records read, users, writes and rejections; shows rate and ETA now and then."""

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._interactive = self._stream.isatty() if interactive is None else interactive
        self._clock = clock
        # A terminal line redraws often; a log line every few seconds is enough for a file.
        self._every = 0.2 if self._interactive else 5.0
        self._started = clock()
        self._shown = self._started
        self.phase = "reading"
        self.records = 0
        self.records_expected = 0
        self.users = 0
        self.users_done = 0
        self.writes = 0
        self.rejections = 0

    def read(self, count: int = 1) -> None:
        """Note records read."""
        self.records += count
        self._maybe_show()

    def start_applying(self, users: int) -> None:
        """Reading is over; `users` are to be applied."""
        self.phase = "applying"
        self.users = users
        self._started = self._clock()
        self._show()

    def applied(self, result: SyncResult) -> None:
        """Note one user's result."""
        self.users_done += 1
        if result.outcome in _WRITTEN or result.payload_sha256 is not None:
            self.writes += 1
        if result.outcome is Outcome.REJECTED:
            self.rejections += 1
        self._maybe_show()

    def finish(self) -> None:
        """End the redrawn line, so what follows starts on a line of its own."""
        self._show()
        if self._interactive:
            self._stream.write("\n")
            self._stream.flush()

    def line(self) -> str:
        """The progress as one line of text."""
        elapsed = max(self._clock() - self._started, 1e-9)
        if self.phase == "reading":
            done, total, unit = self.records, self.records_expected, "records"
        else:
            done, total, unit = self.users_done, self.users, "users"
        rate = done / elapsed
        eta = f"{(total - done) / rate:.0f}s" if rate > 0 and total > done else "-"
        return (
            f"replay {self.phase}: {self.records} records read, {self.users} users,"
            f" {self.writes} writes, {self.rejections} rejections,"
            f" {rate:.0f} {unit}/s, ETA {eta}"
        )

    def _maybe_show(self) -> None:
        if self._clock() - self._shown >= self._every:
            self._show()

    def _show(self) -> None:
        self._shown = self._clock()
        if self._interactive:
            self._stream.write("\r\x1b[2K" + self.line())
            self._stream.flush()
        else:
            log.info(
                "replay.progress",
                phase=self.phase,
                records=self.records,
                users=self.users,
                users_done=self.users_done,
                writes=self.writes,
                rejections=self.rejections,
            )
