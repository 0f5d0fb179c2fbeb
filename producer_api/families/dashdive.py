"""Dashdive's ingest API at `/dashdive`: `POST /{service}` (alias `/{service}/single`) for
one event, `POST /{service}/batch` for an array; key in `X-API-Key`.

Answers: 200 `{"message": "OK", "id"}` (batch: `"ids"`). A schema failure is 400
`{"error": "schema_violation", "message", "deadLetterId", "violations"}` (batch:
`"events": [{"index", "deadLetterId", "violations"}]`), the event still recorded
raw as a dead letter so it can be corrected and re-inserted. A batch with one
bad event is rejected whole and every event of it is recorded raw. Other errors:
`{"error": <code>, "message"}` with 401, 403, 404, 405, 413, 429 or 503.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ingest.entry import IngestOptions, IngestOutcome, IngestRequest, Kind, ingest
from ingest.plan import EventResult
from ingest.split import Unsplittable, split_json_events
from producer_api.accept import core_of, door_of, read_events_body, request_context
from producer_api.auth import authorize
from producer_api.errors import error_middleware_for
from schemas.families.dashdive import FAMILY, SERVICES

routes = web.RouteTableDef()

_REJECTED = "schema validation failed; the payload was recorded raw and can be corrected"


def dashdive_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """Dashdive's error body: `{"error": <code>, "message": <text>}`."""
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


@routes.post("/{service}")
@routes.post("/{service}/single")
async def post_event(request: web.Request) -> web.Response:
    """One event of `service`; the body is the event itself."""
    principal = await authorize(request, "events:write")
    _known_service(request)
    ctx = request_context(request, principal, FAMILY)
    body = await read_events_body(request)
    outcome = await ingest(core_of(request), IngestRequest(ctx, body))
    if outcome.kind is Kind.UNDECODABLE:
        return _undecodable(outcome)
    (result,) = outcome.plan.results
    if result.accepted:
        return web.json_response({"message": "OK", "id": result.event_id})
    answer = {"error": "schema_violation", "message": _REJECTED, **_rejection(result)}
    del answer["index"]
    return web.json_response(answer, status=400)


@routes.post("/{service}/batch")
async def post_batch(request: web.Request) -> web.Response:
    """An array of events of `service`, accepted all together or not at all."""
    principal = await authorize(request, "events:write")
    _known_service(request)
    limit = door_of(request).settings.max_events_per_request
    ctx = request_context(request, principal, FAMILY)
    body = await read_events_body(request)
    options = IngestOptions(all_or_nothing=True, max_events=limit)
    outcome = await ingest(core_of(request), IngestRequest(ctx, body, _split_batch, options))
    if outcome.kind is Kind.UNDECODABLE:
        return _undecodable(outcome)
    if outcome.kind is Kind.UNSPLITTABLE:
        (result,) = outcome.plan.results
        answer = {"error": "malformed_body", "message": outcome.reason} | _rejection(result)
        del answer["index"]
        return web.json_response(answer, status=400)
    if outcome.kind is Kind.TOO_MANY_EVENTS:
        return dashdive_error(413, "too_many_events", f"at most {limit} events per request")
    plan = outcome.plan
    if plan.accepted == len(outcome.events):
        return web.json_response({"message": "OK", "ids": [r.event_id for r in plan.results]})
    events = [_rejection(r) for r in plan.results]
    return web.json_response(
        {"error": "schema_violation", "message": _REJECTED, "events": events}, status=400
    )


def _split_batch(body: bytes) -> list[bytes]:
    if not body.lstrip().startswith(b"["):
        raise Unsplittable("a batch body must be a JSON array of events")
    return split_json_events(body)


def _undecodable(outcome: IngestOutcome) -> web.Response:
    """A body that did not decode: recorded as a dead letter, answered as an error."""
    return dashdive_error(400, "undecodable_body", outcome.reason)


def _known_service(request: web.Request) -> None:
    service = request.match_info["service"]
    if service not in SERVICES:
        known = ", ".join(f"/{s}" for s in SERVICES)
        raise web.HTTPNotFound(text=f"no Dashdive service route /{service}; routes: {known}")


def _rejection(result: EventResult) -> dict[str, Any]:
    return {
        "index": result.index,
        "deadLetterId": result.dead_letter_id,
        "violations": [v.as_dict() for v in result.reasons],
    }


def create_subapp() -> web.Application:
    """The Dashdive sub-app, mounted at `/dashdive`."""
    app = web.Application(middlewares=[error_middleware_for(dashdive_error)])
    app.add_routes(routes)
    return app
