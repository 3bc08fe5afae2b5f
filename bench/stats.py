"""Small pure helpers: percentiles, and reading a process's memory and CPU from /proc."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` in 0..1) of `values`; NaN when there are none."""
    if not values:
        return math.nan
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must lie between 0 and 1")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def parse_status_kib(text: str, field: str) -> int | None:
    """A `kB` field (VmRSS, VmHWM, ...) of a /proc/<pid>/status text, in KiB."""
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name == field:
            parts = rest.split()
            return int(parts[0]) if parts else None
    return None


def parse_stat_ticks(text: str) -> int:
    """User plus system CPU clock ticks from a /proc/<pid>/stat line."""
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a live process, in KiB (empty once it has gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    found = {field: parse_status_kib(text, field) for field in ("VmRSS", "VmHWM")}
    return {field: value for field, value in found.items() if value is not None}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a live process has used; NaN once it has gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    return parse_stat_ticks(text) / os.sysconf("SC_CLK_TCK")
