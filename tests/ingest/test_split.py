from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.split import Unsplittable, split_json_events

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.lists(st.dictionaries(st.text(max_size=5), _json, max_size=4), max_size=6),
       st.sampled_from(["", " ", "\n  ", "\t"]))  # fmt: skip
def test_array_elements_come_back_byte_for_byte(items: list[object], ws: str) -> None:
    encoded = [json.dumps(item, indent=1 if len(ws) > 1 else None) for item in items]
    body = ("[" + ws + ("," + ws).join(encoded) + ws + "]").encode()
    assert split_json_events(body) == [e.encode() for e in encoded]


def test_single_object_is_the_whole_body() -> None:
    body = b' {"type": "x"} '
    assert split_json_events(body) == [body]


@pytest.mark.parametrize("body", [b"", b"42", b'"s"', b"[1, 2", b"nonsense"])
def test_unsplittable_bodies(body: bytes) -> None:
    with pytest.raises(Unsplittable):
        split_json_events(body)
