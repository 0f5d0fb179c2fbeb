"""Dynatrace OpenPipeline generic events at `/dynatrace`: `POST /platform/ingest/v1/events`.

The key goes in `Authorization: Api-Token <key>` (or `Bearer`) and needs the
ingest scope (`events:write`, OpenPipeline's `openpipeline.events`). The body
is one event object or a list of them. 202 with no body when every event was
accepted; a request with an invalid event is refused whole (400, nothing
ingested, every event stored raw as a dead letter), answered in Dynatrace's
error envelope with one constraint violation per problem.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from ingest.entry import IngestOptions, IngestRequest, Kind, ingest
from ingest.plan import BATCH_REJECTED, EventResult
from ingest.split import split_json_events
from producer_api.accept import core_of, door_of, read_events_body, timed_request_context
from producer_api.auth import authorize
from producer_api.errors import error_middleware_for, internal_error_middleware

FAMILY = "dynatrace"
INGEST_PATH = "/platform/ingest/v1/events"
INVALID_INPUT = "The input is invalid."

log = logging.getLogger(__name__)

_MESSAGES = {
    401: "Missing or invalid authentication token.",
    403: "The token lacks the openpipeline.events permission.",
    404: "Endpoint not found.",
    405: "Method not allowed.",
    413: "Content too large.",
    429: "Too many requests.",
    500: "Internal server error.",
    503: "Service unavailable.",
}


def envelope(
    status: int,
    message: str,
    violations: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Dynatrace's `ErrorResponseEnvelope`, with constraint violations when there are any."""
    error: dict[str, Any] = {"code": status, "message": message}
    if violations:
        error["details"] = {"type": "constraintViolation", "constraintViolations": violations}
    return web.json_response({"error": error}, status=status, headers=headers)


def dynatrace_error(
    status: int, code: str, text: str, headers: dict[str, str] | None
) -> web.Response:
    """The error middleware's formatter: Dynatrace's envelope with its messages."""
    return envelope(status, _MESSAGES.get(status, text), headers=headers)


internal_errors = internal_error_middleware(lambda: envelope(500, _MESSAGES[500]))
"""An unexpected failure is a 500 in the error envelope."""


def create_subapp() -> web.Application:
    """The sub-app mounted at `/dynatrace`."""
    middlewares: list[Middleware] = [internal_errors, error_middleware_for(dynatrace_error)]
    app = web.Application(middlewares=middlewares)
    app.router.add_post(INGEST_PATH, post_events)
    return app


async def post_events(request: web.Request) -> web.Response:
    """Ingest one generic event or a list; 202 with no body once Kafka holds them all."""
    principal = await authorize(request, "events:write")
    limit = door_of(request).settings.max_events_per_request
    ctx = timed_request_context(request, principal, FAMILY)
    body = await read_events_body(request)
    options = IngestOptions(all_or_nothing=True, min_events=1, max_events=limit)
    outcome = await ingest(core_of(request), IngestRequest(ctx, body, split_json_events, options))
    if outcome.kind is Kind.UNDECODABLE:
        return dynatrace_error(400, "undecodable_body", outcome.reason, None)
    if outcome.kind is Kind.UNSPLITTABLE:
        return envelope(400, INVALID_INPUT, [_violation("", outcome.reason)])
    if outcome.kind is Kind.NO_EVENTS:
        return envelope(400, INVALID_INPUT, [_violation("", "at least one event is required")])
    if outcome.kind is Kind.TOO_MANY_EVENTS:
        return envelope(413, f"At most {limit} events per request.")
    plan = outcome.plan
    if plan.accepted == len(outcome.events):
        return web.Response(status=202)
    listed = body.data.lstrip().startswith(b"[")
    violations = [v for r in plan.results for v in _violations(r, listed)]
    return envelope(400, INVALID_INPUT, violations)


def _violations(result: EventResult, listed: bool) -> list[dict[str, Any]]:
    """The constraint violations of one refused event (none for valid ones of the batch)."""
    prefix = f"[{result.index}]" if listed else ""
    return [
        _violation(prefix + reason.path.removeprefix("$"), reason.message)
        for reason in result.reasons
        if reason != BATCH_REJECTED
    ]


def _violation(path: str, message: str) -> dict[str, Any]:
    return {"path": path, "message": message, "parameterLocation": "PAYLOAD_BODY"}
