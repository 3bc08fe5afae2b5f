"""Tests of the benchmark's pure helpers: its workload, its statistics and its counting."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.__main__ import command_line
from bench.ratelimit import count_requests
from bench.report import Table, cell
from bench.stats import parse_stat_ticks, parse_status_kib, percentile
from bench.workload import ROLE_CYCLE, role_change, role_of, user_number
from consumer.catalog import load_policy
from consumer.events import parse_event
from consumer.policy import evaluate

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"


def test_users_take_turns() -> None:
    """Consecutive events are about consecutive users, wrapping after the last one."""
    assert [user_number(sequence, 3) for sequence in range(7)] == [1, 2, 3, 1, 2, 3, 1]


def test_each_turn_gives_the_next_role() -> None:
    """A user's next event gives the next role of the cycle, so it always adds a role."""
    roles = [role_of(sequence, 2) for sequence in range(0, 2 * len(ROLE_CYCLE) + 1, 2)]
    assert roles == [*ROLE_CYCLE, ROLE_CYCLE[0]]


def test_generated_events_are_allowed_and_never_pure_revocations() -> None:
    """Every generated event is valid, allowed by the example policy, and adds a role."""
    policy = load_policy(EXAMPLE_POLICY)
    held = {number: ("agent_basic",) for number in range(1, 5)}
    for sequence in range(4 * 2 * len(ROLE_CYCLE)):
        key, value = role_change(sequence, 4, run="test")
        event = parse_event(value)
        assert key == event.user_id.encode()
        number = user_number(sequence, 4)
        decision = evaluate(policy, event, held[number], active=True, now=datetime.now(UTC))
        assert decision.allowed
        assert not decision.is_revocation
        held[number] = decision.role_ids


def test_percentile_is_nearest_rank() -> None:
    """p50 of 1..10 is 5, p99 is 10, and no values give NaN."""
    values = [float(value) for value in range(10, 0, -1)]
    assert percentile(values, 0.5) == 5.0
    assert percentile(values, 0.99) == 10.0
    assert percentile(values, 0.0) == 1.0
    assert math.isnan(percentile([], 0.5))


def test_percentile_refuses_a_fraction_outside_zero_to_one() -> None:
    """A fraction of 50 (a percent, not a fraction) is an error."""
    with pytest.raises(ValueError, match="fraction"):
        percentile([1.0], 50)


def test_parse_status_reads_kib_fields() -> None:
    """VmRSS and VmHWM are read in KiB; a missing field is None."""
    text = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert parse_status_kib(text, "VmRSS") == 102400
    assert parse_status_kib(text, "VmHWM") == 204800
    assert parse_status_kib(text, "VmSwap") is None


def test_parse_stat_survives_a_command_name_with_spaces_and_parentheses() -> None:
    """utime + stime are fields 14 and 15, counted after the parenthesised command name."""
    fields = ["S", *[str(n) for n in range(4, 14)], "250", "50", *["0"] * 10]
    text = "1234 (odd) name (x)) " + " ".join(fields)
    assert parse_stat_ticks(text) == 300


def test_count_requests_counts_scim_requests_in_the_window_by_answer() -> None:
    """Only SCIM paths inside [start, end) count, split into 2xx, 429 and other answers."""
    log = [
        {"path": "/scim/v2/Users/u-1", "received_at": 10.0, "status": 200},
        {"path": "/scim/v2/Users/u-1", "received_at": 11.0, "status": 429},
        {"path": "/scim/v2/Users/u-2", "received_at": 12.0, "status": 503},
        {"path": "/scim/v2/Users/u-2", "received_at": 13.0, "status": None},
        {"path": "/auth/token", "received_at": 12.0, "status": 200},
        {"path": "/scim/v2/Users/u-3", "received_at": 40.0, "status": 200},
    ]
    counts = count_requests(log, 10.0, 40.0)
    assert (counts.total, counts.ok, counts.throttled, counts.other) == (4, 1, 1, 2)
    assert counts.per_minute == 8.0
    assert counts.throttled_share == 25.0


def test_cells_round_and_mark_missing_values() -> None:
    """Floats are rounded with separators, ints separated, None and NaN shown as '-'."""
    assert cell(1234.567, 1) == "1,234.6"
    assert cell(1234567) == "1,234,567"
    assert cell(None) == "-"
    assert cell(math.nan) == "-"


def test_table_renders_markdown_with_notes() -> None:
    """A table renders its title, header, rows and notes as Markdown."""
    table = Table("t", "what", ["a", "b"], notes=["n"])
    table.add("1", "2")
    assert table.markdown() == "## t\n\nwhat\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n\n- n\n"


def testcommand_line_leaves_out_the_output_file() -> None:
    """The results file records the command without where it was written."""
    line = command_line(["ratelimit", "--output", "x.md", "--burst", "10", "--output=y.md"])
    assert line == "python -m bench ratelimit --burst 10"
