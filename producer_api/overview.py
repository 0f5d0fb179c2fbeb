"""`GET /v1/overview`: the console's live figures, and the flusher of the door's counts.

The figures come from what the running processes record in PostgreSQL (store.figures):
any API process answers for all of them. This module also runs, in each API process,
the task that adds the door's in-memory counts (`ingest.tally`) to `door_counts` every
`SLUICE_FIGURES_FLUSH_SECONDS`, in one statement, off the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import psycopg
from aiohttp import web

from producer_api.accept import door_of
from producer_api.auth import authorize
from producer_api.errors import error_response
from producer_api.resources import DOOR
from store.figures import add_door_counts
from store.overview import read_overview
from store.tenancy import tenant_connection

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

MAX_MINUTES = 60
DEFAULT_MINUTES = 15
FRESH_REPORTS = 3
"""A lag or breaker report counts as current for this many report intervals."""


@routes.get("/v1/overview")
async def show_overview(request: web.Request) -> web.Response:
    """The caller's tenant's figures over the last `minutes` (1..60, default 15)."""
    principal = await authorize(request, "events:read")
    raw = request.query.get("minutes", str(DEFAULT_MINUTES))
    try:
        minutes = int(raw)
    except ValueError:
        return error_response(400, "bad_query", f"minutes must be a whole number, not {raw!r}")
    if not 1 <= minutes <= MAX_MINUTES:
        return error_response(400, "bad_query", f"minutes must be within 1..{MAX_MINUTES}")
    door = door_of(request)
    fresh = FRESH_REPORTS * max(door.settings.figures_report_seconds, 1.0)
    async with tenant_connection(door.pool, principal.tenant) as conn:
        found = await read_overview(conn, principal.tenant, minutes * 60, time.time(), fresh)
    return web.json_response(found)


async def _flush_once(app: web.Application) -> None:
    """Add what the tally holds to `door_counts`; on a database error give it back."""
    door = app[DOOR]
    tally = door.core.tally
    if tally is None or not len(tally):
        return
    counts = tally.drain()
    try:
        async with door.pool.connection() as conn:
            await add_door_counts(conn, counts)
    except psycopg.Error as exc:
        dropped = tally.restore(counts)
        log.warning("could not add the door's counts to the overview (%s); kept %d rows%s",
                    exc, len(tally), f", dropped {dropped}" if dropped else "")  # fmt: skip


async def _flusher(app: web.Application) -> None:
    every = max(app[DOOR].settings.figures_flush_seconds, 0.1)
    while True:
        await asyncio.sleep(every)
        await _flush_once(app)


async def _flusher_context(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(_flusher(app), name="door-counts-flusher")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await _flush_once(app)  # what the last seconds counted


def install(app: web.Application) -> None:
    """Add the overview route and the door-counts flusher (after the door's context)."""
    app.cleanup_ctx.append(_flusher_context)
    app.add_routes(routes)
