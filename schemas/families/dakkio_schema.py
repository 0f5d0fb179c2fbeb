"""A dakkio data source's `schema` and the JSON Schema of its data contract, both ways.

dakkio describes a data source's fields as an object of field name → `{"type": "number" |
"string" | "boolean", "unit"?, "description"?}`. Sluice keeps that as the latest version of
the registry subject `dakkio.<dataSourceId>`, whose schema validates the document
`{"values": …, "metadata": …}` of each point (`schemas.contracts.document_of`). The
mapping (docs/api.md, dakkio data sources):

* each field becomes a property of `values` with its `type`; `unit` is kept as the
  annotation `x-unit`, `description` as `description`;
* Sluice's additions to a field: `required: true` lists it in `values.required`, and
  `min` / `max` (numbers only) become `minimum` / `maximum`;
* `values` is closed (`additionalProperties: false`): a point may carry only declared
  fields. So adding a field is a compatible change (BACKWARD), while removing one,
  changing its type, narrowing its bounds or making it required is not;
* `metadata` is left free.

Pure: parsing reports every problem as (path inside the schema, message), as zod would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FIELD_TYPES = ("number", "string", "boolean")
FIELD_KEYS = frozenset({"type", "unit", "description", "required", "min", "max"})
MAX_FIELDS = 1000
MAX_NAME_CHARS = 256
MAX_TEXT_CHARS = 1000
UNIT = "x-unit"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

Problem = tuple[tuple[str, ...], str]
"""Where in the `schema` object (field name, key) and what is wrong."""


@dataclass(frozen=True)
class Field:
    """One declared field of a data source."""

    name: str
    type: str
    unit: str | None = None
    description: str | None = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None


def parse_fields(schema: Any) -> tuple[list[Field], list[Problem]]:
    """The fields of a dakkio `schema` object, or every problem with it."""
    if not isinstance(schema, dict):
        return [], [((), f"Expected object, received {_kind(schema)}")]
    if not schema:
        return [], [((), "Schema must define at least one field")]
    if len(schema) > MAX_FIELDS:
        return [], [((), f"Schema must define at most {MAX_FIELDS} fields")]
    fields: list[Field] = []
    problems: list[Problem] = []
    for name, spec in schema.items():
        field, found = _field(name, spec)
        problems += found
        if field is not None:
            fields.append(field)
    return fields, problems


def _field(name: str, spec: Any) -> tuple[Field | None, list[Problem]]:
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        return None, [((name,), f"Field names are 1-{MAX_NAME_CHARS} printable characters")]
    if not isinstance(spec, dict):
        return None, [((name,), f"Expected object, received {_kind(spec)}")]
    problems: list[Problem] = []
    unknown = sorted(set(spec) - FIELD_KEYS)
    if unknown:
        problems.append(((name,), f"Unrecognized key(s) in object: {', '.join(unknown)}"))
    kind = spec.get("type")
    if kind not in FIELD_TYPES:
        problems.append(((name, "type"), f"Expected {' | '.join(FIELD_TYPES)}"))
    for key in ("unit", "description"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT_CHARS):
            problems.append(((name, key), f"Expected string of at most {MAX_TEXT_CHARS}"))
    if not isinstance(spec.get("required", False), bool):
        problems.append(((name, "required"), "Expected boolean"))
    bounds = [_bound(name, key, spec.get(key), kind, problems) for key in ("min", "max")]
    low, high = bounds
    if low is not None and high is not None and low > high:
        problems.append(((name, "min"), "min must not be greater than max"))
    if problems:
        return None, problems
    return Field(name, str(kind), spec.get("unit"), spec.get("description"),
                 bool(spec.get("required", False)), low, high), []  # fmt: skip


def _bound(name: str, key: str, value: Any, kind: Any, problems: list[Problem]) -> float | None:
    if value is None:
        return None
    if kind != "number":
        problems.append(((name, key), f"{key} applies to number fields only"))
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
        problems.append(((name, key), "Expected number"))
        return None
    return value


def contract_of(fields: list[Field]) -> str:
    """The JSON Schema text of the data contract these fields declare (keys sorted, so
    the same fields are always the same text, and the registry the same version)."""
    properties: dict[str, Any] = {}
    for field in fields:
        prop: dict[str, Any] = {"type": field.type}
        if field.unit is not None:
            prop[UNIT] = field.unit
        if field.description is not None:
            prop["description"] = field.description
        if field.minimum is not None:
            prop["minimum"] = field.minimum
        if field.maximum is not None:
            prop["maximum"] = field.maximum
        properties[field.name] = prop
    values: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": False}  # fmt: skip
    required = [f.name for f in fields if f.required]
    if required:
        values["required"] = required
    document = {"$schema": DRAFT, "type": "object", "required": ["values"],
                "properties": {"values": values}}  # fmt: skip
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fields_of(contract: str) -> dict[str, Any]:
    """A contract's JSON Schema as a dakkio `schema` object: each property of `values`.

    Exact for what `contract_of` wrote. A schema registered through the registry in
    another shape shows what maps (a property's `type` when it is one name, `integer` as
    number, else `any`); the JSON Schema itself is shown beside it (`jsonSchema`)."""
    try:
        document = json.loads(contract)
    except ValueError:
        return {}
    values = _object_at(document, "properties", "values")
    properties = _object_at(values, "properties")
    listed = values.get("required")
    required: list[Any] = listed if isinstance(listed, list) else []
    return {name: _shown(prop, name in required) for name, prop in properties.items()}


def _shown(prop: Any, required: bool) -> dict[str, Any]:
    prop = prop if isinstance(prop, dict) else {}
    kind = prop.get("type")
    shown: dict[str, Any] = {"type": "number" if kind == "integer" else kind}
    if shown["type"] not in FIELD_TYPES:
        shown["type"] = "any"
    for source, target in ((UNIT, "unit"), ("description", "description"),
                           ("minimum", "min"), ("maximum", "max")):  # fmt: skip
        if prop.get(source) is not None:
            shown[target] = prop[source]
    if required:
        shown["required"] = True
    return shown


def _object_at(document: Any, *path: str) -> Mapping[str, Any]:
    for key in path:
        document = document.get(key) if isinstance(document, dict) else None
    return document if isinstance(document, dict) else {}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "array"
    return {bool: "boolean", str: "string", int: "number", float: "number"}.get(
        type(value), "object"
    )
