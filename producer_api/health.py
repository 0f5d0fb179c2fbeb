"""Liveness and readiness. Neither writes anything to Kafka."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from producer_api.resources import DOOR

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when a Kafka broker answers metadata and PostgreSQL answers a query."""
    door = request.config_dict[DOOR]
    kafka_ok = await asyncio.to_thread(door.publisher.producer.cluster_reachable, 2.0)
    try:
        async with door.pool.connection(timeout=2.0) as conn:
            await conn.execute("SELECT 1")
        db_ok = True
    except Exception as exc:  # any failure to answer means not ready
        log.warning("not ready: PostgreSQL did not answer: %s", exc)
        db_ok = False
    ready = kafka_ok and db_ok
    body = {
        "status": "ready" if ready else "not_ready",
        "kafka": "ok" if kafka_ok else "unreachable",
        "postgres": "ok" if db_ok else "unreachable",
        "inflight_bytes": door.publisher.inflight_bytes,
    }
    return web.json_response(body, status=200 if ready else 503)
