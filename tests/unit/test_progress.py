"""The replay's progress display: a redrawn line on a terminal, log lines otherwise."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from structlog.testing import capture_logs

from consumer.events import Outcome, SourcePosition, SyncResult
from consumer.progress import ReplayProgress


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def result(outcome: Outcome) -> SyncResult:
    """A replay result with the given outcome."""
    return SyncResult(
        event_id="e1",
        user_id="u-1",
        outcome=outcome,
        source=SourcePosition(topic="t", partition=0, offset=0),
        processed_at=datetime.now(UTC),
    )


def test_terminal_progress_redraws_one_line_with_rate_and_eta() -> None:
    """On a terminal, the line shows counts, the rate and the time left, redrawn in place."""
    clock = Clock()
    stream = io.StringIO()
    progress = ReplayProgress(stream=stream, interactive=True, clock=clock)
    progress.records_expected = 100
    clock.now += 2.0
    progress.read(40)
    assert progress.line() == (
        "replay reading: 40 records read, 0 users, 0 writes, 0 rejections, 20 records/s, ETA 3s"
    )
    progress.start_applying(4)
    clock.now += 1.0
    progress.applied(result(Outcome.SYNCED))
    progress.applied(result(Outcome.REJECTED))
    assert progress.line() == (
        "replay applying: 40 records read, 4 users, 1 writes, 1 rejections, 2 users/s, ETA 1s"
    )
    progress.finish()
    assert stream.getvalue().startswith("\r\x1b[2K")
    assert stream.getvalue().endswith("\n")


def test_without_a_terminal_progress_is_plain_log_lines() -> None:
    """Not on a terminal, progress is logged, and nothing is written to the stream."""
    clock = Clock()
    stream = io.StringIO()
    with capture_logs() as logs:
        progress = ReplayProgress(stream=stream, interactive=False, clock=clock)
        progress.read(3)
        clock.now += 6.0
        progress.read(2)
        progress.finish()
    assert stream.getvalue() == ""
    lines = [line for line in logs if line["event"] == "replay.progress"]
    assert [line["records"] for line in lines] == [5, 5]
