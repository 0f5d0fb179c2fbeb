"""Segment's HTTP Tracking API at `/segment` and RudderStack's data plane at `/rudderstack`.

Both take the same calls: `POST /v1/batch` (`{"batch": [message, ...]}`, what the SDKs
send) and the single calls `/v1/track`, `/identify`, `/page`, `/screen`, `/group`,
`/alias`, whose body is one message (Segment's one-letter forms `/v1/t`, `/i`, `/p`,
`/s`, `/g`, `/a`, `/b` and `/v1/import` too). The key goes where the SDKs put the write
key: HTTP Basic with the key as the user name and an empty password, or `writeKey` in
the body (Segment documents both); `X-API-Key` or `Authorization: Bearer` work too. The
tenant comes only from the key.

Bodies may be gzip (`Content-Encoding: gzip`: RudderStack's SDK always, Segment's with
`gzip=True`). Limits as the vendors document them: Segment 500 KB a request and 32 KB a
message, RudderStack 4 MB (its data plane's default) for both. A request past its bound
is 413; a message past it is dead-lettered and named in the 400 answer, while the
request's valid messages are ingested.

Answers: Segment `{"success": true}` (errors `{"success": false, "code", "message"}`,
which segment-analytics-python reads into its `APIError`); RudderStack `OK` as text
(errors a line of text, as its data plane answers). Both SDKs give up on a 400, 401, 403
or 413 and retry a 429 or 503: docs/api.md says how.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from ingest.entry import Body, IngestOptions, IngestRequest, Kind, ingest
from ingest.split import Splitter, given, refuse
from producer_api.accept import core_of, door_of, rejected_json, timed_request_context
from producer_api.auth import authorize_key, presented_key
from producer_api.content import UndecodableBody, decode_body, receive
from producer_api.errors import error_middleware_for, internal_error_middleware
from producer_api.ratelimit import body_hold
from schemas.families.segment import CALLS, SHORT_CALLS

BATCH_PATHS = ("/v1/batch", "/v1/b", "/v1/import")
CALL_PATH = "/v1/{call:" + "|".join((*CALLS, *SHORT_CALLS)) + "}"


@dataclass(frozen=True)
class Dialect:
    """What differs between the two doors: the family, its bounds and its answers."""

    family: str
    max_request_bytes: int
    ok: Callable[[], web.Response]
    error: Callable[..., web.Response]
    """(status, code, message, headers, **extra): an `ErrorFormatter` taking `rejected`."""


DIALECT = web.AppKey("segment_dialect", Dialect)


def segment_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """An error in Segment's shape: `{"success": false, "code", "message"}`, plus `extra`."""
    body = {"success": False, "code": code, "message": message, **extra}
    return web.json_response(body, status=status, headers=headers)


def rudderstack_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **_: Any
) -> web.Response:
    """An error as RudderStack's data plane answers it: one line of text."""
    return web.Response(status=status, text=f"{message}\n", headers=headers)


SEGMENT = Dialect(
    "segment", 500 * 1024, lambda: web.json_response({"success": True}), segment_error
)
RUDDERSTACK = Dialect(
    "rudderstack", 4000 * 1024, lambda: web.Response(text="OK"), rudderstack_error
)


def create_subapp(dialect: Dialect) -> web.Application:
    """The sub-app mounted at `/segment` or `/rudderstack`."""

    def internal_error() -> web.Response:
        return dialect.error(500, "server_error", "Internal server error", None)

    internal = internal_error_middleware(internal_error)
    middlewares: list[Middleware] = [internal, error_middleware_for(dialect.error)]
    app = web.Application(middlewares=middlewares)
    app[DIALECT] = dialect
    for path in BATCH_PATHS:
        app.router.add_post(path, receive_messages)
    app.router.add_post(CALL_PATH, receive_messages)
    return app


class _Batch(msgspec.Struct):
    """A batch body: its messages as their exact bytes, and the key it may carry."""

    batch: list[msgspec.Raw] | None = None
    writeKey: Any = None  # Segment's field name


class _Keyed(msgspec.Struct):
    writeKey: Any = None


class _Parsed(msgspec.Struct):
    key: str | None
    events: list[bytes] | None
    refusal: str = ""


async def receive_messages(request: web.Request) -> web.Response:
    """Ingest a batch or one call's message; the dialect's OK once Kafka holds them all."""
    dialect = request.app[DIALECT]
    body = await _body(request, dialect.max_request_bytes)
    single = "call" in request.match_info
    parsed = _Parsed(None, None) if body.undecodable else _parse(body.data, single)
    key = presented_key(request, basic=True) or parsed.key
    if not key:
        return dialect.error(401, "unauthorized", "Failed to read writeKey: send the Sluice key "
                             "as the Basic user name or as writeKey", None)  # fmt: skip
    principal = await authorize_key(request, key, "events:write")
    limit = door_of(request).settings.max_events_per_request
    ctx = timed_request_context(request, principal, dialect.family)
    split: Splitter = given(parsed.events) if parsed.events is not None else refuse(parsed.refusal)
    options = IngestOptions(min_events=1, max_events=limit)
    outcome = await ingest(core_of(request), IngestRequest(ctx, body, split, options))
    if outcome.kind in (Kind.UNDECODABLE, Kind.UNSPLITTABLE):
        return dialect.error(400, "invalid_request", f"Invalid request: {outcome.reason}", None)
    if outcome.kind is Kind.NO_EVENTS:
        return dialect.error(400, "empty_batch", "Empty batch payload", None)
    if outcome.kind is Kind.TOO_MANY_EVENTS:
        return dialect.error(413, "too_many_messages", f"At most {limit} messages a request", None)
    failed = outcome.plan.rejected()
    if failed:
        message = f"Invalid messages: {len(failed)} of {len(outcome.events)} were refused"
        return dialect.error(400, "invalid_messages", message, None, rejected=rejected_json(failed))
    return dialect.ok()


async def _body(request: web.Request, limit: int) -> Body:
    """The body, gzip undone, at most `limit` bytes received and decoded (413 past it);
    one that does not decode comes back as received, with the reason."""
    raw = await receive(request)
    if len(raw) > limit:
        text = f"Request size too large: at most {limit} bytes"
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw), text=text)
    try:
        data = decode_body(raw, request.headers.get("Content-Encoding", ""), limit)
    except UndecodableBody as exc:
        return Body(raw, str(exc))
    if data is not raw:  # decoded: held too, like `read_body`'s
        body_hold(request).take(len(data))
    return Body(data)


def _parse(data: bytes, single: bool) -> _Parsed:
    """The key and the messages of a JSON body, each message as its exact bytes."""
    try:
        if single:
            return _Parsed(_text(msgspec.json.decode(data, type=_Keyed).writeKey), [data])
        top = msgspec.json.decode(data, type=_Batch)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        return _Parsed(None, None, f"not a JSON message or batch: {exc}")
    if top.batch is None:
        return _Parsed(_text(top.writeKey), None, "a batch body needs its batch array")
    return _Parsed(_text(top.writeKey), [bytes(item) for item in top.batch])


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
