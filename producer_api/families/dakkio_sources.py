"""dakkio's data-source routes: a data source's `schema` is its data contract.

`POST /api/buckets/{bucketId}/sources` creates one (dakkio's "Create Data Source": `name`,
`type`, `description`, `schema`, `downsampling`) → 201; `GET …/sources` lists a bucket's,
`GET …/sources/{sourceId}` shows one, `PUT`/`PATCH …/sources/{sourceId}` changes any of
those fields → 200. The `schema` (field name → `{"type", "unit"?, "description"?}`) is
registered as the latest version of `dakkio.<sourceId>` (`ingest.datasources`; the mapping
is `schemas.families.dakkio_schema`), so points are held to it at the door and in the
stream. Reads need `schemas:read`, writes `schemas:write` (a schema is a contract).

Answers in dakkio's shapes: 400 "Validation Error" with zod-style `details`, 404 "Bucket
not found" / "Data source not found", 409 "Conflict" for a schema the subject's
compatibility refuses, with every reason as a detail.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import psycopg
from aiohttp import web

from ingest import datasources as core
from ingest.datasources import DataSourceView, SourceRefused
from ingest.registry import Incompatible, RegistryError
from producer_api.accept import door_of
from producer_api.auth import Principal, authorize
from producer_api.content import receive
from producer_api.families import dakkio_answers as answers
from schemas.families.dakkio import OBJECT_ID
from schemas.families.dakkio_schema import contract_of, fields_of, parse_fields
from store.catalog import new_object_id

MAX_NAME_CHARS = 256
MAX_TYPE_CHARS = 64
MAX_DESCRIPTION_CHARS = 1000
TEXT_FIELDS = {"name": ("name", MAX_NAME_CHARS), "type": ("source_type", MAX_TYPE_CHARS),
               "description": ("description", MAX_DESCRIPTION_CHARS)}  # fmt: skip
"""Body field → (catalog column, longest value)."""

log = logging.getLogger(__name__)

_FIELD_POINTER = re.compile(r"#/properties/values/properties/([^/:\s]+)")

Details = list[dict[str, Any]]


class Invalid(Exception):
    def __init__(self, details: Details) -> None:
        super().__init__("invalid request")
        self.details = details


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/buckets/{bucketId}/sources", create_source)
    app.router.add_get("/api/buckets/{bucketId}/sources", list_sources)
    app.router.add_get("/api/buckets/{bucketId}/sources/{sourceId}", get_source)
    app.router.add_put("/api/buckets/{bucketId}/sources/{sourceId}", update_source)
    app.router.add_patch("/api/buckets/{bucketId}/sources/{sourceId}", update_source)


async def create_source(request: web.Request) -> web.Response:
    """Create a data source in the bucket, its schema registered as version 1 (or the
    next version, when the subject already has some: compatibility applies)."""
    principal = await authorize(request, "schemas:write")
    return await _answer(request, principal, _create)


async def update_source(request: web.Request) -> web.Response:
    """Change a data source; a new `schema` becomes its subject's next version."""
    principal = await authorize(request, "schemas:write")
    return await _answer(request, principal, _update)


async def get_source(request: web.Request) -> web.Response:
    principal = await authorize(request, "schemas:read")
    return await _answer(request, principal, _get)


async def list_sources(request: web.Request) -> web.Response:
    principal = await authorize(request, "schemas:read")
    return await _answer(request, principal, _list)


async def _answer(request: web.Request, principal: Principal, work: Any) -> web.Response:
    """Run `work` and map what it raises to dakkio's answers."""
    try:
        result: web.Response = await work(request, principal.tenant)
        return result
    except Invalid as exc:
        return answers.validation_error(exc.details)
    except SourceRefused as exc:
        return answers.error(exc.status, exc.message)
    except Incompatible as exc:
        return answers.conflict(
            "Schema is incompatible with the data source's current schema",
            [answers.detail(_reason_path(r), r) for r in exc.reasons],
        )
    except RegistryError as exc:  # e.g. a schema past SLUICE_SCHEMA_MAX_BYTES
        return answers.validation_error([answers.detail(("body", "schema"), exc.message)])


async def _create(request: web.Request, tenant: str) -> web.Response:
    bucket = _object_id(request, "bucketId")
    body = await _body(request)
    details: Details = []
    if "name" not in body:
        details.append(answers.detail(("body", "name"), "Expected string, received undefined"))
    if "schema" not in body:
        details.append(answers.detail(("body", "schema"), "Expected object, received undefined"))
    fields, contract = _fields(body, details)
    if details or contract is None:
        raise Invalid(details)
    view = await core.create(door_of(request).pool, tenant, bucket, new_object_id(), fields,
                             contract)  # fmt: skip
    await _enforce_now(request)
    return answers.created("Data source created successfully", dataSource=shown(view))


