"""Sluice's native API: `/v1/events` to send, query and delete CloudEvents-style events."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from ingest.entry import IngestOptions, IngestRequest, Kind, delete_ids, ingest
from ingest.split import one_event, split_json_events
from producer_api.accept import (
    core_of,
    door_of,
    query_family,
    read_events_body,
    request_context,
)
from producer_api.auth import authorize
from producer_api.errors import error_response
from schemas.cloudevents import binary_route
from store.queries import BadCursor, EventFilter, find_events, get_event
from store.tenancy import tenant_connection

FAMILY = "native"
MAX_PAGE = 1000

routes = web.RouteTableDef()


@routes.post("/v1/events")
async def post_events(request: web.Request) -> web.Response:
    """Accept one event or an array (CloudEvents structured and batched modes too), or a
    binary-mode CloudEvent (`ce-*` headers, the body its data); 202 once Kafka
    acknowledged every accepted event."""
    principal = await authorize(request, "events:write")
    ctx = request_context(request, principal, FAMILY)
    limit = door_of(request).settings.max_events_per_request
    # Binary mode: the attributes travel in the route, beside the body kept as it came.
    binary = "ce-specversion" in request.headers
    if binary:
        ctx = replace(ctx, route={**ctx.route, **binary_route(request.headers)})
    # The common request (every event valid, with an id) is planned by the compiled path
    # in one call; any other, and every binary-mode one, takes the Python path.
    options = IngestOptions(max_events=limit, compiled=not binary, replaced=True)
    split = one_event if binary else split_json_events
    body = await read_events_body(request)
    outcome = await ingest(core_of(request), IngestRequest(ctx, body, split, options))
    if outcome.kind is Kind.TOO_MANY_EVENTS:
        return error_response(413, "too_many_events", f"at most {limit} events per request")
    plan = outcome.plan
    ids = plan.accepted_ids()
    rejected = [r.as_dict() for r in plan.rejected()]
    answer = {
        "request_id": ctx.request_id,
        "accepted": len(ids),
        "ids": ids,
        "replaced": outcome.replaced,
        "rejected": rejected,
    }
    status = 202 if ids or not rejected else 400
    # msgspec: the answer lists every id, and the json module costs ~6x as much per answer.
    return web.Response(
        body=msgspec.json.encode(answer), status=status, content_type="application/json"
    )


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    principal = await authorize(request, "events:read")
    q = request.query
    family = query_family(request)
    try:
        flt = EventFilter(
            type=q.get("type"),
            source=q.get("source"),
            time_from=_time(q.get("from")),
            time_to=_time(q.get("to")),
        )
        limit = min(int(q.get("limit", "100")), MAX_PAGE)
        if limit < 1:
            raise ValueError("limit must be at least 1")
    except ValueError as exc:
        return error_response(400, "bad_query", str(exc))
    door = door_of(request)
    try:
        async with tenant_connection(door.pool, principal.tenant) as conn:
            rows, cursor = await find_events(
                conn, principal.tenant, family, flt, limit=limit, cursor=q.get("cursor")
            )
    except BadCursor as exc:
        return error_response(400, "bad_cursor", str(exc))
    return web.json_response({"events": [_event_json(r) for r in rows], "next_cursor": cursor})


@routes.get("/v1/events/{id}")
async def show_event(request: web.Request) -> web.Response:
    principal = await authorize(request, "events:read")
    family = query_family(request)
    async with tenant_connection(door_of(request).pool, principal.tenant) as conn:
        row = await get_event(conn, principal.tenant, family, request.match_info["id"])
    if row is None:
        return error_response(404, "not_found", "no such event")
    return web.json_response(_event_json(row))


@routes.delete("/v1/events/{id}")
async def delete_event(request: web.Request) -> web.Response:
    """Delete one event by id: ordered after every version accepted before it.

    The answer is the same whether or not the id exists for this tenant, so it
    reveals nothing; the delete covers versions still in the pipeline.
    """
    principal = await authorize(request, "events:delete")
    event_id = request.match_info["id"]
    ctx = request_context(request, principal, FAMILY)
    deleted = await delete_ids(core_of(request), ctx, [event_id])
    return web.json_response({"deletion_id": deleted.receipt_id, "ids": [event_id]}, status=202)


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _event_json(row: dict[str, Any]) -> dict[str, Any]:
    """An event as the read routes show it; a CloudEvent adds its other attributes
    (`specversion`, `datacontenttype`, `dataschema`, `data_base64`, `extensions`)."""
    shown = {
        "id": row["event_id"],
        "family": row["family"],
        "type": row["type"],
        "source": row["source"],
        "subject": row["subject"],
        "time": row["time"].isoformat(),
        "data": row["data"],
        "received_at": row["received_at"].isoformat(),
        "version": row["version"],
    }
    return {**shown, **row["attributes"]} if row.get("attributes") else shown
