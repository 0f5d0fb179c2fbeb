"""CSV cells that a spreadsheet will not run as formulas (OWASP "CSV injection").

No route offers CSV output yet; any route that does must write its cells through
`safe_cell` / `csv_rows`. A cell starting with `=`, `+`, `-`, `@`, a tab, a carriage
return or NUL is prefixed with a single quote, which spreadsheets show as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")


def safe_cell(value: object) -> str:
    """`value` as a CSV cell a spreadsheet will not evaluate."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_rows(rows: Iterable[Iterable[object]]) -> str:
    """The rows as CSV text (RFC 4180 quoting), every cell passed through `safe_cell`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()
