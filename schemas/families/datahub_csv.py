"""Validation of DataHub CSV rows: one row's raw text, read against the file's header.

A CSV upload becomes one raw event per row: the row's exact bytes, with the
header, the provider and `format=csv` in the route parameters. So a rejected
row is stored as the text it had in the file, and the stream re-reads it the
same way. Header: `usage_date[,id],<dimension columns>,<metric columns>`, with
dimension columns `fixed.<key>`, `label.<KEY>`, `project_label.<KEY>` and
metric columns `metric.<type>`. An empty dimension or metric cell is absent.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Mapping
from typing import Any

from schemas.families.datahub_fields import (
    DIMENSION_TYPES,
    FIXED_KEYS,
    canonical,
    check_provider,
    check_time,
)
from schemas.outcome import Outcome, Rejected, Violation, capped

MAX_COLUMNS = 256
_INTEGER = re.compile(r"[+-]?\d{1,18}")


def parse_record(text: str) -> list[str]:
    """The cells of one CSV record (which may span lines inside quotes)."""
    return next(csv.reader(io.StringIO(text)), [])


def header_violations(columns: list[str]) -> list[Violation]:
    """What is wrong with a CSV header, if anything (empty when it is usable)."""
    found: list[Violation] = []
    if len(columns) > MAX_COLUMNS:
        found.append(Violation("too_many_columns", "header", f"at most {MAX_COLUMNS} columns"))
    if len(set(columns)) != len(columns):
        found.append(Violation("duplicate_column", "header", "a column is named twice"))
    if "usage_date" not in columns:
        found.append(Violation("missing_column", "usage_date", "`usage_date` is required"))
    found += [v for name in columns for v in _column_violations(name)]
    kinds = {_kind(name) for name in columns}
    if not kinds & set(DIMENSION_TYPES):
        found.append(Violation("missing_column", "header", "at least one dimension column"))
    if "metric" not in kinds:
        found.append(Violation("missing_column", "header", "at least one metric.<type> column"))
    return found


def validate_csv_row(raw: bytes, route: Mapping[str, str]) -> Outcome:
    """One CSV row's raw bytes against the header and provider in `route`."""
    columns, problems = _read_header(route.get("header", ""), route.get("provider"))
    if problems:
        return Rejected(problems)
    try:
        cells = parse_record(raw.decode("utf-8"))
    except (UnicodeDecodeError, csv.Error) as exc:
        return Rejected((Violation("malformed_row", "row", f"not a CSV row: {exc}"),))
    if len(cells) != len(columns):
        message = f"{len(cells)} cells for {len(columns)} columns"
        return Rejected((Violation("column_count", "row", message),))
    row = dict(zip(columns, cells, strict=True))
    event_id = row.get("id") or None
    found = check_time(row["usage_date"] or None, "usage_date")
    data: dict[str, Any] = {"provider": route["provider"], "time": row["usage_date"]}
    data["dimensions"] = [
        {"type": _kind(name), "key": name.partition(".")[2], "value": value}
        for name, value in row.items()
        if _kind(name) in DIMENSION_TYPES and value
    ]
    metrics, metric_violations = _metrics(row)
    data["metrics"] = metrics
    found += metric_violations
    if found:
        return Rejected(capped(found, "row"), event_id)
    return canonical(event_id, data)


@functools.lru_cache(maxsize=64)
def _read_header(
    header: str, provider: str | None
) -> tuple[tuple[str, ...], tuple[Violation, ...]]:
    """A file's columns and what is wrong with them or the provider: once per file, not row."""
    columns = parse_record(header)
    problems = check_provider(provider, "provider") + header_violations(columns)
    return tuple(columns), tuple(problems)


def _kind(column: str) -> str:
    return column.partition(".")[0] if "." in column else column


def _column_violations(name: str) -> list[Violation]:
    kind, _, key = name.partition(".")
    if name in ("usage_date", "id"):
        return []
    if kind not in (*DIMENSION_TYPES, "metric") or not key:
        message = "not usage_date, id, fixed.<key>, label.<key>, project_label.<key>, metric.<type>"
        return [Violation("unknown_column", name, message)]
    if kind == "fixed" and key not in FIXED_KEYS:
        return [Violation("unknown_column", name, f"{key!r} is not a fixed dimension key")]
    return []


def _metrics(row: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[Violation]]:
    metrics: list[dict[str, Any]] = []
    found: list[Violation] = []
    for name, cell in row.items():
        if _kind(name) != "metric" or not cell.strip():
            continue
        value = _number(cell.strip())
        if value is None:
            found.append(Violation("invalid_number", name, f"not a number: {cell!r}"))
        else:
            metrics.append({"type": name.partition(".")[2], "value": value})
    if not metrics and not found:
        found.append(Violation("missing_metric", "metric", "a row needs at least one metric value"))
    return metrics, found


def _number(text: str) -> int | float | None:
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None
