"""The aiohttp application factory."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging

from aiohttp import web
from aiohttp.log import access_logger

from ingest.plan import COMPILED
from producer_api import (
    admin,
    dead_letters,
    deletions,
    heal,
    health,
    history,
    metrics,
    native,
    overview,
    retention,
    schema_registry,
)
from producer_api.connections import ConnectionGate
from producer_api.console import routes as console_routes
from producer_api.errors import error_middleware, request_timeout_middleware
from producer_api.families import (
    baselime,
    dakkio,
    dashdive,
    datahub,
    dynatrace,
    otlp,
    posthog,
    segment,
)
from producer_api.openapi import install as install_openapi
from producer_api.resources import SETTINGS, door_context
from runtime.redaction import install_key_redaction
from runtime.settings import DEFAULT_KEY_SECRET, Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    """The front door for `settings`: routes, limits and the Kafka/PostgreSQL clients."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        handler_args={"auto_decompress": False},  # producer_api/content.py decodes bodies
        middlewares=[request_timeout_middleware(settings.http_request_timeout_seconds),
                     error_middleware],
    )  # fmt: skip
    app[SETTINGS] = settings
    app.cleanup_ctx.append(door_context)
    app.add_routes(health.routes)
    app.add_routes(native.routes)
    app.add_routes(deletions.routes)
    app.add_routes(admin.routes)
    app.add_routes(history.routes)
    dead_letters.install(app)
    heal.install(app)
    retention.install(app)
    overview.install(app)
    console_routes.install(app)
    app.add_subapp("/dashdive", dashdive.create_subapp())
    app.add_subapp("/datahub", datahub.create_subapp())
    app.add_subapp("/baselime", baselime.create_subapp())
    app.add_subapp("/dynatrace", dynatrace.create_subapp())
    app.add_subapp("/dakkio", dakkio.create_subapp())
    app.add_subapp("/schema-registry", schema_registry.create_subapp())
    app.add_subapp("/posthog", posthog.create_subapp())
    app.add_subapp("/otlp", otlp.create_subapp())
    app.add_subapp("/segment", segment.create_subapp(segment.SEGMENT))
    app.add_subapp("/rudderstack", segment.create_subapp(segment.RUDDERSTACK))
    install_openapi(app)
    metrics.install(app)
    return app


class DefaultSecretRefused(SystemExit):
    """The API would serve a network address with the published default key secret."""


def refuse_default_secret(settings: Settings) -> None:
    """Anyone who read the README could mint hashes for the default `SLUICE_KEY_SECRET`: it
    is for loopback only (`make dev`), unless `SLUICE_ALLOW_DEFAULT_SECRET=1` says so."""
    if settings.key_secret != DEFAULT_KEY_SECRET or settings.allow_default_secret:
        return
    host = settings.http_host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise DefaultSecretRefused(
            f"sluice api: refusing to serve {settings.http_host!r} with the default "
            "SLUICE_KEY_SECRET; set a secret of your own (or SLUICE_ALLOW_DEFAULT_SECRET=1)"
        )


def run(settings: Settings) -> None:
    """Serve the front door until interrupted.

    `keepalive_timeout` also bounds how long a connection may take to send a request's
    headers (aiohttp closes a connection still waiting for a whole request line and
    headers when it fires), so slow-header clients hold a socket for at most
    `http_request_timeout_seconds`. Header lines are capped at 8190 bytes, 128 headers.
    The access log (`SLUICE_HTTP_ACCESS_LOG`, off by default: a line per request cost
    ~4 % of the door's CPU under load, and the Prometheus metrics count requests by
    route and status) records the request line, never headers (where keys travel).
    The event loop is asyncio's own: uvloop saved ~1 % of the door's CPU but, when
    overloaded, left ~1 % of requests unanswered until the load stopped (p99 9.9 s in a
    10 s burst, against 1.1 s with asyncio's loop).
    """
    refuse_default_secret(settings)
    install_key_redaction()  # aiohttp's parser quotes refused header lines: runtime/redaction.py
    if not COMPILED:
        log.warning("sluice_fastpath is not installed (make dev builds it from fastpath/): "
                    "every native request takes the Python path, ~2x the door's CPU")  # fmt: skip
    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):  # a signal: done
        asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    """`web.run_app`'s serving, with `ConnectionGate` as the listening socket's protocol
    factory (`SLUICE_MAX_CONNECTIONS`, `SLUICE_MAX_CONNECTIONS_PER_ADDRESS`). SIGINT and
    SIGTERM end it gracefully, as they do `web.run_app`."""
    runner = web.AppRunner(
        create_app(settings), handle_signals=True,
        keepalive_timeout=settings.http_request_timeout_seconds,
        max_line_size=8190, max_field_size=8190,
        access_log=access_logger if settings.http_access_log else None,
    )  # fmt: skip
    await runner.setup()
    assert runner.server is not None
    gate = ConnectionGate(
        runner.server, settings.max_connections, settings.max_connections_per_address
    )
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(
        gate, settings.http_host, settings.http_port, reuse_port=True, backlog=128
    )
    log.info("serving on http://%s:%d", settings.http_host, settings.http_port)
    try:
        await asyncio.Event().wait()  # until a signal raises GracefulExit
    finally:
        listening.close()
        await runner.cleanup()
