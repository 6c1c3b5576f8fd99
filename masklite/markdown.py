"""Markdown tables: one definition for every report writer (bench, robustness, training import it)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(headers: Sequence[object], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """The lines of one table. `align`: a letter per column, "r" right-aligns it (numbers), anything else
    (or a column past the string's end) is left-aligned."""
    rule = "|" + "|".join("---:" if align[i : i + 1] == "r" else "---" for i in range(len(headers))) + "|"
    return [markdown_row(headers), rule, *(markdown_row(row) for row in rows)]


def markdown_row(cells: Sequence[object]) -> str:
    """One table row; an empty cell stays one space wide."""
    return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"
