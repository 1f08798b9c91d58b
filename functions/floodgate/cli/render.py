"""Plain-text tables for people at a terminal."""

from __future__ import annotations

from collections.abc import Sequence

from floodgate.core.text import printable


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[int] = ()) -> str:
    """Columns sized to their content; the indexes in `right` are right-aligned (numbers). Unprintable
    characters in a cell are escaped: a reason holding ANSI escapes or a newline cannot repaint the
    terminal or forge a row."""
    cells = [[str(h) for h in headers], *([printable(str(c)) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def rate(value: float, unit: str) -> str:
    """1234567 → "1.23 M" + unit; small values stay whole."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}"
