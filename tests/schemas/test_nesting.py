"""The nesting cap: read the same way for every JSON family, before any decoder recurses."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.nesting import (
    MAX_DEPTH,
    json_depth,
    outer_items_past,
    too_deep_indexes,
    too_deep_python,
    too_many_items,
)
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


@pytest.mark.parametrize(
    ("raw", "cap", "past"),
    [
        (b"[1,2,3]", 2, True), (b"[1,2,3]", 3, False), (b"[]", 1, False),
        (b'{"events":[1,2,3]}', 2, True), (b'{"a":[1],"b":[2,3,4]}', 2, True),
        (b'{"a":[1],"b":[2,3]}', 2, False), (b'["a,b,c,d"]', 2, False),
        (b'[{"x":[1,2,3,4]}]', 2, False), (b'{"a":{"b":[1,2,3,4]}}', 2, False),
        (b'{"x":1,"y":2,"z":3}', 2, False), (b'[1,"\\",",2]', 1, True), (b"[1,2,3", 2, True),
        (b'[[1,2,3,4],[5]]', 2, False), (b"]],,,[", 1, False),
    ],
)  # fmt: skip
def test_items_of_outermost_arrays_are_counted_outside_strings(
    raw: bytes, cap: int, past: bool
) -> None:
    assert outer_items_past(raw, cap) is past
    assert too_many_items(raw, cap) is past  # the compiled reading agrees


_PIECES = st.sampled_from(
    [b"[", b"]", b"{", b"}", b",", b'"', b"\\", b":", b"1", b" ", b'"a,b"', b"\\u0022", b"x"]
)


@given(st.lists(_PIECES, max_size=60).map(b"".join), st.integers(min_value=1, max_value=6))
@settings(max_examples=2000, deadline=None)
def test_the_compiled_item_count_reads_any_bytes_as_the_python_one(raw: bytes, cap: int) -> None:
    assert too_many_items(raw, cap) is outer_items_past(raw, cap)


def test_three_million_items_are_refused_without_splitting() -> None:
    """The body that once took 214 MiB to refuse: counted in place, nothing allocated."""
    raw = b"[" + b"0," * 3_000_000 + b"0]"
    tracemalloc.start()
    try:
        assert too_many_items(raw, 10_000) and outer_items_past(raw, 10_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, peak
