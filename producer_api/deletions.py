"""Native deletes by filter and deletion receipts.

`DELETE /v1/events?type=&source=&from=&to=` (or `?all=true`) deletes the tenant's
events that match, accepted before the answer: it is written to every partition
of `ingest.raw`, so it lands after everything accepted there before it,
including events still in the pipeline. `GET /v1/deletions/{id}` reports a
receipt: pending until the sink applied every part of the delete, then
finished, with what it removed from PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from ingest.entry import delete_matching
from producer_api.accept import core_of, door_of, query_family, request_context
from producer_api.auth import Forbidden, Principal, authorize
from producer_api.errors import error_response
from schemas.deletes import DeleteFilter
from store.deletions import get_receipt
from store.tenancy import tenant_connection

routes = web.RouteTableDef()


class BadFilter(ValueError):
    """A delete-by-filter query that names nothing to match, or a malformed value."""


def parse_filter(request: web.Request) -> DeleteFilter:
    """The filter of `DELETE /v1/events`: `type`/`source` (repeatable), `from`, `to`, `all`."""
    q = request.query
    flt = DeleteFilter(
        types=tuple(q.getall("type", [])),
        sources=tuple(q.getall("source", [])),
        time_from=_time(q.get("from")),
        time_to=_time(q.get("to")),
    )
    everything = q.get("all", "").lower() == "true"
    if flt.is_all and not everything:
        raise BadFilter("give at least one of type, source, from, to; or all=true")
    if everything and not flt.is_all:
        raise BadFilter("all=true cannot be combined with a filter")
    return flt


@routes.delete("/v1/events")
async def delete_events(request: web.Request) -> web.Response:
    """Delete every matching event accepted before this answer (202 with a receipt id)."""
    principal = await authorize(request, "events:delete")
    family = query_family(request)
    try:
        flt = parse_filter(request)
    except (BadFilter, ValueError) as exc:
        return error_response(400, "bad_query", str(exc))
    ctx = request_context(request, principal, family)
    deleted = await delete_matching(core_of(request), ctx, flt)
    answer = {"deletion_id": deleted.receipt_id, "family": family, "filter": flt.as_json()}
    return web.json_response(answer, status=202)


@routes.get("/v1/deletions/{id}")
async def show_deletion(request: web.Request) -> web.Response:
    """A receipt of this tenant (404 for any other): status, when finished, what it removed."""
    principal = await _receipt_reader(request)
    async with tenant_connection(door_of(request).pool, principal.tenant) as conn:
        receipt = await get_receipt(conn, principal.tenant, request.match_info["id"])
    if receipt is None:
        return error_response(
            404, "not_found", "no such deletion (or its finished receipt was pruned)"
        )
    return web.json_response(receipt)


async def _receipt_reader(request: web.Request) -> Principal:
    """Whoever may delete may read receipts, and so may whoever may read events."""
    try:
        return await authorize(request, "events:delete")
    except Forbidden:
        return await authorize(request, "events:read")


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
