"""A Confluent Schema Registry under `/schema-registry` (issue 17, part 1).

Enough of Confluent's REST API for its clients (confluent-kafka's `SchemaRegistryClient`,
Kafka Connect's converters, ksqlDB): schemas by id, subjects and their versions,
register and look up, soft and permanent deletes, compatibility tests, and the
compatibility config, for schema types AVRO and JSON. Answers and errors are in the
registry's shapes (`{"error_code": 40401, "message": …}`) and content type. Reads need
`schemas:read`, writes `schemas:write`; the key may come as HTTP Basic (the password),
a bearer token or `X-API-Key`. The rules live in `ingest.registry`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import psycopg
from aiohttp import web
from aiohttp.typedefs import Middleware

from ingest import heal as healing
from ingest import registry as core
from ingest.registry import RegistryError
from ingest.replay import ReplayError
from producer_api.auth import Principal, authorize
from producer_api.content import receive
from producer_api.dead_letters import replay_deps, too_many_jobs
from producer_api.errors import Handler, error_middleware_for
from producer_api.heal import start_heal_job
from producer_api.resources import DOOR
from schemas.compatibility import SCHEMA_TYPES
from schemas.contracts import is_contract_subject

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_CODES = {400: 400, 401: 40101, 403: 40301, 404: 404, 405: 405, 408: 40801, 413: 41301,
          422: 42201, 429: 42901, 503: 50003}  # fmt: skip

routes = web.RouteTableDef()


def answer(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type=CONTENT_TYPE)


def registry_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The door's failures (401, 403, 429, 503, …) in the registry's error shape."""
    body = {"error_code": _CODES.get(status, status * 100 + 1), "message": message}
    response = answer(body, status)
    response.headers.update(headers or {})
    return response


@web.middleware
async def registry_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as exc:
        return answer({"error_code": exc.code, "message": exc.message}, exc.status)


@web.middleware
async def internal_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (web.HTTPException, RegistryError):
        raise
    except Exception:
        log.exception("schema registry: unexpected error on %s %s", request.method, request.path)
        return answer({"error_code": 50001, "message": "Error in the backend data store"}, 500)


def create_subapp() -> web.Application:
    middlewares: list[Middleware] = [internal_errors, error_middleware_for(registry_error),
                                     registry_errors]  # fmt: skip
    app = web.Application(middlewares=middlewares)
    app.add_routes(routes)
    return app


async def _reader(request: web.Request) -> Principal:
    return await authorize(request, "schemas:read", basic=True)


async def _writer(request: web.Request) -> Principal:
    return await authorize(request, "schemas:write", basic=True)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def _schema_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or int(raw) >= 2**31:
        raise core.schema_not_found()
    return int(raw)


