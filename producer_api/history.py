"""Where is my event? `GET /v1/events/{id}/history` and `GET /v1/requests/{request_id}`.

Thin: authorize, read through `store.history` as the caller's tenant, answer. Both need
`events:read`; a key that also holds `deadletters:read` sees the dead letters' ids and
reasons in the steps. Another tenant's ids answer 404 like unknown ones.
"""

from __future__ import annotations

from aiohttp import web

from producer_api.accept import door_of, query_family
from producer_api.auth import Principal, authorize, has_scope
from producer_api.errors import error_response
from store.history import BadCursor, event_history, request_history
from store.tenancy import tenant_connection

routes = web.RouteTableDef()

MAX_PAGE = 1000
DEAD_LETTER_DETAIL = "deadletters:read"


def sees_dead_letters(principal: Principal) -> bool:
    """Whether the caller may see dead letters' ids and reasons (`admin` implies it)."""
    return has_scope(principal, DEAD_LETTER_DETAIL)


@routes.get("/v1/events/{id}/history")
async def show_event_history(request: web.Request) -> web.Response:
    """Every recorded step of one event (`?family=`, default `native`), in time order."""
    principal = await authorize(request, "events:read")
    family = query_family(request)
    async with tenant_connection(door_of(request).pool, principal.tenant) as conn:
        found = await event_history(conn, principal.tenant, family, request.match_info["id"],
                                    detail=sees_dead_letters(principal))  # fmt: skip
    if found is None:
        return error_response(404, "not_found", "nothing is recorded of this event")
    return web.json_response(found)


@routes.get("/v1/requests/{request_id}")
async def show_request(request: web.Request) -> web.Response:
    """The history of every event a request carried, a page at a time (`limit`, `cursor`)."""
    principal = await authorize(request, "events:read")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return error_response(400, "bad_query", "limit must be a number")
    if not 1 <= limit <= MAX_PAGE:
        return error_response(400, "bad_query", f"limit must be within 1..{MAX_PAGE}")
    try:
        async with tenant_connection(door_of(request).pool, principal.tenant) as conn:
            found = await request_history(
                conn, principal.tenant, request.match_info["request_id"],
                detail=sees_dead_letters(principal), limit=limit,
                cursor=request.query.get("cursor"),
            )  # fmt: skip
    except BadCursor as exc:
        return error_response(400, "bad_query", str(exc))
    if found is None:
        return error_response(404, "not_found", "nothing is recorded of this request")
    return web.json_response(found)
