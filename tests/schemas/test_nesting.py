"""The nesting cap: read the same way for every JSON family, before any decoder recurses."""

from __future__ import annotations

import pytest

from schemas.nesting import MAX_DEPTH, json_depth, too_deep_indexes, too_deep_python
from schemas.validators import VALIDATORS, validate_all, validate_safely


def _nested(levels: int) -> bytes:
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b"{}", 1), (b'{"a":[1,{"b":[]}]}', 4), (b'"[[[["', 0), (b'{"a":"\\"[[["}', 1),
        (b"]]]{", 1), (b'"unterminated [[[', 0), (b"\\[", 1), (b"", 0),
    ],
)  # fmt: skip
def test_depth_counts_brackets_outside_strings(raw: bytes, depth: int) -> None:
    assert json_depth(raw) == depth


def test_the_cap_is_exact_and_the_compiled_check_agrees() -> None:
    assert json_depth(_nested(MAX_DEPTH)) == MAX_DEPTH
    raws = [_nested(MAX_DEPTH), _nested(MAX_DEPTH + 1), _nested(5000)]
    assert too_deep_indexes(raws) == [1, 2]
    assert [too_deep_python(raw) for raw in raws] == [False, True, True]


@pytest.mark.parametrize("family", sorted(VALIDATORS))
def test_every_json_family_refuses_past_the_cap_without_decoding(family: str) -> None:
    # `data` nested past Python's recursion limit: a decoder would raise RecursionError.
    deep = b'{"data":' + _nested(3000) + b"}"
    (outcome,) = validate_all(VALIDATORS[family], [deep], {})
    assert [v.code for v in outcome.violations] == ["too_deep"]  # type: ignore[union-attr]
    assert validate_safely(VALIDATORS[family], deep, {}) == outcome


def test_csv_rows_do_not_nest() -> None:
    row = b"2024-11-01," + b"[" * 100
    route = {"format": "csv", "provider": "p", "header": "usage_date,metric.cost"}
    (outcome,) = validate_all(VALIDATORS["datahub"], [row], route)
    assert "too_deep" not in [v.code for v in getattr(outcome, "violations", ())]
