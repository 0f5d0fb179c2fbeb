"""PostHog capture at `/posthog`: `POST /capture/`, `/batch/`, `/e/` and `/i/v0/e/`.

PostHog's SDKs send the project key in the body (`api_key`, `token`, or posthog-js's
`properties.token` of each event); the Sluice
key goes there, and the tenant comes only from it (a key in `X-API-Key` or
`Authorization: Bearer`, or `?api_key=` in the query, is read too). Every route takes
the forms PostHog's capture takes: one event object carrying its key, a JSON array of
such events, or `{"api_key": ..., "batch": [...]}` (what `posthog` for Python sends).

Bodies come as the SDKs send them: plain JSON, `Content-Encoding: gzip` (posthog-python
with `gzip=True`), `?compression=gzip-js` or `gzip` with a gzip body (posthog-js),
`?compression=lz64` with a form body `data=<lz-string base64>` (posthog-js's older
encoding; also as a `compression` form field), or a form body `data=<base64 JSON>`.
An lz64 body is at most `MAX_LZ64_BYTES`: lz-string's dictionary can expand a body
quadratically, and the library has no output bound.

Answers are PostHog's: 200 `{"status": 1}` once Kafka holds every event; errors
`{"type", "code", "detail", "attr"}` (its SDKs raise `APIError` with `detail`). Valid
events of a batch are ingested even when others fail: the answer is then 400 with
the failed ones' dead-letter ids and reasons under `rejected`. The SDKs give up on a
400 or 413 and retry a 429/503 (posthog-python waits the longer of its exponential
backoff and `Retry-After`, at most 30 s, up to `max_retries`, 3 by default).
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any
from urllib.parse import parse_qs

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware
from lzstring import LZString

from ingest.entry import Body, IngestOptions, IngestRequest, Kind, ingest
from ingest.split import Splitter, given, refuse
from producer_api.accept import core_of, door_of, rejected_json, timed_request_context
from producer_api.auth import authorize_key, presented_key
from producer_api.content import UndecodableBody, decode_body, receive
from producer_api.errors import error_middleware_for, internal_error_middleware
from producer_api.ratelimit import body_hold
from producer_api.resources import SETTINGS

FAMILY = "posthog"
PATHS = ("/capture/", "/batch/", "/e/", "/i/v0/e/")
MAX_LZ64_BYTES = 16 * 1024
KEY_FIELDS = ("api_key", "token")

log = logging.getLogger(__name__)

_ERRORS = {
    401: (
        "authentication_error",
        "invalid_api_key",
        "Project API key invalid. Use a Sluice key with the events:write scope as api_key.",
    ),
    403: ("authentication_error", "forbidden", "This key lacks the events:write scope."),
    404: ("invalid_request", "not_found", "Endpoint not found."),
    405: ("invalid_request", "method_not_allowed", "Method not allowed."),
    413: ("validation_error", "payload_too_large", "Payload too large."),
    429: ("throttled", "rate_limited", "Rate limit exceeded; retry after Retry-After seconds."),
    500: ("server_error", "server_error", "Internal server error."),
    503: ("server_error", "unavailable", "Service unavailable; retry after Retry-After seconds."),
}


def error(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """An error in PostHog's shape: `{"type", "code", "detail", "attr"}`, plus `extra`."""
    kind = _ERRORS.get(status, ("validation_error",))[0] if status != 400 else "validation_error"
    body = {"type": kind, "code": code, "detail": detail, "attr": None, **extra}
    return web.json_response(body, status=status, headers=headers)


def posthog_error(
    status: int, code: str, text: str, headers: dict[str, str] | None
) -> web.Response:
    """The error middleware's formatter: PostHog's codes and texts where it has them."""
    known = _ERRORS.get(status)
    if known is None:
        return error(status, code, text, headers)
    detail = text if status in (400, 401, 413, 503) and text else known[2]
    return error(status, known[1], detail, headers)


internal_errors = internal_error_middleware(lambda: error(500, *_ERRORS[500][1:]))
"""An unexpected failure is a 500 in PostHog's error shape."""


def create_subapp() -> web.Application:
    """The sub-app mounted at `/posthog`."""
    middlewares: list[Middleware] = [internal_errors, error_middleware_for(posthog_error)]
    app = web.Application(middlewares=middlewares)
    for path in PATHS:
        app.router.add_post(path, capture)
    return app


class _Key(msgspec.Struct):
    """The key fields of an event or of a batch body; anything else is left unread."""

    api_key: Any = None
    token: Any = None
    properties: Any = None
    """posthog-js sends the key as `properties.token` of each event."""

    def key(self) -> str | None:
        inner = self.properties.get("token") if isinstance(self.properties, dict) else None
        return _text(self.api_key) or _text(self.token) or _text(inner)


class _Keyed(_Key):
    """A body's key and, in the batch form, its events as their exact bytes."""

    batch: list[msgspec.Raw] | None = None


class _Parsed(msgspec.Struct):
    key: str | None
    events: list[bytes] | None
    refusal: str = ""


