"""Exported CSV cells never start with something a spreadsheet evaluates."""

from __future__ import annotations

import csv
import io

import pytest

from producer_api.csv_export import csv_rows, safe_cell


@pytest.mark.parametrize(
    "dangerous",
    ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "\0x", '=HYPERLINK("http://x")'],
)
def test_formula_starts_are_escaped(dangerous: str) -> None:
    assert safe_cell(dangerous) == "'" + dangerous


@pytest.mark.parametrize("plain", ["abc", "1", "", "a=b", " =x", "1-2"])
def test_other_cells_are_unchanged(plain: str) -> None:
    assert safe_cell(plain) == plain


def test_rows_round_trip_through_a_csv_reader_with_escaped_cells() -> None:
    text = csv_rows([["id", "note"], ["e1", "=cmd|' /C calc'!A0"], [None, 'say "hi", bye']])
    assert list(csv.reader(io.StringIO(text))) == [
        ["id", "note"],
        ["e1", "'=cmd|' /C calc'!A0"],
        ["", 'say "hi", bye'],
    ]
