"""How deeply an event may nest, checked on its bytes before anything decodes it.

JSON decoders recurse: msgspec raises `RecursionError` at a depth that depends on the
caller's stack, and a raw value skipped by serde has no limit at all. So the door's
compiled path, the Python door and the stream could disagree about the same bytes,
and an event the door accepted could fail in the stream forever. One explicit cap,
read the same way everywhere (`fastpath/src/lib.rs` mirrors `json_depth`), makes them
agree by construction: an event nesting deeper than `MAX_DEPTH` is rejected `too_deep`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from schemas.outcome import Violation

MAX_DEPTH = 64
"""Containers an event may nest, the event itself being level 1 (`{"data": {}}` is 2)."""

TOO_DEEP = Violation("too_deep", "$", f"nests objects or arrays deeper than {MAX_DEPTH} levels")

_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)
"""A string (a backslash skips the next byte; an unterminated one runs to the end), or a
bracket. Every alternative is disjoint and the pattern always matches: linear, no backtracking."""


def json_depth(raw: bytes, stop_past: int | None = None) -> int:
    """The deepest nesting of brackets outside strings in `raw` (any bytes, valid JSON or
    not; a closing bracket never takes the depth below zero). With `stop_past`, the scan
    stops as soon as the depth passes it."""
    depth = deepest = 0
    for token in _TOKENS.finditer(raw):
        first = raw[token.start()]
        if first in b"{[":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_past is not None and depth > stop_past:
                    return deepest
        elif first in b"}]":
            depth = max(depth - 1, 0)
    return deepest


def too_deep_python(raw: bytes, cap: int = MAX_DEPTH) -> bool:
    """Whether `raw` nests deeper than `cap`, in Python (the definition the compiled one
    follows). Fewer than `cap + 1` opening brackets cannot: most events stop at the count."""
    if raw.count(b"{") + raw.count(b"[") <= cap:
        return False
    return json_depth(raw, stop_past=cap) > cap


_ITEM_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{},]', re.DOTALL)
"""`_TOKENS` with the comma: what separates an array's items."""


def outer_items_past(raw: bytes, cap: int) -> bool:
    """Whether an outermost array of `raw` holds more than `cap` items: the body itself
    when it is an array, or else each array that is a member of the top-level object
    (`{"events": [...]}`, `{"batch": [...]}`), counted by its commas at its own level
    outside strings (an upper bound: `[]` counts one). Any bytes, valid JSON or not.

    A splitter decodes a body into one object per item before anyone can count them: a
    6 MB array of three million `0`s once took 214 MiB that way before being refused
    `too_many_events`. This reads the bytes once and allocates nothing per item."""
    if raw.count(b",") < cap:
        return False
    depth, items = 0, 0
    counted: int | None = None  # the level of the array being counted
    for token in _ITEM_TOKENS.finditer(raw):
        first = raw[token.start()]
        if first in b"[{":
            depth += 1
            if counted is None and first == ord("[") and depth <= 2:
                counted, items = depth, 1
        elif first in b"]}":
            if counted == depth:
                counted = None
            depth = max(depth - 1, 0)
        elif first == ord(",") and counted == depth:
            items += 1
            if items > cap:
                return True
    return False


try:  # Sluice's own extension (fastpath/): one call per request or envelope, ~20 ns an event
    from sluice_fastpath import too_deep as _compiled_too_deep
    from sluice_fastpath import too_many_items as _compiled_too_many_items
except ImportError:  # not built: the same rules, in Python (~0.3 µs an event)
    _compiled_too_deep = None  # type: ignore[assignment]
    _compiled_too_many_items = None  # type: ignore[assignment]


def too_deep_indexes(raws: Sequence[bytes], cap: int = MAX_DEPTH) -> list[int]:
    """The indexes of the events of `raws` that nest deeper than `cap`."""
    if _compiled_too_deep is not None:
        return _compiled_too_deep(raws, cap)
    return [index for index, raw in enumerate(raws) if too_deep_python(raw, cap)]


def too_many_items(raw: bytes, cap: int) -> bool:
    """`outer_items_past`, compiled when built (a 6 MB body in a few milliseconds)."""
    if _compiled_too_many_items is not None:
        return _compiled_too_many_items(raw, cap)
    return outer_items_past(raw, cap)
