"""masklite.markdown: the one Markdown table every report writer uses."""

from __future__ import annotations

from masklite.markdown import markdown_table


def test_markdown_table_aligns_and_keeps_empty_cells_narrow() -> None:
    lines = markdown_table(["rank", "layer", "drop"], [[1, "conv `a`", "3.0%"], ["…", "", ""]], align="rl")
    assert lines == [
        "| rank | layer | drop |",
        "|---:|---|---|",
        "| 1 | conv `a` | 3.0% |",
        "| … | | |",
    ]
    assert markdown_table(["a"], []) == ["| a |", "|---|"]
