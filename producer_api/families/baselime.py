"""Baselime's Events API at `/baselime`: `POST /v1/{dataset}/{namespace}`, key in `x-api-key`;
also `POST /v1/{dataset}` with the namespace in an `x-namespace` header, as Baselime's own
SDK (`@baselime/edge-logger`) sends it.

The body is a JSON array of event objects. Valid events are ingested even when
others of the same request fail; the answer is then 400 with the failed
events under `invalid` (and, beyond Baselime, their dead-letter ids and
reasons under `errors`), the failed events stored raw as dead letters.
Answers use Baselime's bodies: `{"message": "Request Accepted"}` and so on.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from ingest.entry import IngestOptions, IngestRequest, Kind, ingest
from ingest.plan import EventResult
from ingest.split import Splitter, Unsplittable, refuse, split_json_events
from producer_api.accept import door_of, read_events_body, timed_request_context
from producer_api.auth import authorize
from producer_api.errors import error_middleware_for, internal_error_middleware
from producer_api.resources import Door
from schemas.families.baselime import NAME_PATTERN
from store.catalog import KnownNames, catalog_gap
from store.tenancy import tenant_connection

FAMILY = "baselime"
INGEST_PATH = "/v1/{dataset}/{namespace}"
HEADER_INGEST_PATH = "/v1/{dataset}"
NAMESPACE_HEADER = "x-namespace"
KNOWN_DATASETS = web.AppKey("baselime_known_datasets", KnownNames)

log = logging.getLogger(__name__)

_MESSAGES = {
    400: "Bad Request",
    401: "Unauthorised",
    403: "Forbidden",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Error",
    503: "Service Unavailable",
}


def message(status: int, **extra: Any) -> web.Response:
    """An answer in Baselime's shape: `{"message": ...}` plus any extra keys."""
    return web.json_response({"message": _MESSAGES.get(status, "Error"), **extra}, status=status)


def baselime_error(
    status: int, code: str, text: str, headers: dict[str, str] | None
) -> web.Response:
    """The error middleware's formatter. A path that does not match is Baselime's 400
    ("missing or invalid path parameters"), not a 404."""
    status = 400 if status == 404 else status
    response = message(status)
    response.headers.update(headers or {})
    return response


internal_errors = internal_error_middleware(lambda: message(500))
"""An unexpected failure is Baselime's `500 {"message": "Internal Error"}`."""


def create_subapp() -> web.Application:
    """The sub-app mounted at `/baselime`."""
    middlewares: list[Middleware] = [internal_errors, error_middleware_for(baselime_error)]
    app = web.Application(middlewares=middlewares)
    app[KNOWN_DATASETS] = KnownNames()
    app.router.add_post(INGEST_PATH, post_events)
    app.router.add_post(HEADER_INGEST_PATH, post_events)
    return app


async def post_events(request: web.Request) -> web.Response:
    """Ingest a batch of events into an existing dataset; 202 when every event was valid."""
    principal = await authorize(request, "events:write")
    dataset = request.match_info["dataset"]
    namespace = request.match_info.get("namespace") or request.headers.get(NAMESPACE_HEADER) or ""
    if not all(NAME_PATTERN.match(name) for name in (dataset, namespace)):
        return message(400)
    door = door_of(request)
    ctx = timed_request_context(request, principal, FAMILY)
    ctx = replace(ctx, route={**ctx.route, "namespace": namespace})
    body = await read_events_body(request)
    split: Splitter = _split_array
    if body.undecodable is None:
        if not body.data.strip():
            return message(400)
        missing = await _missing_dataset(request, door, principal.tenant, dataset)
        if missing is not None:
            split = refuse(missing)
    options = IngestOptions(min_events=1, max_events=door.settings.max_events_per_request)
    outcome = await ingest(door.core, IngestRequest(ctx, body, split, options))
    if outcome.kind is Kind.TOO_MANY_EVENTS:
        return message(413)
    if outcome.kind is not Kind.ACCEPTED:  # undecodable, unsplittable (both dead-lettered), empty
        return message(400)
    failed = outcome.plan.rejected()
    if not failed:
        return web.json_response({"message": "Request Accepted"}, status=202)
    raws = outcome.events
    return message(400, invalid=[_echo(raws[r.index]) for r in failed], errors=_errors(failed))


async def _missing_dataset(
    request: web.Request, door: Door, tenant: str, dataset: str
) -> str | None:
    known = request.app[KNOWN_DATASETS]
    if known.known((tenant, dataset)):
        return None
    async with tenant_connection(door.pool, tenant) as conn:
        missing = await catalog_gap(conn, tenant, dataset=dataset)
    if missing is None:
        known.remember((tenant, dataset))
    return missing


def _split_array(body: bytes) -> list[bytes]:
    """The elements of a JSON array body, each as its exact bytes; anything else is refused."""
    if not body.lstrip().startswith(b"["):
        raise Unsplittable("the body must be a JSON array of events")
    return split_json_events(body)


def _echo(raw: bytes) -> Any:
    """A failed event as it was sent, for the `invalid` list."""
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return raw.decode(errors="replace")


def _errors(failed: list[EventResult]) -> list[dict[str, Any]]:
    return [
        {"index": r.index, "dead_letter_id": r.dead_letter_id,
         "reasons": [v.as_dict() for v in r.reasons]}
        for r in failed
    ]  # fmt: skip
