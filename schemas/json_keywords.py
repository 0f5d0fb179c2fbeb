"""What JSON Schema keywords say, read the same way in every draft: bounds, items,
types, local `$ref`s, and which keywords are annotations (for `schemas.json_compatibility`).
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string"})
"""A schema without `type`: every JSON type (`number` includes `integer`)."""
MAX_DEPTH = 96
"""Subschemas compared below one another before the answer is 'not decided'."""
MAX_STEPS = 20_000
"""Pairs of subschemas compared in one check (unions multiply them) before 'not decided'."""
APPLICATORS = ("not", "if", "oneOf", "dependentSchemas", "contains")
_GROUPS = (
    {"properties", "patternProperties", "additionalProperties"},
    {"prefixItems", "items", "additionalItems"},
    {"if", "then", "else"},
    {"contains", "minContains", "maxContains"},
)
UNDECIDED = (
    ("not",),
    ("if", "then", "else"),
    ("oneOf",),
    ("contains", "minContains", "maxContains"),
    ("dependentSchemas",),
    ("unevaluatedItems",),
    ("unevaluatedProperties",),
    ("$dynamicRef",),
    ("$recursiveRef",),
)
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$schema",
        "$id",
        "$anchor",
        "$defs",
        "definitions",
        "$vocabulary",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
        "$dynamicAnchor",
        "$recursiveAnchor",
    }
)


def esc(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def only_annotations(schema: Any) -> bool:
    return schema is True or (isinstance(schema, dict) and schema.keys() <= _ANNOTATIONS)


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def in_defs(ref: str) -> bool:
    return ref.startswith(("#/$defs/", "#/definitions/"))


def resolve(root: Any, ref: str) -> Any:
    """A local `#/...` pointer's target in `root`, or None (remote, anchor, absent)."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node = root
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node if isinstance(node, dict | bool) else None


def types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    if kind is None:
        return set(ALL_TYPES)
    return {kind} if isinstance(kind, str) else set(kind)


def lower(schema: dict[str, Any], integer: bool) -> tuple[float, bool] | None:
    """The tightest lower bound, (value, exclusive); draft 4's boolean form too."""
    bounds = []
    if number(schema.get("minimum")):
        bounds.append((schema["minimum"], schema.get("exclusiveMinimum") is True))
    if number(schema.get("exclusiveMinimum")):
        bounds.append((schema["exclusiveMinimum"], True))
    if integer:  # x > 2.5 and x >= 3 are one bound for integers
        bounds = [(math.floor(v) + 1, False) if ex else (math.ceil(v), False) for v, ex in bounds]
    return max(bounds, key=lambda b: (b[0], b[1])) if bounds else None


def upper(schema: dict[str, Any], integer: bool) -> tuple[float, bool] | None:
    bounds = []
    if number(schema.get("maximum")):
        bounds.append((schema["maximum"], schema.get("exclusiveMaximum") is True))
    if number(schema.get("exclusiveMaximum")):
        bounds.append((schema["exclusiveMaximum"], True))
    if integer:
        bounds = [(math.ceil(v) - 1, False) if ex else (math.floor(v), False) for v, ex in bounds]
    return min(bounds, key=lambda b: (b[0], not b[1])) if bounds else None


def lower_holds(reader: tuple[float, bool] | None, writer: tuple[float, bool] | None) -> bool:
    if reader is None:
        return True
    if writer is None:
        return False
    return writer[0] > reader[0] or (writer[0] == reader[0] and (writer[1] or not reader[1]))


def upper_holds(reader: tuple[float, bool] | None, writer: tuple[float, bool] | None) -> bool:
    def flip(bound: tuple[float, bool] | None) -> tuple[float, bool] | None:
        return None if bound is None else (-bound[0], bound[1])

    return lower_holds(flip(reader), flip(writer))


def fraction(value: float) -> Fraction:
    return Fraction(Decimal(repr(value)))


def items(schema: dict[str, Any]) -> tuple[list[Any], Any]:
    """(schemas of the first positions, schema of every later one), in any draft."""
    if isinstance(schema.get("prefixItems"), list):
        return schema["prefixItems"], schema.get("items", True)
    if isinstance(schema.get("items"), list):
        return schema["items"], schema.get("additionalItems", True)
    return [], schema.get("items", True)


def merged(parts: list[Any]) -> dict[str, Any] | None:
    """One schema equal to the intersection of `parts`, when they share no keyword and no
    group of keywords that read each other (`properties` with `additionalProperties`, …)."""
    dicts = [{} if p is True else p for p in parts]
    if not all(isinstance(p, dict) for p in dicts):
        return None
    merged: dict[str, Any] = {}
    for part in dicts:
        if merged.keys() & part.keys() - _ANNOTATIONS:
            return None
        if any(group & merged.keys() and group & part.keys() for group in _GROUPS):
            return None
        if "unevaluatedProperties" in part or "unevaluatedItems" in part:
            return None
        merged.update({k: v for k, v in part.items() if k not in merged})
    return merged


def without(schema: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in keys}
