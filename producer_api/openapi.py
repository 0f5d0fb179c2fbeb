"""The OpenAPI 3.1 document of every route, served at `GET /openapi.json`.

Paths come from the app's router (root and every family sub-app), so a route
exists in the document exactly when it exists in the code. What each
operation takes and answers is described beside this module in
`openapi_schemas/*.json` (one fragment per area: paths and components in
plain OpenAPI), and the request schemas of the validators' msgspec Structs are
generated from the Structs themselves. `tests/producer_api/test_openapi.py`
checks that the described operations and the routed ones are the same set,
so neither can drift from the other.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import msgspec
from aiohttp import web

from schemas.families.dakkio import DataPoint
from schemas.families.dashdive import SERVICES
from schemas.families.dashdive_fields import ENUMS, MAX_DELETED_OBJECTS, MAX_PART_NUMBER, Field
from schemas.native import NativeEvent

FRAGMENTS = (
    "common", "native", "admin", "dead_letters", "history", "overview",
    "dashdive", "datahub", "baselime", "dynatrace", "dakkio", "schema_registry",
    "posthog", "otlp", "segment", "rudderstack", "console",
)  # fmt: skip
METHODS = ("get", "put", "post", "delete", "patch")
OPENAPI_DOC = web.AppKey("openapi_document", dict)
_OBJECT_ID = "#/components/schemas/ObjectId"

_INFO = {
    "title": "Sluice",
    "version": "0.1.0",
    "summary": "Event ingestion onto Kafka, validated by Faust, stored in PostgreSQL.",
    "description": (
        "Sluice's native API, five seed-compatible front doors (Dashdive, DoiT DataHub, "
        "Baselime, Dynatrace OpenPipeline, dakkio), PostHog capture, OTLP/HTTP logs, Segment's "
        "HTTP Tracking API, RudderStack's data plane and a "
        "Confluent-compatible Schema Registry. A client written for one of those services "
        "works against Sluice by changing only its base URL and key. Every 2xx "
        "to an ingest route is sent after Kafka acknowledged the events it covers."
    ),
}


def routed_operations(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route of `app` and its sub-apps; HEAD is implied by GET."""
    found = set()
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or resource is None:
            continue
        found.add((route.method.lower(), resource.canonical))
    return found


def described_paths() -> dict[str, dict[str, Any]]:
    """Every path item the fragments describe."""
    paths: dict[str, dict[str, Any]] = {}
    for fragment in _fragments():
        for path, item in fragment.get("paths", {}).items():
            paths.setdefault(path, {}).update(item)
    return paths


def described_operations() -> set[tuple[str, str]]:
    return {(m, path) for path, item in described_paths().items() for m in item if m in METHODS}


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of `app`: its routes, each with its description."""
    described = described_paths()
    paths: dict[str, dict[str, Any]] = {}
    for method, path in sorted(routed_operations(app), key=lambda op: (op[1], op[0])):
        item = described.get(path, {})
        operation = item.get(method) or _undescribed(method, path)
        target = paths.setdefault(path, {})
        if "parameters" in item:
            target["parameters"] = item["parameters"]
        target[method] = operation
    return {
        "openapi": "3.1.0",
        "info": _INFO,
        "servers": [{"url": "/", "description": "this Sluice"}],
        "tags": [t for f in _fragments() for t in f.get("tags", [])],
        "paths": paths,
        "components": _components(),
    }


async def serve(request: web.Request) -> web.Response:
    """`GET /openapi.json`: no key needed; built once per process from the frozen router."""
    root = request.app
    document = root.get(OPENAPI_DOC)
    if document is None:
        document = build_document(root)
        root[OPENAPI_DOC] = document
    return web.json_response(document)


def install(app: web.Application) -> None:
    """Add `GET /openapi.json` to the root app."""
    app.router.add_get("/openapi.json", serve)


def struct_schemas() -> dict[str, Any]:
    """JSON Schemas of the validators' Structs, named as the fragments `$ref` them."""
    _, components = msgspec.json.schema_components(
        [NativeEvent, DataPoint], ref_template="#/components/schemas/{name}"
    )
    native = components.pop("NativeEvent")
    native["properties"]["time"]["format"] = "date-time"
    native["properties"]["data"] = {"type": "object"}
    native["description"] = (
        "A native event. Unknown fields are accepted and dropped; with `specversion` it is a "
        "CloudEvent (see `CloudEvent`), whose other attributes are kept."
    )
    point = components.pop("DataPoint")
    point["description"] = "A dakkio data point (in a batch, `bucketId` is the batch's)."
    point["properties"]["values"]["minProperties"] = 1
    point["properties"]["timestamp"]["anyOf"][0]["format"] = "date-time"
    single = {**point, "description": "A dakkio data point."}
    single["properties"] = {**point["properties"], "bucketId": {"$ref": _OBJECT_ID}}
    single["required"] = ["bucketId", *point["required"]]
    return {"NativeEvent": native, "DakkioBatchPoint": point, "DakkioDataPoint": single}