async def capture(request: web.Request) -> web.Response:
    """Ingest one event, an array, or a batch; `{"status": 1}` once Kafka holds them all."""
    raw = await receive(request)
    body = _decoded(request, raw)
    if body.data is not raw:  # decoded: held too, like `read_body`'s
        body_hold(request).take(len(body.data))
    parsed = _parse(body.data) if body.undecodable is None else _Parsed(None, None)
    key = presented_key(request) or parsed.key or _query_key(request)
    if not key:
        return error(401, "missing_api_key", "API key not provided: put the Sluice key in "
                     "api_key (or Authorization: Bearer).")  # fmt: skip
    principal = await authorize_key(request, key, "events:write")
    limit = door_of(request).settings.max_events_per_request
    ctx = timed_request_context(request, principal, FAMILY)
    split: Splitter = given(parsed.events) if parsed.events is not None else refuse(parsed.refusal)
    options = IngestOptions(min_events=1, max_events=limit)
    outcome = await ingest(core_of(request), IngestRequest(ctx, body, split, options))
    if outcome.kind is Kind.UNDECODABLE:
        return error(400, "invalid_payload", f"Malformed request data: {outcome.reason}")
    if outcome.kind is Kind.UNSPLITTABLE:
        return error(400, "invalid_payload", f"Malformed request data: {outcome.reason}")
    if outcome.kind is Kind.NO_EVENTS:
        return error(400, "no_data", "No data found. Make sure to send at least one event.")
    if outcome.kind is Kind.TOO_MANY_EVENTS:
        return error(413, "payload_too_large", f"At most {limit} events per request.")
    failed = outcome.plan.rejected()
    if failed:
        detail = f"Invalid payload: {len(failed)} of {len(outcome.events)} events were refused."
        return error(400, "invalid_payload", detail, rejected=rejected_json(failed))
    return web.json_response({"status": 1})


def _decoded(request: web.Request, raw: bytes) -> Body:
    """The body as JSON bytes, undone of every encoding the SDKs use; or, when one does
    not decode, the bytes received with the reason (one dead letter of them)."""
    limit = request.config_dict[SETTINGS].max_body_bytes
    try:
        data = decode_body(raw, request.headers.get("Content-Encoding", ""), limit)
        compression = request.query.get("compression", "").lower()
        form: dict[str, list[str]] = {}
        if request.content_type == "application/x-www-form-urlencoded" or raw.startswith(b"data="):
            form = parse_qs(data.decode("utf-8", "replace"))
            compression = compression or form.get("compression", [""])[0].lower()
        if compression in ("gzip", "gzip-js"):
            return Body(decode_body(data, "gzip", limit))
        if "data" in form:
            return Body(_form_data(form["data"][0], compression, len(raw), limit))
        if compression == "lz64":
            return Body(_lz64(data.decode("utf-8", "replace"), len(raw), limit))
        return Body(data)
    except UndecodableBody as exc:
        return Body(raw, str(exc))
    except ValueError as exc:  # a text or base64 that does not decode
        return Body(raw, f"body does not decode: {exc}")


def _form_data(value: str, compression: str, size: int, limit: int) -> bytes:
    if compression == "lz64":
        return _lz64(value, size, limit)
    if value.lstrip().startswith(("{", "[")):
        return value.encode()
    try:
        return base64.b64decode(value, validate=False)
    except binascii.Error as exc:
        raise ValueError(f"data is not base64: {exc}") from exc


def _lz64(value: str, size: int, limit: int) -> bytes:
    if size > MAX_LZ64_BYTES:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_LZ64_BYTES, actual_size=size,
            text=f"an lz64 body is at most {MAX_LZ64_BYTES} bytes; send gzip for more",
        )  # fmt: skip
    try:
        text = LZString.decompressFromBase64(value.strip())
    except (LookupError, TypeError, ValueError) as exc:  # a character outside base64
        raise ValueError(f"data is not lz64 (lz-string base64): {exc!r}") from exc
    if not text:
        raise ValueError("data is not lz64 (lz-string base64)")
    out = text.encode()
    if len(out) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(out))
    return out


def _parse(data: bytes) -> _Parsed:
    """The key and the events of a JSON body, each event as its exact bytes."""
    stripped = data.lstrip()
    try:
        if stripped.startswith(b"["):
            raws = [bytes(item) for item in msgspec.json.decode(data, type=list[msgspec.Raw])]
            keys = {_key_of(raw) for raw in raws} - {None}
            if len(keys) > 1:
                return _Parsed(None, None, "the events carry different API keys")
            return _Parsed(next(iter(keys), None), raws)
        if stripped.startswith(b"{"):
            top = msgspec.json.decode(data, type=_Keyed)
            key = _text(top.api_key) or _text(top.token)
            if top.batch is None:
                key = key or top.key()
            else:
                return _Parsed(key, [bytes(item) for item in top.batch])
            return _Parsed(key, [data])
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        key = _key_of(data)  # e.g. a batch that is not a list
        return _Parsed(key, None, f"not a valid JSON event or batch: {exc}")
    return _Parsed(None, None, "the body must be a JSON event, an array of events or a batch")


def _key_of(raw: bytes) -> str | None:
    """The key an event (or a body) carries, if it is an object that carries one."""
    if not raw.lstrip().startswith(b"{"):
        return None
    try:
        return msgspec.json.decode(raw, type=_Key).key()
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _query_key(request: web.Request) -> str | None:
    return request.query.get("api_key") or request.query.get("token") or None
