"""What PostgreSQL can store: its text and jsonb types refuse the NUL character (`\\u0000`).

An event carrying one would be accepted and then refused by the sink's insert, so the
Baselime, Dynatrace and dakkio validators reject it up front with the path of every
offending key or string. The cheap byte test keeps the walk off the fast path.
"""

from __future__ import annotations

from typing import Any

from schemas.outcome import Violation

ESCAPED_NUL = b"\\u0000"
_MESSAGE = "the NUL character (\\u0000) cannot be stored"


def nul_violations(raw: bytes, decoded: Any) -> list[Violation]:
    """A violation per key or string of `decoded` (the JSON of `raw`) holding a NUL."""
    if ESCAPED_NUL not in raw:
        return []
    return [Violation("unsupported_character", path, _MESSAGE) for path in _paths(decoded, "$")]


def _paths(value: Any, path: str) -> list[str]:
    if isinstance(value, str):
        return [path] if "\x00" in value else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key.replace(chr(0), '?')}"
            found += [where] if "\x00" in key else []
            found += _paths(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, f"{path}[{index}]")
    return found
