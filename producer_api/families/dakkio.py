"""dakkio's data API at `/dakkio`: ingest one point, a batch, and query; key in `X-API-Key`.

`POST /api/data` one point → 201 with the stored point; `POST /api/data/batch`
`{"bucketId", "dataPoints": [...]}` → 201 with every stored point;
`GET /api/data` the bucket's points by data source and time range. Ingest
needs `events:write` (dakkio's `data:write`), the query `events:read`.

A request with an invalid point is refused whole (400 "Validation Error" with
zod-style `details`, nothing ingested, every point stored raw as a dead
letter). The bucket and data sources must exist (`sluice buckets create`,
`sluice datasources create`), else 404; such a request is stored raw as one
dead letter so it can be replayed once they exist.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from ingest.entry import Body, IngestDeps, IngestOptions, IngestRequest, ingest
from ingest.plan import EventResult, RequestContext
from ingest.split import given, refuse
from producer_api.accept import core_of, door_of, read_events_body, request_context
from producer_api.auth import Principal, authorize
from producer_api.errors import error_middleware_for
from producer_api.families import dakkio_answers as answers
from producer_api.families.dakkio_answers import dakkio_error, internal_errors, not_found
from producer_api.resources import Door
from schemas.contracts import CODE as CONTRACT_VIOLATION
from schemas.families.dakkio import BATCH_BUCKET, OBJECT_ID, point_issues
from schemas.families.received import RECEIVED_AT
from schemas.outcome import Rejected, ValidEvent
from schemas.validators import validate_all, validator_for
from store.catalog import KnownNames, catalog_gap
from store.tenancy import tenant_connection

FAMILY = "dakkio"
KNOWN = web.AppKey("dakkio_known_catalog", KnownNames)

_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw])
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


class BadBody(ValueError):
    """A body that is not the expected JSON shape; `details` say where."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__("invalid body")
        self.details = details


def create_subapp() -> web.Application:
    """The sub-app mounted at `/dakkio`."""
    from producer_api.families.dakkio_query import get_points
    from producer_api.families.dakkio_sources import add_routes

    middlewares: list[Middleware] = [internal_errors, error_middleware_for(dakkio_error)]
    app = web.Application(middlewares=middlewares)
    app[KNOWN] = KnownNames()
    app.router.add_post("/api/data", post_point)
    app.router.add_post("/api/data/batch", post_batch)
    app.router.add_get("/api/data", get_points)
    add_routes(app)
    return app


async def post_point(request: web.Request) -> web.Response:
    """Ingest one data point; 201 with the stored point."""
    principal = await authorize(request, "events:write")
    ctx = _context(request, principal, {})
    body = await read_events_body(request)
    if body.undecodable is not None:
        return await _undecodable(core_of(request), ctx, body)
    try:
        _top_level_of(body.data)
    except BadBody as exc:
        await ingest(core_of(request), IngestRequest(ctx, body, refuse("not a JSON object")))
        return answers.validation_error(exc.details)
    return await _ingest(request, ctx, body.data, [body.data], [("body",)])


async def post_batch(request: web.Request) -> web.Response:
    """Ingest `dataPoints` into `bucketId`, all or nothing; 201 with the stored points."""
    principal = await authorize(request, "events:write")
    limit = door_of(request).settings.max_events_per_request
    unbucketed = _context(request, principal, {})
    body = await read_events_body(request)
    if body.undecodable is not None:
        return await _undecodable(core_of(request), unbucketed, body)
    try:
        bucket, raws = _batch(body.data, limit)
    except BadBody as exc:
        await ingest(core_of(request), IngestRequest(unbucketed, body, refuse("invalid batch")))
        return answers.validation_error(exc.details)
    ctx = _context(request, principal, {BATCH_BUCKET: bucket})
    prefixes: list[tuple[str | int, ...]] = [("body", "dataPoints", i) for i in range(len(raws))]
    return await _ingest(request, ctx, body.data, raws, prefixes)


async def _undecodable(core: IngestDeps, ctx: RequestContext, body: Body) -> web.Response:
    """A body that did not decode: recorded as a dead letter, answered as an error."""
    outcome = await ingest(core, IngestRequest(ctx, body))
    return dakkio_error(400, "undecodable_body", outcome.reason, None)