async def _body(request: web.Request) -> dict[str, Any]:
    limit = request.config_dict[DOOR].settings.schema_max_bytes
    if request.content_length is not None and request.content_length > 2 * limit + 4096:
        raise core.invalid_schema(f"the schema is larger than {limit} bytes")
    try:
        body = json.loads(await receive(request))
    except (ValueError, RecursionError) as exc:
        raise RegistryError(400, 400, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise RegistryError(400, 400, "the body must be a JSON object")
    return body


async def _schema(request: web.Request) -> Any:
    """The body's schema, parsed in a worker thread (a large one is ~100 ms of CPU)."""
    body = await _body(request)
    limit = request.config_dict[DOOR].settings.schema_max_bytes
    return await asyncio.to_thread(core.checked_schema, body, limit)


def _pool(request: web.Request) -> Any:
    return request.config_dict[DOOR].pool


def _typed(schema_type: str, body: dict[str, Any]) -> dict[str, Any]:
    return body if schema_type == "AVRO" else {**body, "schemaType": schema_type}


@routes.get("/schemas/types")
async def schema_types(request: web.Request) -> web.Response:
    await _reader(request)
    return answer(list(SCHEMA_TYPES))


@routes.get("/schemas/ids/{id}")
async def schema_by_id(request: web.Request) -> web.Response:
    principal = await _reader(request)
    found = await core.get_schema(_pool(request), principal.tenant, _schema_id(request))
    return answer(_typed(found.schema_type, {"schema": found.schema}))


@routes.get("/schemas/ids/{id}/schema")
async def raw_schema_by_id(request: web.Request) -> web.Response:
    principal = await _reader(request)
    found = await core.get_schema(_pool(request), principal.tenant, _schema_id(request))
    return web.Response(text=found.schema, content_type=CONTENT_TYPE)


@routes.get("/schemas/ids/{id}/subjects")
async def subjects_of_schema(request: web.Request) -> web.Response:
    principal = await _reader(request)
    uses = await core.schema_uses(
        _pool(request), principal.tenant, _schema_id(request), _flag(request, "deleted")
    )
    return answer(sorted({subject for subject, _ in uses}))


@routes.get("/schemas/ids/{id}/versions")
async def versions_of_schema(request: web.Request) -> web.Response:
    principal = await _reader(request)
    uses = await core.schema_uses(
        _pool(request), principal.tenant, _schema_id(request), _flag(request, "deleted")
    )
    return answer([{"subject": subject, "version": version} for subject, version in uses])


@routes.get("/subjects")
async def subjects(request: web.Request) -> web.Response:
    principal = await _reader(request)
    found = await core.list_subjects(_pool(request), principal.tenant, _flag(request, "deleted"))
    prefix = request.query.get("subjectPrefix", "")
    return answer([subject for subject in found if subject.startswith(prefix)])


@routes.get("/subjects/{subject}/versions")
async def versions(request: web.Request) -> web.Response:
    principal = await _reader(request)
    subject, deleted = request.match_info["subject"], _flag(request, "deleted")
    return answer(await core.list_versions(_pool(request), principal.tenant, subject, deleted))


def _version_json(found: Any) -> dict[str, Any]:
    body = {"subject": found.subject, "version": found.version, "id": found.id,
            "schema": found.schema}  # fmt: skip
    return _typed(found.schema_type, body)


@routes.get("/subjects/{subject}/versions/{version}")
async def version(request: web.Request) -> web.Response:
    principal = await _reader(request)
    wanted = core.parse_version(request.match_info["version"])
    found = await core.get_version(
        _pool(request), principal.tenant, request.match_info["subject"], wanted,
        _flag(request, "deleted"),
    )  # fmt: skip
    return answer(_version_json(found))


@routes.get("/subjects/{subject}/versions/{version}/schema")
async def version_schema(request: web.Request) -> web.Response:
    principal = await _reader(request)
    wanted = core.parse_version(request.match_info["version"])
    found = await core.get_version(
        _pool(request), principal.tenant, request.match_info["subject"], wanted, False
    )
    return web.Response(text=found.schema, content_type=CONTENT_TYPE)


@routes.post("/subjects/{subject}/versions")
async def register(request: web.Request) -> web.Response:
    principal = await _writer(request)
    schema = await _schema(request)
    subject = request.match_info["subject"]
    done = await core.register(_pool(request), principal.tenant, subject, schema)
    body: dict[str, Any] = {"id": done.id, "version": done.version}
    if schema.schema_type == "JSON" and is_contract_subject(subject):
        body.update(await _would_heal(request, principal.tenant, subject))
    return answer(body)


async def _would_heal(request: web.Request, tenant: str, subject: str) -> dict[str, Any]:
    """`would_heal`: how many of the subject's pending dead letters its latest version
    passes, counted for at most `ingest.heal.WOULD_HEAL_SECONDS`; past that, null and
    `would_heal_job`, a dry-run heal job whose `replayed` count is the answer. Counting
    never fails the registration it follows: on an error the fields are left out."""
    deps = replay_deps(request)
    try:
        prepared = await healing.prepare(deps.pool, tenant, subject, deps.contracts())
        count = await healing.would_heal(deps, prepared)
        if count is not None:
            return {"would_heal": count}
        if too_many_jobs(request, tenant) is not None:  # the job bound holds here too
            return {"would_heal": None}
        job_id, _total = await start_heal_job(request, deps, prepared, dry_run=True)
    except (ReplayError, psycopg.Error) as exc:
        log.warning("would_heal of %s not counted: %s", subject, exc)
        return {}
    return {"would_heal": None, "would_heal_job": job_id}


@routes.post("/subjects/{subject}")
async def lookup(request: web.Request) -> web.Response:
    principal = await _reader(request)
    schema = await _schema(request)
    found = await core.lookup(
        _pool(request), principal.tenant, request.match_info["subject"], schema,
        _flag(request, "deleted"),
    )  # fmt: skip
    return answer(_version_json(found))


@routes.delete("/subjects/{subject}")
async def delete_subject(request: web.Request) -> web.Response:
    principal = await _writer(request)
    done = await core.delete(_pool(request), principal.tenant, request.match_info["subject"],
                             None, _flag(request, "permanent"))  # fmt: skip
    return answer(done)


@routes.delete("/subjects/{subject}/versions/{version}")
async def delete_version(request: web.Request) -> web.Response:
    principal = await _writer(request)
    raw = request.match_info["version"]
    wanted = core.parse_version(raw)
    pool, subject = _pool(request), request.match_info["subject"]
    if wanted is None:  # `latest`: the newest live version
        wanted = (await core.get_version(pool, principal.tenant, subject, None, False)).version
    done = await core.delete(pool, principal.tenant, subject, wanted, _flag(request, "permanent"))
    return answer(done[0] if done else wanted)


@routes.post("/compatibility/subjects/{subject}/versions/{version}")
async def compatibility(request: web.Request) -> web.Response:
    principal = await _reader(request)
    wanted = core.parse_version(request.match_info["version"])
    schema = await _schema(request)
    reasons = await core.compatibility(
        _pool(request), principal.tenant, request.match_info["subject"], wanted, schema
    )
    body: dict[str, Any] = {"is_compatible": not reasons}
    if _flag(request, "verbose"):
        body["messages"] = reasons
    return answer(body)


@routes.get("/config")
async def global_config(request: web.Request) -> web.Response:
    principal = await _reader(request)
    mode = await core.get_config(_pool(request), principal.tenant, None, True)
    return answer({"compatibilityLevel": mode})


@routes.put("/config")
async def put_global_config(request: web.Request) -> web.Response:
    principal = await _writer(request)
    mode = core.checked_mode(await _body(request))
    await core.put_config(_pool(request), principal.tenant, None, mode)
    return answer({"compatibility": mode})


@routes.get("/config/{subject}")
async def subject_config(request: web.Request) -> web.Response:
    principal = await _reader(request)
    mode = await core.get_config(_pool(request), principal.tenant, request.match_info["subject"],
                                 _flag(request, "defaultToGlobal"))  # fmt: skip
    return answer({"compatibilityLevel": mode})


@routes.put("/config/{subject}")
async def put_subject_config(request: web.Request) -> web.Response:
    principal = await _writer(request)
    mode = core.checked_mode(await _body(request))
    await core.put_config(_pool(request), principal.tenant, request.match_info["subject"], mode)
    return answer({"compatibility": mode})
