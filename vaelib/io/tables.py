"""Plain-text tables: the one formatter behind every table a notebook prints (and nbval compares)."""

from __future__ import annotations

from typing import Any


def format_table(rows: list[dict[str, Any]], columns: list[str] | None = None, floats: str = ".4g") -> str:
    """An aligned text table of `columns` (default: the first row's keys); floats formatted with `floats`,
    None shown as '-', a rule of dashes under the header, no trailing spaces."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0]) if columns is None else columns

    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:{floats}}" if isinstance(v, float) else str(v)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = [columns, ["-" * w for w in widths], *cells]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)