_KINDS: dict[str, dict[str, Any]] = {
    "text": {"type": "string", "minLength": 1, "maxLength": 1024},
    "timestamp": {"type": "string", "format": "date-time"},
    "bytes": {"type": "integer", "minimum": 0},
    "part": {"type": "integer", "minimum": 1, "maximum": MAX_PART_NUMBER},
    "quantity": {"type": "number", "minimum": 0},
    "boolean": {"type": "boolean"},
    "deleted_objects": {
        "type": "array", "minItems": 1, "maxItems": MAX_DELETED_OBJECTS,
        "items": {"type": "object", "required": ["objectKey"], "properties": {
            "objectKey": {"type": "string"}, "versionId": {"type": ["string", "null"]},
            "isDeleteMarker": {"type": ["boolean", "null"]}}},
    },
}  # fmt: skip
"""JSON Schema of each Dashdive field kind (`schemas/families/dashdive_fields.py`)."""


def dashdive_schemas() -> dict[str, Any]:
    """One schema per Dashdive event type, generated from the validator's field tables."""
    schemas: dict[str, Any] = {}
    for service, (common, actions) in SERVICES.items():
        for action, fields in actions.items():
            name = f"Dashdive_{service}_{action}"
            schemas[name] = _event_type(action, common[1:] + fields)
    schemas["DashdiveEvent"] = {
        "oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in sorted(schemas)],
        "description": "A Dashdive event; `action` names its type. Unknown fields are dropped.",
    }
    return schemas


def _event_type(action: str, fields: tuple[Field, ...]) -> dict[str, Any]:
    properties: dict[str, Any] = {"action": {"const": action}}
    for spec in fields:
        kind = _KINDS.get(spec.kind) or {"enum": list(ENUMS.get(spec.kind, ()))}
        properties[spec.name] = kind if spec.required else {"anyOf": [kind, {"type": "null"}]}
    required = ["action", *(f.name for f in fields if f.required)]
    return {"type": "object", "required": required, "properties": properties}


def _components() -> dict[str, Any]:
    merged: dict[str, dict[str, Any]] = {"schemas": {**struct_schemas(), **dashdive_schemas()}}
    for fragment in _fragments():
        for kind, entries in fragment.get("components", {}).items():
            merged.setdefault(kind, {}).update(entries)
    return merged


def _fragments() -> Iterator[dict[str, Any]]:
    folder = resources.files("producer_api").joinpath("openapi_schemas")
    for name in FRAGMENTS:
        yield json.loads(folder.joinpath(f"{name}.json").read_text(encoding="utf-8"))


def _undescribed(method: str, path: str) -> dict[str, Any]:
    """A route nobody described yet still appears (the test fails until it is described)."""
    return {
        "summary": f"{method.upper()} {path} (not yet described)",
        "security": [],
        "responses": {"default": {"description": "see the route's code"}},
    }
