"""The door's edge of the one ingest path: what a route needs around `ingest.entry`.

A route authorizes, builds the request's `RequestContext` here, reads its body
(`read_events_body`, which never raises for a body that does not decode: the entry
records it as a dead letter), calls `ingest.entry.ingest` with its family's splitter
and options, and maps the returned `IngestOutcome` to its own answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ingest.entry import Body, IngestDeps
from ingest.plan import EventResult, RequestContext
from producer_api.auth import Principal
from producer_api.content import UndecodableBody, read_body
from producer_api.resources import DOOR, Door
from schemas.families.received import RECEIVED_AT
from schemas.identity import FAMILIES


def door_of(request: web.Request) -> Door:
    """The shared door resources, from the root app (works inside family sub-apps)."""
    return request.config_dict[DOOR]


def core_of(request: web.Request) -> IngestDeps:
    """What the ingest entry needs, from the door's resources."""
    return request.config_dict[DOOR].core


MAX_IDEMPOTENCY_KEY = 255


def request_context(request: web.Request, principal: Principal, family: str) -> RequestContext:
    """Context of a request: tenant and caller from the key, route parameters from the URL,
    and the `Idempotency-Key` header (at most 255 characters; 400 past it)."""
    idempotency = request.headers.get("Idempotency-Key")
    if idempotency is not None and not 0 < len(idempotency) <= MAX_IDEMPOTENCY_KEY:
        raise web.HTTPBadRequest(text=f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} "
                                 "characters")  # fmt: skip
    return RequestContext(
        tenant=principal.tenant,
        family=family,
        route=dict(request.match_info),
        content_type=request.content_type,
        received_at=datetime.now(UTC),
        caller=principal.prefix,
        idempotency_key=idempotency,
    )


def query_family(request: web.Request) -> str:
    """The API family a read or delete covers: native unless `?family=` names another;
    an unknown one is 400 (`web.HTTPBadRequest`, answered by the error middleware)."""
    family = request.query.get("family", "native")
    if family not in FAMILIES:
        raise web.HTTPBadRequest(text=f"unknown family {family!r}; one of {', '.join(FAMILIES)}")
    return family


def timed_request_context(
    request: web.Request, principal: Principal, family: str
) -> RequestContext:
    """`request_context` with the door's receive time in the route, for families whose
    events may take "now" as their time: the stream re-validating later reads the same."""
    ctx = request_context(request, principal, family)
    return replace(ctx, route={**ctx.route, RECEIVED_AT: ctx.received_at.isoformat()})


async def read_events_body(request: web.Request) -> Body:
    """The request's body, decoded; for every family's ingest route.

    A body that does not decode (truncated or corrupt gzip, unknown coding) comes back
    as the bytes received with the reason: `ingest` records it as one dead letter
    (docs/design.md, invariant 2) and answers `UNDECODABLE`, which a family answers as a 400.
    """
    try:
        return Body(await read_body(request))
    except UndecodableBody as exc:
        return Body(exc.raw, str(exc))


def rejected_json(failed: Sequence[EventResult]) -> list[dict[str, Any]]:
    """The refused events of a request, for the analytics dialects' 400 answers (PostHog,
    Segment, RudderStack): where each is in the batch, its dead letter, its reasons."""
    return [
        {"index": r.index, "dead_letter_id": r.dead_letter_id,
         "reasons": [v.as_dict() for v in r.reasons]}
        for r in failed
    ]  # fmt: skip
