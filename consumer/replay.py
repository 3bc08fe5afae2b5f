"""Replay: re-apply a range of the input topic to bring CXone back in line with the IdP.

Replay reads outside the consumer group (it commits nothing and disturbs no live consumer), up
to the end offsets it captured when it started, and stops there (see `replay_range`). Per user,
the events of the range are folded into one write, judged event by event as the live path does,
and every older event is audited with its own decision. A user with an event beyond the range is
left to the live consumer: replaying their older state could put it back after the newer one was
written.
Replay looks for such events again just before it writes each user (the users about to be written
share one look), so one that arrived while the replay ran is seen too.

The mass-revocation guard counts the revocations of the whole run; once it trips the replay
stops starting users and ends with exit code 3. `--dry-run` writes and publishes nothing and
prints what would change; `--max-writes N` runs a dry pass first and writes nothing when it would
write more than N users.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import cast

import structlog

from consumer.catalog import Policy, load_policy
from consumer.events import Mode, Outcome, SyncResult
from consumer.observability.http import HealthState
from consumer.progress import ReplayProgress
from consumer.replay_range import (
    WINDOW_EVENTS,
    Entry,
    RangeReader,
    ReplayRange,
    Window,
    open_range,
    parse_offsets,
    read_range,
)
from consumer.results import Queued, superseded_result
from consumer.scim.client import Plan, ScimClient, ScimUser, WriteOutcome
from consumer.service import Tuning, open_cxone
from consumer.settings import Settings
from consumer.stream.kafka import producer_for_broker
from consumer.stream.publisher import AuditPublisher
from consumer.sync import Synchronizer

__all__ = [
    "ExitCode",
    "ReplayRange",
    "ReplaySummary",
    "describe",
    "parse_offsets",
    "read_range",
    "replay",
    "summary_lines",
]

log = structlog.get_logger(__name__)


class ExitCode(IntEnum):
    """How a replay ended, as the command's exit code."""

    OK = 0
    FAILED = 1
    GUARD_TRIPPED = 3
    TOO_MANY_WRITES = 4


@dataclass
class ReplaySummary:
    """What a replay read and did: counts, and every result only when `keep_results`."""

    records: int = 0
    invalid: int = 0
    users: int = 0
    results: list[SyncResult] = field(default_factory=list)
    keep_results: bool = True
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    # Results that carry a payload: a user written (or, dry-running, one that would be).
    writes: int = 0
    # Revocations the guard refused to let through, and the users never started after it.
    held: int = 0
    not_started: int = 0
    revocation_limit: int | None = None
    # With --max-writes: how many writes the dry pass counted, when that was too many.
    refused_writes: int | None = None
    max_writes: int | None = None

    def record(self, result: SyncResult) -> None:
        """Count one result (and keep it, when results are kept)."""
        self.outcomes[result.outcome] += 1
        if result.payload_sha256 is not None:
            self.writes += 1
        if self.keep_results:
            self.results.append(result)

    @property
    def total(self) -> int:
        """How many results there were."""
        return sum(self.outcomes.values())

    def count(self, outcome: Outcome) -> int:
        """How many results had this outcome."""
        return self.outcomes[outcome]

    @property
    def exit_code(self) -> ExitCode:
        """0 when everything was applied or rightly refused; non-zero otherwise."""
        if self.held:
            return ExitCode.GUARD_TRIPPED
        if self.refused_writes is not None:
            return ExitCode.TOO_MANY_WRITES
        if self.count(Outcome.FAILED):
            return ExitCode.FAILED
        return ExitCode.OK


class RevocationsHeld(Exception):
    """The replay's guard refused a revocation: the replay stops."""


