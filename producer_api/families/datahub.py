"""DoiT DataHub's API under `/datahub`: send events, delete them, upload CSV files.

Key in `Authorization: Bearer`. `POST /v1/events` takes `{"events": [...]}`, at
most 255, all accepted together (201 `{"message": "Ingestion success"}`) or not
at all (400 `{"error": "events[i].field: ..."}`, every event of the request
recorded raw as a dead letter). `DELETE /v1/events/delete` takes `{"eventIds"}`
or `{"providers"}`; `DELETE /v1/events` deletes all; both answer 200
`{"message": "Delete success"}` and take effect at once. Every error is
`{"error": <text>}`. The CSV route is in `datahub_csv`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from ingest.entry import IngestOptions, IngestRequest, Kind, delete_ids, delete_matching, ingest
from ingest.plan import IngestPlan
from ingest.split import Unsplittable
from producer_api.accept import core_of, read_events_body, request_context
from producer_api.auth import authorize
from producer_api.content import read_body
from producer_api.errors import error_middleware_for
from producer_api.families import datahub_csv
from schemas.deletes import DeleteFilter
from schemas.families.datahub import FAMILY, blank_trailing_commas
from schemas.families.datahub_fields import check_provider

MAX_EVENTS = 255
MAX_DELETE_ITEMS = 1000

routes = web.RouteTableDef()

_object_of_raw = msgspec.json.Decoder(dict[str, msgspec.Raw])
_list_of_raw = msgspec.json.Decoder(list[msgspec.Raw])


def datahub_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """DataHub's error body: `{"error": <text>}`."""
    return web.json_response({"error": message}, status=status, headers=headers)


@routes.post("/v1/events")
async def post_events(request: web.Request) -> web.Response:
    principal = await authorize(request, "events:write")
    ctx = request_context(request, principal, FAMILY)
    body = await read_events_body(request)
    options = IngestOptions(all_or_nothing=True, min_events=1, max_events=MAX_EVENTS)
    outcome = await ingest(core_of(request), IngestRequest(ctx, body, split_events, options))
    if outcome.kind in (Kind.UNDECODABLE, Kind.UNSPLITTABLE):
        return datahub_error(400, "bad_request", outcome.reason)
    if outcome.kind in (Kind.NO_EVENTS, Kind.TOO_MANY_EVENTS):
        held = (str(len(outcome.events)) if outcome.events or outcome.kind is Kind.NO_EVENTS
                else f"more than {MAX_EVENTS}")  # refused before it was split  # fmt: skip
        message = f"`events` must hold 1 to {MAX_EVENTS} events; it holds {held}"
        return datahub_error(400, "bad_request", message)
    if outcome.plan.accepted < len(outcome.events):
        return datahub_error(400, "bad_request", _explain(outcome.plan))
    return web.json_response({"message": "Ingestion success"}, status=201)


def split_events(body: bytes) -> list[bytes]:
    """The events of `{"events": [...]}`, each as its exact bytes in `body`.

    A body that is JSON except for trailing commas (as in DataHub's documentation)
    is split the same way; offsets are kept, so the bytes still come from `body`.
    """
    try:
        return _split(body, body)
    except msgspec.ValidationError as exc:
        raise Unsplittable(f"the body must be an object with an `events` array: {exc}") from exc
    except msgspec.DecodeError:
        pass
    try:
        return _split(blank_trailing_commas(body), body)
    except msgspec.DecodeError as exc:
        raise Unsplittable(f"the body is not valid JSON: {exc}") from exc


def _split(text: bytes, original: bytes) -> list[bytes]:
    events = _object_of_raw.decode(text).get("events")
    if events is None:
        raise Unsplittable("the body must be an object with an `events` array")
    array = bytes(events)
    elements = [bytes(e) for e in _list_of_raw.decode(array)]
    if text is original:
        return elements
    position = text.find(array)
    out = []
    for element in elements:
        position = text.find(element, position)
        out.append(original[position : position + len(element)])
        position += len(element)
    return out


def _explain(plan: IngestPlan) -> str:
    """Each violation of each invalid event, as `events[i].field: message`."""
    parts = [
        f"events[{r.index}]{v.path[1:]}: {v.message}"
        for r in plan.results
        for v in r.reasons
        if v.code != "batch_rejected"
    ]
    return "; ".join(parts) + "; no event of the request was ingested"


@routes.delete("/v1/events/delete")
async def delete_events(request: web.Request) -> web.Response:
    """Delete by `eventIds` or by `providers` (exactly one of them)."""
    principal = await authorize(request, "events:delete")
    try:
        field, values = _delete_filter(await read_body(request))
    except ValueError as exc:
        return datahub_error(400, "bad_request", str(exc))
    ctx = request_context(request, principal, FAMILY)
    if field == "eventIds":
        await delete_ids(core_of(request), ctx, values)
    else:  # a DataHub event's source is its provider
        await delete_matching(core_of(request), ctx, DeleteFilter(sources=tuple(values)))
    return web.json_response({"message": "Delete success"})


@routes.delete("/v1/events")
async def delete_all(request: web.Request) -> web.Response:
    """Delete every DataHub event of the caller's tenant (and their dead letters)."""
    principal = await authorize(request, "events:delete")
    ctx = request_context(request, principal, FAMILY)
    await delete_matching(core_of(request), ctx, DeleteFilter())
    return web.json_response({"message": "Delete success"})


def _delete_filter(body: bytes) -> tuple[str, list[str]]:
    """(`eventIds` or `providers`, its values) from a delete body; ValueError if unusable."""
    try:
        obj: Any = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError("the body must be an object with `eventIds` or `providers`")
    given = [name for name in ("eventIds", "providers") if obj.get(name) is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of `eventIds` and `providers`")
    values = obj[given[0]]
    if not isinstance(values, list) or not 0 < len(values) <= MAX_DELETE_ITEMS:
        raise ValueError(f"`{given[0]}` must be an array of 1 to {MAX_DELETE_ITEMS} strings")
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{given[0]}[{i}]: must be a non-empty string")
        problems = check_provider(value, "") if given[0] == "providers" else []
        if problems:
            raise ValueError(f"providers[{i}]: {problems[0].message}")
    return given[0], values


def create_subapp() -> web.Application:
    """The DataHub sub-app, mounted at `/datahub`."""
    app = web.Application(middlewares=[error_middleware_for(datahub_error)])
    app.add_routes(routes)
    app.add_routes(datahub_csv.routes)
    return app
