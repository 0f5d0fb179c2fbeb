"""The aiohttp application factory."""

from __future__ import annotations

from aiohttp import web

from producer_api import health, native
from producer_api.errors import error_middleware
from producer_api.families import dashdive, datahub
from producer_api.resources import SETTINGS, door_context
from sluice.settings import Settings


def create_app(settings: Settings) -> web.Application:
    """The front door for `settings`: routes, limits and the Kafka/PostgreSQL clients."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app.cleanup_ctx.append(door_context)
    app.add_routes(health.routes)
    app.add_routes(native.routes)
    app.add_subapp("/dashdive", dashdive.create_subapp())
    app.add_subapp("/datahub", datahub.create_subapp())
    return app


def run(settings: Settings) -> None:
    """Serve the front door until interrupted."""
    web.run_app(
        create_app(settings), host=settings.http_host, port=settings.http_port, reuse_port=True
    )
