"""The one Markdown table helper every section of ``docs/benchmarks.md`` is drawn with."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["table"]


def table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub Markdown table: ``header`` and one line per row.

    Cells are written with ``str``; ``None`` is an empty cell; a ``|`` inside a cell is
    escaped, so cells may hold any text.

    Example:
        >>> print(table(["n", "R²"], [[2, "0.95"], [5, None]]))
        | n | R² |
        |---|---|
        | 2 | 0.95 |
        | 5 |  |
    """
    header = list(header)
    lines = [_line(header), "|" + "---|" * len(header)]
    for row in rows:
        row = list(row)
        if len(row) != len(header):
            raise ValueError(f"row of {len(row)} cells under a header of {len(header)}: {row}")
        lines.append(_line(row))
    return "\n".join(lines)


def _line(cells: Sequence[object]) -> str:
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("\r", " ").replace("\n", " ").replace("|", "\\|")
