"""`GET /dakkio/api/data`: a bucket's points by data source and time range.

Query parameters: `bucketId` (required), `dataSourceId`, `startTime`,
`endTime` (ISO 8601, inclusive), `limit` (1 to 1000, default 100), `offset`.
The answer follows dakkio's list shape: `{"data": [...], "pagination":
{"limit", "offset", "total", "hasMore"}}`. Reads need `events:read`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from producer_api.accept import door_of
from producer_api.auth import authorize
from producer_api.families import dakkio_answers as answers
from schemas.families.dakkio import OBJECT_ID, parse_timestamp
from store.catalog import bucket_exists
from store.dakkio_queries import PointQuery, find_points
from store.tenancy import tenant_connection

MAX_LIMIT = 1000
MAX_OFFSET = 100_000
"""An offset is a scan of every row it skips: past this, narrow by startTime/endTime."""


class BadQuery(ValueError):
    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__("invalid query")
        self.details = details


async def get_points(request: web.Request) -> web.Response:
    """The tenant's points of one bucket, oldest first."""
    principal = await authorize(request, "events:read")
    try:
        query = parse_query(request.query)
    except BadQuery as exc:
        return answers.validation_error(exc.details)
    async with tenant_connection(door_of(request).pool, principal.tenant) as conn:
        if not await bucket_exists(conn, principal.tenant, query.bucket_id):
            return answers.not_found("Bucket not found")
        rows, total = await find_points(conn, principal.tenant, query)
    data = [answers.point(r["event_id"], r["data"], r["time"], r["received_at"]) for r in rows]
    pagination = {"limit": query.limit, "offset": query.offset, "total": total,
                  "hasMore": query.offset + len(data) < total}  # fmt: skip
    return web.json_response({"data": data, "pagination": pagination})


def parse_query(params: Mapping[str, str]) -> PointQuery:
    """The query's filters, or `BadQuery` listing every bad parameter."""
    details: list[dict[str, Any]] = []
    bucket = params.get("bucketId")
    if bucket is None:
        details.append(answers.detail(("query", "bucketId"), "Required"))
    source = params.get("dataSourceId")
    for name, value in (("bucketId", bucket), ("dataSourceId", source)):
        if value is not None and not OBJECT_ID.match(value):
            details.append(answers.detail(("query", name), "Invalid ObjectId"))
    times = {}
    for name in ("startTime", "endTime"):
        value = params.get(name)
        times[name] = parse_timestamp(value) if value is not None else None
        if value is not None and times[name] is None:
            details.append(answers.detail(("query", name), "Invalid datetime"))
    limit = _integer(params, "limit", 100, 1, MAX_LIMIT, details)
    offset = _integer(params, "offset", 0, 0, MAX_OFFSET, details)
    if details or bucket is None:
        raise BadQuery(details)
    return PointQuery(
        bucket_id=bucket.lower(), data_source_id=source.lower() if source else None,
        start=times["startTime"], end=times["endTime"], limit=limit, offset=offset,
    )  # fmt: skip


def _integer(
    params: Mapping[str, str], name: str, default: int, low: int, high: int,
    details: list[dict[str, Any]],
) -> int:  # fmt: skip
    text = params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        details.append(answers.detail(("query", name), "Expected number"))
        return default
    if not low <= value <= high:
        details.append(answers.detail(("query", name), f"Must be between {low} and {high}"))
    return value
