"""dakkio's answer bodies: `{"error", "message", "details"}` errors and stored data points."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from producer_api.errors import internal_error_middleware
from schemas.identity import object_id_of

log = logging.getLogger(__name__)

_ERRORS = {
    400: ("Bad Request", "Invalid request"),
    401: ("Unauthorized", "Invalid or missing API key"),
    403: ("Forbidden", "Insufficient permissions: this key lacks data:write / data:read"),
    404: ("Not Found", "Route not found"),
    405: ("Method Not Allowed", "Method not allowed"),
    409: ("Conflict", "The request conflicts with the current state"),
    413: ("Payload Too Large", "Request body too large"),
    429: ("Too Many Requests", "Rate limit exceeded; retry after the Retry-After delay"),
    500: ("Internal Server Error", "An unexpected error occurred"),
    503: ("Service Unavailable", "Storage did not acknowledge; retry later"),
}


def error(
    status: int, message: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """An error in dakkio's shape."""
    name, default = _ERRORS.get(status, ("Error", "Request failed"))
    body = {"error": name, "message": message or default}
    return web.json_response(body, status=status, headers=headers)


def dakkio_error(status: int, code: str, text: str, headers: dict[str, str] | None) -> web.Response:
    """The error middleware's formatter: dakkio's names, the core's message where it helps."""
    return error(status, text if status == 429 else None, headers)


internal_errors = internal_error_middleware(lambda: error(500))
"""An unexpected failure is a 500 in dakkio's shape."""


def detail(path: tuple[str | int, ...], message: str) -> dict[str, Any]:
    """One entry of a validation error's `details`, path as a list like zod's."""
    return {"path": list(path), "message": message}


def validation_error(details: list[dict[str, Any]]) -> web.Response:
    body = {"error": "Validation Error", "message": "Invalid request parameters",
            "details": details}  # fmt: skip
    return web.json_response(body, status=400)


def conflict(message: str, details: list[dict[str, Any]]) -> web.Response:
    body = {"error": "Conflict", "message": message, "details": details}
    return web.json_response(body, status=409)


def not_found(message: str) -> web.Response:
    return web.json_response({"error": "Not Found", "message": message}, status=404)


def created(message: str, **fields: Any) -> web.Response:
    return web.json_response({"message": message, **fields}, status=201)


def iso(moment: datetime) -> str:
    """UTC, `Z`-suffixed, with milliseconds only when the moment has them (as JS prints)."""
    moment = moment.astimezone(UTC)
    if moment.microsecond == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def point(
    event_id: str, data: str | dict[str, Any], time: datetime, received_at: datetime
) -> dict[str, Any]:
    """A stored data point as dakkio shows it, from its canonical event's parts.

    `_id` is the event id, an ObjectId as the door assigns them; a point stored before
    ids were ObjectIds (a UUID) shows one derived from it, the same on every read."""
    fields = msgspec.json.decode(data) if isinstance(data, str) else data
    shown: dict[str, Any] = {
        "_id": object_id_of(event_id),
        "bucketId": fields.get("bucketId"),
        "dataSourceId": fields.get("dataSourceId"),
        "timestamp": iso(time),
        "values": fields.get("values"),
    }
    if fields.get("metadata") is not None:
        shown["metadata"] = fields["metadata"]
    shown["createdAt"] = iso(received_at)
    return shown
