"""Retention policies of the caller's tenant (`admin` scope; `ingest.retention` applies them).

- `GET /v1/admin/retention`: the tenant's policies and the defaults that apply elsewhere.
- `PUT /v1/admin/retention` `{"kind": "events"|"dead_letters", "family": F, "type"?: T,
  "keep_days": N}`: set one (a `type` only for events).
- `DELETE /v1/admin/retention?kind=&family=&type=`: clear one (the default applies again).
- `POST /v1/admin/retention/run`: apply the tenant's rules now → 202 with a run id;
  `GET /v1/admin/retention/runs/{id}`: what it removed, and its steps' deletion receipts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from aiohttp import web

from ingest.retention import BadPolicy, parse_keep_days, parse_target
from producer_api.auth import authorize
from producer_api.content import receive
from producer_api.errors import error_response
from producer_api.resources import DOOR, RETENTION
from store import retention as store
from store.tenancy import tenant_connection

log = logging.getLogger(__name__)

FIELDS = frozenset({"kind", "family", "type", "keep_days"})

routes = web.RouteTableDef()
_RUNS: set[asyncio.Task[Any]] = set()


def install(app: web.Application) -> None:
    app.add_routes(routes)


@routes.get("/v1/admin/retention")
async def show_policies(request: web.Request) -> web.Response:
    principal = await authorize(request, "admin")
    door = request.config_dict[DOOR]
    async with tenant_connection(door.pool, principal.tenant) as conn:
        found = await store.policies(conn, principal.tenant)
    settings = door.settings
    defaults = {"events_keep_days": settings.retention_events_days or None,
                "dead_letters_keep_days": settings.retention_dead_letters_days or None}  # fmt: skip
    return web.json_response({"policies": [p.as_json() for p in found], "defaults": defaults})


@routes.put("/v1/admin/retention")
async def set_policy(request: web.Request) -> web.Response:
    principal = await authorize(request, "admin")
    try:
        body = json.loads(await receive(request) or b"null")
        if not isinstance(body, dict):
            raise BadPolicy('the body is a JSON object: {"kind", "family", "type"?, "keep_days"}')
        if "tenant" in body:
            raise BadPolicy("tenant: the tenant comes from the key, never from the body")
        unknown = set(body) - FIELDS
        if unknown:
            raise BadPolicy(f"unknown field {sorted(unknown)}; one of {sorted(FIELDS)}")
        kind, family, event_type = parse_target(body)
        keep = parse_keep_days(body.get("keep_days"))
    except (BadPolicy, ValueError) as exc:
        return error_response(400, "bad_request", str(exc))
    door = request.config_dict[DOOR]
    async with tenant_connection(door.pool, principal.tenant) as conn:
        policy = await store.put_policy(conn, principal.tenant, kind, family, event_type, keep)
    return web.json_response(policy.as_json())


@routes.delete("/v1/admin/retention")
async def clear_policy(request: web.Request) -> web.Response:
    principal = await authorize(request, "admin")
    try:
        kind, family, event_type = parse_target(request.query)
    except BadPolicy as exc:
        return error_response(400, "bad_request", str(exc))
    door = request.config_dict[DOOR]
    async with tenant_connection(door.pool, principal.tenant) as conn:
        cleared = await store.clear_policy(conn, principal.tenant, kind, family, event_type)
    if not cleared:
        return error_response(404, "not_found", "no such retention policy")
    return web.json_response({"kind": kind, "family": family, "type": event_type or None,
                              "cleared": True})  # fmt: skip


@routes.post("/v1/admin/retention/run")
async def run_now(request: web.Request) -> web.Response:
    """Apply the tenant's rules now, in the background of this process."""
    principal = await authorize(request, "admin")
    runner = request.config_dict[RETENTION]
    run_id = str(uuid.uuid4())
    async with tenant_connection(runner.deps.pool, principal.tenant) as conn:
        await store.start_run(conn, principal.tenant, run_id)

    async def run() -> None:
        try:
            await runner.run_tenant(principal.tenant, run_id)
        except Exception:
            log.exception("retention run %s of %s failed", run_id, principal.tenant)

    task = asyncio.get_running_loop().create_task(run(), name=f"retention-{run_id}")
    _RUNS.add(task)
    task.add_done_callback(_RUNS.discard)
    return web.json_response(
        {"run_id": run_id, "status_url": f"/v1/admin/retention/runs/{run_id}"}, status=202
    )


@routes.get("/v1/admin/retention/runs/{id}")
async def show_run(request: web.Request) -> web.Response:
    principal = await authorize(request, "admin")
    door = request.config_dict[DOOR]
    async with tenant_connection(door.pool, principal.tenant) as conn:
        found = await store.get_run(conn, principal.tenant, request.match_info["id"])
    if found is None:
        return error_response(404, "not_found", "no such retention run")
    return web.json_response(found)
