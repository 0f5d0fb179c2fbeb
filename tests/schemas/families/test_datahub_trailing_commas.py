r"""DataHub's trailing-comma fallback: the regex's output, in time linear in the body.

The regex it replaced (`"(?:[^"\\]|\\.)*"|,(?=\s*[}\]])`) rescanned to the end of the
body from every quote of an unterminated string: 64 KB of escaped quotes blocked the API
process for 11 s (issue 15). It stays here only as the oracle of the scanner.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.families.datahub import blank_trailing_commas, decode_lenient

_OLD = re.compile(rb'"(?:[^"\\]|\\.)*"|,(?=\s*[}\]])', re.DOTALL)


def _blanked_by_the_old_regex(raw: bytes) -> bytes:
    return _OLD.sub(lambda m: b" " if m[0] == b"," else m[0], raw)


_PIECES = (b'"', b"\\", b",", b" ", b"\n", b"\r", b"\t", b"\x0b", b"\x0c", b"}", b"]",
           b"{", b"[", b":", b"a", b"1", b"\xc3\xa9", b"\xff", b"\\u00e9", b'\\"')  # fmt: skip
_jsonish = st.lists(st.sampled_from(_PIECES), max_size=80).map(b"".join)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=',"\\ }]x\n', max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def _json_with_trailing_commas(draw: st.DrawFn) -> bytes:
    """A JSON text with commas (and whitespace) inserted before some closing brackets."""
    text = json.dumps(draw(_json_values), indent=draw(st.sampled_from([None, 0, 2])))
    closers = [i for i, char in enumerate(text) if char in "}]"]
    inserts = draw(
        st.lists(
            st.sampled_from(["", ",", ", ", ",\n  ", ",\t"]),
            min_size=len(closers),
            max_size=len(closers),
        )
    )
    for at, insert in reversed(list(zip(closers, inserts, strict=True))):
        text = text[:at] + insert + text[at:]
    return text.encode()


@settings(max_examples=500)
@given(st.one_of(_jsonish, st.binary(max_size=80), _json_with_trailing_commas()))
def test_the_scanner_blanks_exactly_what_the_regex_blanked(raw: bytes) -> None:
    assert blank_trailing_commas(raw) == _blanked_by_the_old_regex(raw)


@given(_json_values)
def test_json_with_trailing_commas_decodes_as_without(value: Any) -> None:
    text = json.dumps(value, indent=1).replace("\n]", ",\n]").replace("\n}", ",\n}").encode()
    assert decode_lenient(text) == value


ADVERSARIAL = {
    "escaped quotes (11 s for 64 KB before)": b'\\"',
    "an unterminated string of commas (quadratic before)": b'\\", ]',
    "trailing commas": b", ]",
    "short strings and commas": b'"a\\"",',
    "commas then whitespace": b",      \n",
}


def _fastest(raw: bytes, runs: int) -> float:
    """The fastest of `runs` scans of `raw`, in seconds (fewer runs once one took 1 s)."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        blank_trailing_commas(raw)
        best = min(best, time.perf_counter() - started)
        if best > 1.0:
            break
    return best


@pytest.mark.parametrize("unit", ADVERSARIAL.values(), ids=list(ADVERSARIAL))
def test_adversarial_bodies_take_time_linear_in_their_size(unit: bytes) -> None:
    small = unit * (64 * 1024 // len(unit))
    large = unit * (1024 * 1024 // len(unit))
    small_seconds = _fastest(small, runs=3)
    large_seconds = _fastest(large, runs=2)
    print(f"FIGURE blank_trailing_commas 64 KiB {small_seconds:.4f} s, 1 MiB {large_seconds:.4f} s")
    # 16 times the bytes: linear is ~16 times the time, quadratic ~256 times; the slack
    # only absorbs a busy machine's noise. A ratio, not a speed: a slow machine is slow for
    # both sizes.
    assert large_seconds < 64 * small_seconds + 0.25