async def _update(request: web.Request, tenant: str) -> web.Response:
    bucket, source = _object_id(request, "bucketId"), _object_id(request, "sourceId")
    body = await _body(request)
    details: Details = []
    fields, contract = _fields(body, details)
    if not details and not fields and contract is None:
        known = ", ".join(("name", "type", "description", "schema", "downsampling"))
        details.append(answers.detail(("body",), f"Give at least one of {known}"))
    if details:
        raise Invalid(details)
    view = await core.update(door_of(request).pool, tenant, bucket, source, fields, contract)
    if contract is not None:
        await _enforce_now(request)
    return web.json_response({"message": "Data source updated successfully",
                              "dataSource": shown(view)})  # fmt: skip


async def _get(request: web.Request, tenant: str) -> web.Response:
    bucket, source = _object_id(request, "bucketId"), _object_id(request, "sourceId")
    view = await core.get(door_of(request).pool, tenant, bucket, source)
    return web.json_response({"dataSource": shown(view)})


async def _list(request: web.Request, tenant: str) -> web.Response:
    bucket = _object_id(request, "bucketId")
    views = await core.list_in_bucket(door_of(request).pool, tenant, bucket)
    return web.json_response({"dataSources": [shown(v) for v in views]})


async def _enforce_now(request: web.Request) -> None:
    """Reload this process's contracts at once, so its next point of the data source is
    held to the new schema (other processes follow within SLUICE_CONTRACTS_POLL_SECONDS);
    a failed reload is left to the poll."""
    cache = door_of(request).core.contracts
    if cache is None:
        return
    try:
        await cache.refresh()
    except (psycopg.Error, OSError) as exc:
        log.warning("data contracts not reloaded after a data-source change: %s", exc)


def _object_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not OBJECT_ID.match(value):
        raise Invalid([answers.detail(("params", name), "Invalid ObjectId")])
    return value.lower()


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await receive(request)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise Invalid([answers.detail(("body",), f"Invalid JSON: {exc}")]) from exc
    if not isinstance(body, dict):
        raise Invalid([answers.detail(("body",), "Expected object")])
    return body


def _fields(body: dict[str, Any], details: Details) -> tuple[dict[str, Any], str | None]:
    """The catalog columns the body sets and its schema's contract text (None: no schema),
    appending every problem to `details`. Keys dakkio does not define are ignored."""
    fields: dict[str, Any] = {}
    for key, (column, longest) in TEXT_FIELDS.items():
        if key not in body:
            continue
        value = body[key]
        if not isinstance(value, str) or (not value.strip() and key == "name"):
            details.append(answers.detail(("body", key), "Expected a non-empty string"))
        elif len(value) > longest:
            details.append(answers.detail(("body", key), f"At most {longest} characters"))
        else:
            fields[column] = value
    if "downsampling" in body:
        if isinstance(body["downsampling"], bool):
            fields["downsampling"] = body["downsampling"]
        else:
            details.append(answers.detail(("body", "downsampling"), "Expected boolean"))
    if "schema" not in body:
        return fields, None
    parsed, problems = parse_fields(body["schema"])
    details += [answers.detail(("body", "schema", *path), msg) for path, msg in problems]
    return fields, (contract_of(parsed) if not problems else None)


def shown(view: DataSourceView) -> dict[str, Any]:
    """A data source as dakkio shows it, with its schema's registry version beside it."""
    row, latest = view.row, view.latest
    return {
        "_id": row.data_source_id,
        "bucketId": row.bucket_id,
        "name": row.name,
        "type": row.source_type,
        "description": row.description,
        "schema": {} if latest is None else fields_of(latest.schema),
        "downsampling": row.downsampling,
        "status": "active",
        "createdAt": answers.iso(row.created_at),
        "updatedAt": answers.iso(row.updated_at),
        "schemaSubject": core.subject_of(row.data_source_id),
        "schemaVersion": None if latest is None else latest.version,
        "schemaId": None if latest is None else latest.id,
        "jsonSchema": None if latest is None else _document(latest.schema),
    }


def _document(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _reason_path(reason: str) -> tuple[str, ...]:
    """The dakkio field a compatibility reason names, as a detail's path."""
    found = _FIELD_POINTER.search(reason)
    if found is None:
        return ("body", "schema")
    return ("body", "schema", found.group(1).replace("~1", "/").replace("~0", "~"))