class _RunGate:
    """The replay's mass-revocation guard: at most `limit` revocations in the whole run."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.admitted = 0
        self.held = 0

    @property
    def tripped(self) -> bool:
        """Whether a revocation was refused; no new user starts after that."""
        return self.held > 0

    async def admit(self) -> bool:
        """Let one revocation through, or refuse it once the limit is reached."""
        if self.limit is None:
            return False
        if self.tripped or self.admitted >= self.limit:
            if not self.tripped:
                log.warning("replay.guard_tripped", max_revocations=self.limit)
            self.held += 1
            raise RevocationsHeld
        self.admitted += 1
        return False


async def replay(
    settings: Settings,
    selection: ReplayRange,
    *,
    dry_run: bool,
    echo: Callable[[str], None],
    tuning: Tuning | None = None,
    max_revocations: int | None = None,
    max_writes: int | None = None,
    progress: ReplayProgress | None = None,
    keep_results: bool = True,
    window: int = WINDOW_EVENTS,
) -> ReplaySummary:
    """Re-apply each user's events in the range, folded; audit everything unless dry-running.

    The summary keeps every result only with `keep_results` (the command counts them instead,
    so its memory does not grow with the range).
    """
    policy = load_policy(settings.policy_file)
    progress = progress or ReplayProgress(interactive=False)
    async with open_range(settings, selection, progress) as reader:
        return await _replay_read(
            settings,
            policy,
            reader,
            dry_run=dry_run,
            echo=echo,
            tuning=tuning,
            max_revocations=max_revocations,
            max_writes=max_writes,
            progress=progress,
            keep_results=keep_results,
            window=window,
        )


async def _replay_read(
    settings: Settings,
    policy: Policy,
    reader: RangeReader,
    *,
    dry_run: bool,
    echo: Callable[[str], None],
    tuning: Tuning | None,
    max_revocations: int | None,
    max_writes: int | None,
    progress: ReplayProgress,
    keep_results: bool = True,
    window: int = WINDOW_EVENTS,
) -> ReplaySummary:
    """Apply what was read, looking past the range again before each user's write."""
    found = reader.found
    guard = policy.mass_revocation_guard
    limit = max_revocations
    if limit is None and guard is not None:
        limit = guard.max_revocations
    summary = ReplaySummary(
        records=found.records,
        invalid=found.invalid,
        users=len(found.last),
        revocation_limit=limit,
        max_writes=max_writes,
        keep_results=keep_results,
    )
    progress.start_applying(len(found.last))
    async with AsyncExitStack() as stack:
        cxone = await open_cxone(
            settings, stack, tuning=tuning or Tuning(), health=HealthState(), replay=True
        )
        if max_writes is not None and not dry_run:
            dry = ReplaySummary(keep_results=False)
            await _apply_all(settings, policy, cxone.scim, reader, dry, dry_run=True, window=window)
            writes = dry.writes
            if writes > max_writes:
                summary.refused_writes = writes
                progress.finish()
                return summary
        publisher: AuditPublisher | None = None
        if not dry_run:
            producer, _ = await producer_for_broker(settings, client_id="cxone-role-sync-replay")
            await producer.start()
            stack.push_async_callback(producer.stop)
            publisher = AuditPublisher(
                producer, audit_topic=settings.kafka_audit_topic, dlq_topic=settings.kafka_dlq_topic
            )
        await _apply_all(
            settings,
            policy,
            cxone.scim,
            reader,
            summary,
            dry_run=dry_run,
            gate=None if dry_run else _RunGate(limit),
            publisher=publisher,
            echo=echo,
            progress=progress,
            look_for_newer=None if dry_run else reader.look_for_newer,
            window=window,
        )
    progress.finish()
    return summary


