"""Schemas a registry accepts, and whether a new version may follow the old ones.

Pure functions over schema text: `parse` checks and normalises a schema of type AVRO or
JSON; `incompatibilities` answers, for a compatibility mode, every reason a new schema
may not follow the versions already in a subject (empty: it may).

Avro uses schema resolution, as Confluent's registry does: a reader schema can read data
written with a writer schema when Apache Avro's own `ReaderWriterCompatibilityChecker`
(the `avro` package, a port of the Java library's `SchemaCompatibility`) says so. Modes:

* BACKWARD: the new schema reads data written with the latest version;
* FORWARD: the latest version reads data written with the new schema;
* FULL: both; each `_TRANSITIVE` mode checks every version instead of the latest;
* NONE: no check.

JSON Schema has no resolution rules of its own, so a reader "reads" a writer's data when
it accepts every document the writer accepts: `schemas.json_compatibility` decides that
inclusion soundly, keyword by keyword, and calls breaking what it cannot decide (the
rules are in docs/api.md, "JSON Schema compatibility").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import avro.errors
import avro.schema
import fastavro
import jsonschema.exceptions
import jsonschema.validators
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas import json_compatibility

SCHEMA_TYPES = ("AVRO", "JSON")
MODES = (
    "NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
    "FULL", "FULL_TRANSITIVE",
)  # fmt: skip
DEFAULT_MODE = "BACKWARD"
MAX_NESTING = 64
"""The deepest nesting of JSON objects and arrays a schema of either type may have."""
MAX_REFS = 256
"""The most `$ref`s one JSON Schema may hold (each is resolved when it is compared)."""


class InvalidSchema(ValueError):
    """Text that is not a schema of its type (the registry's 42201)."""


class UnknownSchemaType(InvalidSchema):
    """A schema type the registry does not serve (PROTOBUF, or a made-up one)."""


@dataclass(frozen=True)
class ParsedSchema:
    """A checked schema: its type, its compact text, and what compatibility reads."""

    schema_type: str
    text: str
    """The schema as JSON without insignificant whitespace, keys in the order given."""
    fingerprint: bytes
    """SHA-256 of the schema's JSON with sorted keys: equal schemas, equal fingerprints."""
    document: Any
    """The JSON document (JSON) or the `avro.schema.Schema` (AVRO)."""


def parse(schema_type: str, text: str) -> ParsedSchema:
    """`text` checked as a schema of `schema_type`; raises `InvalidSchema`."""
    if schema_type not in SCHEMA_TYPES:
        raise UnknownSchemaType(f"schema type {schema_type!r} is not one of {list(SCHEMA_TYPES)}")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidSchema(f"the schema is not JSON: {exc}") from exc
    depth, refs = _shape(document)
    if depth > MAX_NESTING:
        raise InvalidSchema(f"the schema nests {depth} levels deep, more than {MAX_NESTING}")
    if schema_type == "JSON" and refs > MAX_REFS:
        raise InvalidSchema(f"the schema has {refs} $refs, more than {MAX_REFS}")
    compact = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    canonical = json.dumps(document, separators=(",", ":"), sort_keys=True)
    fingerprint = hashlib.sha256(canonical.encode()).digest()
    parsed = _avro(document, compact) if schema_type == "AVRO" else _json_schema(document)
    return ParsedSchema(schema_type, compact, fingerprint, parsed)


def _shape(document: Any) -> tuple[int, int]:
    """(the deepest nesting of objects and arrays, how many objects have a `$ref`),
    walked without recursion so that any depth json.loads returns is measured."""
    deepest, refs, stack = 0, 0, [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            refs += "$ref" in node
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest, refs


def _avro(document: Any, text: str) -> Any:
    try:
        fastavro.parse_schema(document)
        return avro.schema.parse(text)
    except (avro.errors.AvroException, fastavro.schema.SchemaParseException) as exc:
        raise InvalidSchema(f"invalid Avro schema: {exc}") from exc
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise InvalidSchema(f"invalid Avro schema: {exc!r}") from exc


def _json_schema(document: Any) -> Any:
    if not isinstance(document, dict | bool):
        raise InvalidSchema("a JSON Schema is an object or a boolean")
    draft: Any = jsonschema.validators.Draft202012Validator  # when `$schema` is absent
    if isinstance(document, dict) and "$schema" in document:
        known = isinstance(document["$schema"], str)
        draft = jsonschema.validators.validator_for(document, default=None) if known else None
        if draft is None:
            raise InvalidSchema(f"unknown JSON Schema draft {document['$schema']!r}")
    try:
        draft.check_schema(document)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidSchema(f"invalid JSON Schema: {exc.message}") from exc
    except (RecursionError, TypeError) as exc:
        raise InvalidSchema(f"invalid JSON Schema: {exc!r}") from exc
    return document


def incompatibilities(mode: str, new: ParsedSchema, versions: Sequence[ParsedSchema]) -> list[str]:
    """Every reason `new` may not follow `versions` (oldest first) under `mode`."""
    if mode not in MODES:
        raise ValueError(f"unknown compatibility mode {mode!r}")
    if mode == "NONE" or not versions:
        return []
    checked = versions if mode.endswith("_TRANSITIVE") else versions[-1:]
    base = mode.removesuffix("_TRANSITIVE")
    reasons: list[str] = []
    for old in checked:
        if old.schema_type != new.schema_type:
            reasons.append(f"schema type {new.schema_type} cannot follow {old.schema_type}")
            continue
        if base in ("BACKWARD", "FULL"):
            reasons += [
                f"BACKWARD: {r}" for r in reader_cannot_read(new, old, "new schema", "old schema")
            ]
        if base in ("FORWARD", "FULL"):
            reasons += [
                f"FORWARD: {r}" for r in reader_cannot_read(old, new, "old schema", "new schema")
            ]
    return reasons


def reader_cannot_read(
    reader: ParsedSchema, writer: ParsedSchema, reader_name: str = "reader schema",
    writer_name: str = "writer schema",
) -> list[str]:  # fmt: skip
    """Why data written with `writer` cannot be read with `reader` (empty: it can); JSON
    Schema reasons name the two schemas `reader_name` and `writer_name`."""
    if reader.schema_type == "AVRO":
        result = ReaderWriterCompatibilityChecker().get_compatibility(  # type: ignore[no-untyped-call]
            reader.document, writer.document
        )
        if result.compatibility is SchemaCompatibilityType.compatible:
            return []
        kind = ", ".join(sorted({kind.value for kind in result.incompatibilities}))
        where = ", ".join(sorted(result.locations))
        detail = "; ".join(sorted(result.messages))
        return [f"{kind or 'incompatible'} at {where}: {detail}"]
    return json_compatibility.reader_cannot_read(
        reader.document, writer.document, reader_name, writer_name
    )
