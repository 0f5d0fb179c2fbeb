"""One JSON shape for every error the native API answers, and the middleware that maps
the core's exceptions to status codes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from producer_api.auth import Forbidden, Unauthenticated
from producer_api.publish import Overloaded
from sluice.kafka import ProduceFailed

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Unauthenticated as exc:
        return error_response(401, "unauthenticated", str(exc))
    except Forbidden as exc:
        return error_response(403, "forbidden", str(exc))
    except Overloaded as exc:
        return error_response(503, "overloaded", str(exc), {"Retry-After": RETRY_AFTER_SECONDS})
    except ProduceFailed as exc:
        log.warning("Kafka did not acknowledge a request: %s", exc)
        return error_response(
            503, "kafka_unavailable", "events were not acknowledged by Kafka; retry",
            {"Retry-After": RETRY_AFTER_SECONDS},
        )  # fmt: skip
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "body_too_large", exc.text or "request body too large")
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        raise