async def _apply_all(
    settings: Settings,
    policy: Policy,
    scim: ScimClient,
    reader: RangeReader,
    summary: ReplaySummary,
    *,
    dry_run: bool,
    gate: _RunGate | None = None,
    publisher: AuditPublisher | None = None,
    echo: Callable[[str], None] = lambda _: None,
    progress: ReplayProgress | None = None,
    look_for_newer: Callable[[], Awaitable[None]] | None = None,
    window: int = WINDOW_EVENTS,
) -> None:
    """Apply every user's folded events, at most SYNC_MAX_CONCURRENCY at once, window by window.

    A range longer than a window is applied window after window: a user with events in several
    windows is written once per window, in order, each write folding that window's events.
    """
    found = reader.found
    not_started: set[str] = set()
    if look_for_newer is not None:
        look = look_for_newer

        async def newer_after_look(user_id: str) -> bool:
            await look()
            return user_id in found.newer

        # Duck-typed: the synchronizer only calls `update_user`, which this wraps.
        scim = cast(ScimClient, _LookBeforeWrite(scim, newer_after_look))
    synchronizer = Synchronizer(
        policy,
        scim,
        dry_run=dry_run,
        gate=gate,
        approval_key=settings.approval_hmac_key,
    )
    slots = asyncio.Semaphore(settings.sync_max_concurrency)

    async def record(result: SyncResult) -> None:
        summary.record(result)
        if publisher is not None:
            await publisher.publish_result(result)

    async def one(user_id: str, entries: list[Entry]) -> None:
        *older, (event, source) = entries
        async with slots:
            if gate is not None and gate.tripped:
                not_started.add(user_id)
                return
            newer = found.newer.get(user_id)
            last = found.last.get(user_id, entries[-1])
            if newer is not None:
                # The live consumer owns this user's newer state; writing ours could undo it.
                superseding = newer
                older = entries
            elif user_id in found.owed_to_live:
                # The live consumer has yet to finish an event of this user and will write it:
                # the newest state written here could come before one of its older writes.
                superseding = last[0]
                older = entries[:-1] if entries[-1][1] == last[1] else entries
            else:
                received_at = time.monotonic()
                try:
                    applied = await synchronizer.apply(
                        event,
                        source=source,
                        received_at=received_at,
                        mode=Mode.REPLAY,
                        earlier=[Queued(old, position, received_at) for old, position in older],
                    )
                except RevocationsHeld:
                    return
                except NewerEventSeen:
                    # Arrived while the replay ran: the live consumer writes it, ours is moot.
                    superseding = found.newer[user_id]
                    older = entries
                    log.info("replay.left_to_live", user_id=user_id, newer_event_id=superseding.id)
                else:
                    await record(applied.result)
                    echo(describe(applied.result))
                    if progress is not None and source == last[1]:
                        # Counted once per user, at the write of their newest event.
                        progress.applied(applied.result)
                    # Each folded event has its own result, with its own decision.
                    for folded in applied.folded:
                        await record(folded)
                    return
        # Left to a newer event of the user that is not this replay's to write.
        for old, position in older:
            await record(
                superseded_result(
                    old,
                    superseding,
                    source=position,
                    mode=Mode.REPLAY,
                    processed_at=datetime.now(UTC),
                )
            )

    async def apply_window(window: Window) -> None:
        await asyncio.gather(*(one(user_id, entries) for user_id, entries in window.items()))

    await reader.windows(apply_window, size=window)
    summary.not_started = len(not_started)
    if gate is not None:
        summary.held = gate.held


class NewerEventSeen(Exception):
    """A newer event of the user was found between reading and writing it: nothing written."""


class _LookBeforeWrite:
    """The replay's CXone client: between reading a user and writing them, look past the range.

    The look comes after the read, right before the PUT: a newer event that was on the topic by
    then is seen, and the write is dropped (`NewerEventSeen`). When CXone gives ETags, a live
    write landing between our read and our PUT fails the PUT's `If-Match` (412), and the re-read
    looks again and finds the event that write came from.
    """

    def __init__(self, inner: ScimClient, newer: Callable[[str], Awaitable[bool]]) -> None:
        self._inner = inner
        self._newer = newer

    async def update_user(self, user_id: str, plan: Plan) -> WriteOutcome:
        """The inner client's read-modify-write, with the look between the plan and the PUT."""

        async def plan_then_look(before: ScimUser) -> bytes | None:
            payload = await plan(before)
            if payload is not None and await self._newer(user_id):
                raise NewerEventSeen(user_id)
            return payload

        return await self._inner.update_user(user_id, plan_then_look)


def describe(result: SyncResult) -> str:
    """One line: the user, what happened, and the role diff."""
    before = set(result.roles_before or ())
    after = set(result.roles_after or ())
    diff = " ".join(
        [f"+{role}" for role in sorted(after - before)]
        + [f"-{role}" for role in sorted(before - after)]
    )
    why = f" ({result.reason})" if result.reason else ""
    return f"{result.user_id}: {result.outcome.value}{why} {diff}".rstrip()


def summary_lines(
    summary: ReplaySummary, outcomes: Sequence[Outcome] = tuple(Outcome)
) -> list[str]:
    """The closing summary of a replay: what was read, a table of outcomes, and why it stopped."""
    lines = [
        f"read {summary.records} records ({summary.invalid} invalid, skipped),"
        f" {summary.users} users",
        f"  {'outcome':<11} {'count':>5}",
    ]
    lines += [
        f"  {outcome.value:<11} {summary.count(outcome):>5}"
        for outcome in outcomes
        if summary.count(outcome)
    ]
    lines.append(f"  {'total':<11} {summary.total:>5}")
    if summary.held:
        lines.append(
            f"replay stopped: the mass-revocation guard held {summary.held} revocation(s)"
            f" after {summary.revocation_limit} in this run ({summary.not_started} users not"
            " started). Check the IdP, then re-run; to allow more for this run:"
            " --max-revocations N"
        )
    if summary.refused_writes is not None:
        lines.append(
            f"replay refused: it would write {summary.refused_writes} users, more than"
            f" --max-writes {summary.max_writes}; nothing was written"
        )
    return lines
