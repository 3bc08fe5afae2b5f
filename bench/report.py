"""Result tables: printed to the terminal and written to the results file, both as Markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

Cell = str | int | float | None


def cell(value: Cell, digits: int = 1) -> str:
    """A table cell: floats rounded to `digits`, thousands separated; '-' for nothing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return value


@dataclass
class Table:
    """One measurement's results: a title, what was measured, the rows, and notes."""

    title: str
    description: str
    columns: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = math.nan

    def add(self, *values: str) -> None:
        """Append a row of already formatted cells."""
        self.rows.append(values)

    def markdown(self) -> str:
        """The table as a Markdown section."""
        lines = [f"## {self.title}", "", self.description, ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join(" --- " for _ in self.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        if not math.isnan(self.seconds):
            lines += ["", f"This part took {self.seconds:,.0f} s of wall-clock time."]
        return "\n".join(lines) + "\n"