async def _ingest(
    request: web.Request,
    ctx: RequestContext,
    body: bytes,
    raws: list[bytes],
    prefixes: list[tuple[str | int, ...]],
) -> web.Response:
    """Validate, check the catalog, then ingest all points or none."""
    core, all_or_nothing = core_of(request), IngestOptions(all_or_nothing=True)
    validate = validator_for(FAMILY)
    outcomes = validate_all(validate, raws, ctx.route)
    if any(isinstance(o, Rejected) for o in outcomes):
        await ingest(core, IngestRequest(ctx, Body(body), given(raws), all_or_nothing))
        details = [
            answers.detail((*prefix, *issue.path), issue.message)
            for raw, prefix, o in zip(raws, prefixes, outcomes, strict=True)
            if isinstance(o, Rejected)
            for issue in point_issues(raw, ctx.route)
        ]
        return answers.validation_error(details)
    valid = [o for o in outcomes if isinstance(o, ValidEvent)]
    missing = await _missing(request, door_of(request), ctx.tenant, valid[0].source, valid)
    if missing is not None:
        replayable = Body(_replayable(ctx, body, raws))
        await ingest(core, IngestRequest(ctx, replayable, refuse(missing)))
        return not_found(missing)
    outcome = await ingest(core, IngestRequest(ctx, Body(body), given(raws), all_or_nothing))
    if outcome.plan.rejected():  # a data source's schema (its data contract) refused a point
        return answers.validation_error(_contract_details(outcome.plan.rejected(), prefixes))
    points = [
        answers.point(r.event_id or "", o.data_json, o.time, ctx.received_at)
        for r, o in zip(outcome.plan.results, valid, strict=True)
    ]
    if BATCH_BUCKET not in ctx.route:
        return answers.created("Data point ingested successfully", dataPoint=points[0])
    return answers.created(
        "Data points ingested successfully", count=len(points), dataPoints=points
    )


def _contract_details(
    rejected: list[EventResult], prefixes: list[tuple[str | int, ...]]
) -> list[dict[str, Any]]:
    """The data-contract violations of refused points as details (the rest of an
    all-or-nothing request is refused with them and named by nothing)."""
    return [
        answers.detail((*prefixes[r.index], *_pointer_path(v.path)), v.message)
        for r in rejected
        for v in r.reasons
        if v.code == CONTRACT_VIOLATION
    ]


def _pointer_path(pointer: str) -> tuple[str | int, ...]:
    """A JSON pointer (`/values/temperature`) as a detail's path segments."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    return tuple(int(p) if p.isdigit() else p for p in parts)


def _replayable(ctx: RequestContext, body: bytes, raws: list[bytes]) -> bytes:
    """What to store for a request refused for a missing bucket or data source.

    A replay splits it as a JSON body and validates each part with the stored route
    (which holds a batch's bucket), so a batch is stored as the array of its points,
    each point's bytes untouched; a single point is its body.
    """
    return body if BATCH_BUCKET not in ctx.route else b"[" + b",".join(raws) + b"]"


async def _missing(
    request: web.Request, door: Door, tenant: str, bucket: str, points: list[ValidEvent]
) -> str | None:
    """ "Bucket not found" / "Data source not found" when the catalog lacks one, else None."""
    known = request.app[KNOWN]
    sources = {p.subject or "" for p in points}
    wanted = {(tenant, bucket)} | {(tenant, bucket, s) for s in sources}
    if all(known.known(key) for key in wanted):
        return None
    async with tenant_connection(door.pool, tenant) as conn:
        missing = await catalog_gap(conn, tenant, bucket=bucket, sources=sources)
    if missing is not None:
        return missing
    for key in wanted:
        known.remember(key)
    return None


def _context(request: web.Request, principal: Principal, extra: dict[str, str]) -> RequestContext:
    """The request's context, with the receive time (and the batch's bucket) in the route."""
    ctx = request_context(request, principal, FAMILY)
    route = {**ctx.route, **extra, RECEIVED_AT: ctx.received_at.isoformat()}
    return replace(ctx, route=route)


def _top_level_of(body: bytes) -> dict[str, msgspec.Raw]:
    try:
        return _top_level.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise BadBody([answers.detail(("body",), _shape_message(body))]) from exc


def _field(top: dict[str, msgspec.Raw], name: str) -> str | None:
    raw = top.get(name)
    if raw is None:
        return None
    try:
        value = msgspec.json.decode(raw)
    except UnicodeDecodeError:  # invalid UTF-8 inside the string
        return None
    return value if isinstance(value, str) else None


def _batch(body: bytes, max_points: int) -> tuple[str, list[bytes]]:
    """The batch's bucket id and its points as their exact bytes."""
    top = _top_level_of(body)
    details = []
    bucket = _field(top, "bucketId")
    if bucket is None:
        received = "undefined" if "bucketId" not in top else "a non-string value"
        details.append(
            answers.detail(("body", "bucketId"), f"Expected string, received {received}")
        )
    elif not OBJECT_ID.match(bucket):
        details.append(answers.detail(("body", "bucketId"), "Invalid ObjectId"))
    raws = _points(top.get("dataPoints"), max_points, details)
    if details or bucket is None:
        raise BadBody(details)
    return bucket, raws


def _points(raw: msgspec.Raw | None, max_points: int, details: list[dict[str, Any]]) -> list[bytes]:
    path = ("body", "dataPoints")
    if raw is None:
        details.append(answers.detail(path, "Expected array, received undefined"))
        return []
    try:
        points = [bytes(p) for p in _raw_list.decode(raw)]
    except (msgspec.DecodeError, UnicodeDecodeError):
        details.append(answers.detail(path, "Expected array"))
        return []
    if not points:
        details.append(answers.detail(path, "Array must contain at least 1 element(s)"))
    elif len(points) > max_points:
        details.append(answers.detail(path, f"Array must contain at most {max_points} element(s)"))
    return points


def _shape_message(body: bytes) -> str:
    start = body.lstrip()[:1]
    if start == b"[":
        return "Expected object, received array"
    return "Expected object" if start else "Expected object, received undefined"
