"""Markdown tables, as summary.md and the ``whatsreal criteria`` command print them.

One writer, so every table the project prints has the same layout (a header row, the
``|---|`` rule, one row per line) and a reader's Markdown viewer renders them all alike.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["markdown_table"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table: ``header``, its rule, then ``rows`` (cells already text)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines
