"""The dead-letter tool's pure parts: a record's headers, positions, what may be re-driven."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from consumer.dead_letters import DeadLetter, parse_position, redrive_value, render_line
from consumer.errors import ConfigurationError

EVENT = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "okta/test",
    "type": "idp.user.roles.changed",
    "data": {"user_id": "u-1", "roles": [{"role_id": "agent_basic", "primary": True}]},
}


def _letter(value: bytes, **headers: str) -> DeadLetter:
    base = {
        "x-error-reason": "key_mismatch",
        "x-error-detail": "record has no key; the key must be the user id",
        "x-source-topic": "idp.role-changes",
        "x-source-partition": "3",
        "x-source-offset": "41",
    }
    return DeadLetter(
        partition=1,
        offset=7,
        timestamp=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        key=None,
        value=value,
        headers={**base, **headers},
    )


def test_a_line_says_where_when_why_whose_and_whence() -> None:
    """The line carries position, time, reason, key, origin and detail."""
    line = render_line(_letter(b"{}"))
    assert line == (
        "1:7  2026-12-01T12:00:00Z  key_mismatch      key (none)  from idp.role-changes/3@41  "
        "record has no key; the key must be the user id"
    )
    truncated = render_line(_letter(b"{", **{"x-truncated": "true", "x-original-size": "2000000"}))
    assert "TRUNCATED (original 2000000 bytes)" in truncated


def test_positions_parse_or_say_why() -> None:
    """`P:O` parses; anything else is one line naming the option."""
    assert parse_position(" 2:40 ") == (2, 40)
    for text in ("2", "a:1", "1:-1", ":3"):
        with pytest.raises(ConfigurationError, match="is not PARTITION:OFFSET"):
            parse_position(text)


def test_a_valid_record_is_redriven_as_it_is() -> None:
    """A dead letter whose bytes are a valid event (a key mismatch) needs no fix."""
    value = json.dumps(EVENT).encode()
    event, chosen = redrive_value(_letter(value), None, max_record_bytes=1_048_576)
    assert (event.user_id, chosen) == ("u-1", value)


def test_a_fix_replaces_the_record_and_is_validated() -> None:
    """The fix is what goes out, validated by the consumer's parser."""
    fixed = json.dumps(EVENT).encode()
    event, chosen = redrive_value(_letter(b"{"), fixed, max_record_bytes=1_048_576)
    assert (event.id, chosen) == ("evt-1", fixed)
    with pytest.raises(ConfigurationError, match=r"invalid event \(invalid_json\)"):
        redrive_value(_letter(b"{"), None, max_record_bytes=1_048_576)


def test_a_truncated_letter_needs_the_whole_fixed_event() -> None:
    """A dead letter holding a prefix is never re-driven as it is."""
    letter = _letter(json.dumps(EVENT).encode(), **{"x-truncated": "true"})
    with pytest.raises(ConfigurationError, match="give the whole, fixed event with --from-file"):
        redrive_value(letter, None, max_record_bytes=1_048_576)
