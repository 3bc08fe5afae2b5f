"""Tests that the input events the README and docs show are valid events of the contract."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from consumer.events import parse_event

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.S)


def _input_events() -> list[str]:
    """Every JSON block of the README and docs that is an input event (names an idp.user type)."""
    blocks = [block for page in PAGES for block in JSON_BLOCK.findall(page.read_text())]
    return [block for block in blocks if '"specversion"' in block and '"idp.user.' in block]


def test_readme_shows_input_events() -> None:
    """The docs hold the contract's example and the worked IdP example."""
    assert len(_input_events()) >= 2


@pytest.mark.parametrize("block", _input_events())
def test_readme_input_event_is_valid(block: str) -> None:
    """Each input event shown in the docs is accepted by the consumer's own parser."""
    event = parse_event(block.encode())
    assert event.subject == event.user_id
