"""What one check found: a verdict and one line saying why; how the lines and exit code read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    """How a check came out; `fail` means `run` would not work (or not safely) as configured."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    """One check's verdict, the thing checked, and one line of detail."""

    check: str
    verdict: Verdict
    detail: str


def ok(check: str, detail: str) -> Finding:
    """A check that passed."""
    return Finding(check, Verdict.OK, detail)


def warn(check: str, detail: str) -> Finding:
    """A check that passed with something worth a look."""
    return Finding(check, Verdict.WARN, detail)


def fail(check: str, detail: str) -> Finding:
    """A check that failed."""
    return Finding(check, Verdict.FAIL, detail)


CHECK_WIDTH = 14


def render(finding: Finding) -> str:
    """`ok    check          detail`: the verdict first, so a failure is seen at a glance."""
    return f"{finding.verdict.value:<5} {finding.check:<{CHECK_WIDTH}} {finding.detail}"


def summary(findings: Sequence[Finding]) -> str:
    """The last line: how many checks came out which way."""
    counts = Counter(finding.verdict for finding in findings)
    parts = ", ".join(f"{counts[verdict]} {verdict.value}" for verdict in Verdict)
    return f"doctor: {len(findings)} checks: {parts}"


def exit_code(findings: Iterable[Finding]) -> int:
    """0 when nothing failed (warnings included), 1 when any check failed."""
    return 1 if any(finding.verdict is Verdict.FAIL for finding in findings) else 0


def listing(items: Iterable[str], *, limit: int = 8) -> str:
    """`a, b, c` — or the first `limit` and how many more — for a detail line."""
    chosen = sorted(items)
    shown = ", ".join(chosen[:limit])
    return shown if len(chosen) <= limit else f"{shown} and {len(chosen) - limit} more"
