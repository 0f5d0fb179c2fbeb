"""One JSON shape for every error the native API answers, and the middleware that maps
the core's exceptions to status codes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
from aiohttp import web
from aiohttp.typedefs import Middleware

from ingest.entry import ReceiptsUnavailable
from ingest.publish import Overloaded
from producer_api.auth import Forbidden, Unauthenticated, key_prefix_presented
from producer_api.content import SlowBody, UndecodableBody
from producer_api.ratelimit import BODY_HOLD_NAME, RateLimited
from producer_api.resources import DOOR
from runtime.kafka import ProduceFailed

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
_KEPT_HEADERS = ("Allow", "Retry-After")
"""Headers of an aiohttp HTTP exception that its reformatted answer keeps."""


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorFormatter = Callable[[int, str, str, dict[str, str] | None], web.Response]
"""(status, code, message, headers) → the response in a family's own error format."""


def error_middleware_for(fmt: ErrorFormatter) -> Middleware:
    """Map the core's exceptions to status codes, answered in `fmt`'s format.

    Each API family's sub-app installs one with its own formatter; the root app
    uses the native format.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        retry = {"Retry-After": RETRY_AFTER_SECONDS}
        try:
            async with _body_reservation(request):
                return await handler(request)
        except Unauthenticated as exc:
            return fmt(401, "unauthenticated", str(exc), None)
        except Forbidden as exc:
            return fmt(403, "forbidden", str(exc), None)
        except RateLimited as exc:
            return fmt(429, "rate_limited", str(exc), {"Retry-After": str(exc.retry_after)})
        except Overloaded as exc:
            return fmt(503, "overloaded", str(exc), retry)
        except ProduceFailed as exc:
            log.warning("Kafka did not acknowledge a request: %s", exc)
            return fmt(503, "kafka_unavailable", "not acknowledged by Kafka; retry", retry)
        except UndecodableBody as exc:
            return fmt(400, "undecodable_body", str(exc), None)
        except SlowBody as exc:
            return fmt(408, "request_timeout", str(exc), None)
        except ReceiptsUnavailable as exc:
            return fmt(503, "service_unavailable", str(exc), None)
        except web.HTTPRequestEntityTooLarge as exc:
            return fmt(413, "body_too_large", exc.text or "request body too large", None)
        except psycopg.errors.QueryCanceled:  # SLUICE_API_STATEMENT_TIMEOUT_MS
            return fmt(503, "query_timeout", "the query ran too long; narrow it (a time range, "
                       "fewer filters on body text) or retry later", retry)  # fmt: skip
        except psycopg.DataError as exc:  # text PostgreSQL cannot take (NUL, out of range)
            return fmt(400, "bad_request", f"a parameter PostgreSQL refuses: {exc}", None)
        except web.HTTPException as exc:
            if exc.status >= 400 and exc.content_type != "application/json":
                code = exc.reason.lower().replace(" ", "_")
                kept = {h: exc.headers[h] for h in _KEPT_HEADERS if h in exc.headers}
                return fmt(exc.status, code, exc.text or exc.reason, kept or None)
            raise

    return middleware


error_middleware = error_middleware_for(error_response)


def internal_error_middleware(answer: Callable[[], web.Response]) -> Middleware:
    """Log an unexpected failure and answer `answer()`: a family's own 500 shape."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:  # the family's seed promises a 500 body, never a traceback
            log.exception("unexpected error on %s %s", request.method, request.path)
            return answer()

    return middleware


@contextlib.asynccontextmanager
async def _body_reservation(request: web.Request) -> AsyncIterator[None]:
    """The request's hold on the process's body budget, taken once per request: by the
    innermost app's error middleware, so a refusal (`Overloaded`, 503) is in its format.
    It starts empty and grows as the body arrives (`producer_api.content.receive`)."""
    door = request.config_dict.get(DOOR)
    info = request.match_info
    innermost = bool(info.apps) and info.current_app is info.apps[-1]
    if door is None or not innermost:
        yield
        return
    async with door.bodies.hold(key_prefix_presented(request)) as hold:
        request[BODY_HOLD_NAME] = hold
        yield


def request_timeout_middleware(seconds: float) -> Middleware:
    """Answer 408 when handling a request, reading a slow client's body included, takes
    longer than `seconds` (slow headers are bounded by the server's keep-alive timeout).

    It sits outside every family's error middleware, so the 408 is in the native format.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                return await handler(request)
        except TimeoutError:
            if not deadline.expired():
                raise
            return error_response(408, "request_timeout", f"request not handled within {seconds}s")

    return middleware
