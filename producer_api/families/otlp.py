"""OTLP/HTTP logs at `/otlp`: `POST /v1/logs`, an `ExportLogsServiceRequest`.

The body is binary protobuf (`Content-Type: application/x-protobuf`) or OTLP/JSON
(`application/json`), plain or `Content-Encoding: gzip`; the Sluice key comes as the
exporter sends headers (`OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer <key>"`, or
`X-API-Key`). Each log record becomes one event (`schemas/families/otlp.py` says which
fields it keeps and how its id is chosen), written in OTLP/JSON form with its resource
and scope.

Answers follow the OTLP/HTTP spec, in the request's encoding: 200 with an
`ExportLogsServiceResponse` once Kafka holds every record; records refused one by one
are dead-lettered and counted in `partial_success` (`rejected_log_records`, and an
`error_message` giving each one's index, reasons and dead-letter id), still a 200,
which an exporter must not retry. A body that does not parse is 400 with a
`google.rpc.Status`, stored whole as one dead letter; 401/403/413/415 likewise carry
a Status. Overload and rate limits are 503 and 429 with `Retry-After`, the statuses
the spec marks retryable: the Python exporter retries 429/502/503/504 up to 6 times,
waiting `Retry-After` when given (else exponential backoff), within its export
timeout (10 s by default), and drops the batch past it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from ingest.entry import IngestOptions, IngestRequest, Kind, ingest
from ingest.plan import EventResult
from ingest.split import Splitter, Unsplittable
from producer_api.accept import core_of, door_of, read_events_body, timed_request_context
from producer_api.auth import authorize
from producer_api.errors import Handler, error_middleware_for, internal_error_middleware

FAMILY = "otlp"
INGEST_PATH = "/v1/logs"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ID_FIELDS = ("traceId", "spanId")

log = logging.getLogger(__name__)

_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    404: code_pb2.NOT_FOUND,
    405: code_pb2.UNIMPLEMENTED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED,
    500: code_pb2.INTERNAL,
    503: code_pb2.UNAVAILABLE,
}


def status_response(
    status: int, message: str, as_json: bool, headers: dict[str, str] | None = None
) -> web.Response:
    """A `google.rpc.Status` answer, in protobuf unless the request was JSON."""
    body = status_pb2.Status(code=_CODES.get(status, code_pb2.UNKNOWN), message=message)
    return _encoded(body, status, as_json, headers)


def _encoded(
    message: Any, status: int, as_json: bool, headers: dict[str, str] | None = None
) -> web.Response:
    if as_json:
        text = json_format.MessageToJson(message, indent=None)
        return web.Response(status=status, text=text, content_type=JSON, headers=headers)
    data = message.SerializeToString()
    return web.Response(status=status, body=data, content_type=PROTOBUF, headers=headers)


def _wants_json(request: web.Request) -> bool:
    return request.content_type == JSON


@web.middleware
async def otlp_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The core's exceptions as OTLP answers: a Status in the request's own encoding."""
    as_json = _wants_json(request)

    def formatted(
        status: int, code: str, text: str, headers: dict[str, str] | None
    ) -> web.Response:
        return status_response(status, text, as_json, headers)

    return await error_middleware_for(formatted)(request, handler)


internal_errors = internal_error_middleware(
    lambda: status_response(500, "internal error", as_json=False)
)
"""An unexpected failure is a 500 with a Status."""


def create_subapp() -> web.Application:
    """The sub-app mounted at `/otlp`."""
    middlewares: list[Middleware] = [internal_errors, otlp_errors]
    app = web.Application(middlewares=middlewares)
    app.router.add_post(INGEST_PATH, export_logs)
    return app


async def export_logs(request: web.Request) -> web.Response:
    """Ingest every log record of an export request; 200 once Kafka holds them."""
    as_json = _wants_json(request)
    principal = await authorize(request, "events:write")
    if request.content_type not in (PROTOBUF, JSON):
        text = f"Content-Type must be {PROTOBUF} or {JSON}"
        return status_response(415, text, as_json)
    limit = door_of(request).settings.max_events_per_request
    ctx = timed_request_context(request, principal, FAMILY)
    body = await read_events_body(request)
    options = IngestOptions(max_events=limit)
    split: Splitter = split_json_request if as_json else split_protobuf_request
    outcome = await ingest(core_of(request), IngestRequest(ctx, body, split, options))
    if outcome.kind in (Kind.UNDECODABLE, Kind.UNSPLITTABLE):
        return status_response(400, outcome.reason, as_json)
    if outcome.kind is Kind.TOO_MANY_EVENTS:
        return status_response(413, f"at most {limit} log records per request", as_json)
    failed = outcome.plan.rejected()
    response = ExportLogsServiceResponse()
    if failed:
        response.partial_success.CopyFrom(ExportLogsPartialSuccess(
            rejected_log_records=len(failed), error_message=_why(failed),
        ))  # fmt: skip
    return _encoded(response, 200, as_json)


def split_protobuf_request(body: bytes) -> list[bytes]:
    """The log records of a binary `ExportLogsServiceRequest`, one event each."""
    message = ExportLogsServiceRequest()
    try:
        message.ParseFromString(body)
    except (DecodeError, RuntimeWarning) as exc:
        raise Unsplittable(f"not a protobuf ExportLogsServiceRequest: {exc}") from exc
    return _records(message)


def split_json_request(body: bytes) -> list[bytes]:
    """The log records of an OTLP/JSON `ExportLogsServiceRequest`, one event each."""
    try:
        decoded = msgspec.json.decode(body)
        if not isinstance(decoded, dict):
            raise Unsplittable("an OTLP/JSON request is a JSON object")
        message = ExportLogsServiceRequest()
        json_format.ParseDict(_ids_as_base64(decoded), message)
    except (msgspec.DecodeError, UnicodeDecodeError, json_format.ParseError) as exc:
        raise Unsplittable(f"not an OTLP/JSON ExportLogsServiceRequest: {exc}") from exc
    return _records(message)


def _records(message: ExportLogsServiceRequest) -> list[bytes]:
    """Each record in OTLP/JSON form beside its resource and scope."""
    events: list[bytes] = []
    for resource_logs in message.resource_logs:
        resource = _as_json(resource_logs.resource)
        for scope_logs in resource_logs.scope_logs:
            scope = _as_json(scope_logs.scope)
            for record in scope_logs.log_records:
                events.append(msgspec.json.encode({
                    "resource": resource, "resourceSchemaUrl": resource_logs.schema_url,
                    "scope": scope, "scopeSchemaUrl": scope_logs.schema_url,
                    "logRecord": _ids_as_hex(_as_json(record)),
                }))  # fmt: skip
    return events


def _as_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, use_integers_for_enums=True)


def _ids_as_base64(request: dict[str, Any]) -> dict[str, Any]:
    """OTLP/JSON writes trace and span ids in hex; protobuf's JSON reads bytes as base64."""
    for resource_logs in _list(request.get("resourceLogs", request.get("resource_logs"))):
        for scope_logs in _list(_get(resource_logs, "scopeLogs", "scope_logs")):
            for record in _list(_get(scope_logs, "logRecords", "log_records")):
                if not isinstance(record, dict):
                    continue
                for name in (*_ID_FIELDS, "trace_id", "span_id"):
                    value = record.get(name)
                    if isinstance(value, str) and value:
                        try:
                            record[name] = base64.b64encode(bytes.fromhex(value)).decode()
                        except ValueError as exc:
                            raise Unsplittable(f"{name} is not hex: {value!r}") from exc
    return request


def _ids_as_hex(record: dict[str, Any]) -> dict[str, Any]:
    for name in _ID_FIELDS:
        value = record.get(name)
        if isinstance(value, str):
            with contextlib.suppress(binascii.Error):
                record[name] = base64.b64decode(value).hex()
    return record


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else ()


def _get(value: Any, *names: str) -> Any:
    if not isinstance(value, dict):
        return None
    return next((value[n] for n in names if n in value), None)


def _why(failed: list[EventResult]) -> str:
    """Each refused record: its index in the request, reasons and dead-letter id."""
    parts = []
    for result in failed[:20]:
        reasons = "; ".join(f"{v.path}: {v.message}" for v in result.reasons)
        parts.append(f"record {result.index}: {reasons} (dead letter {result.dead_letter_id})")
    more = f"; and {len(failed) - 20} more" if len(failed) > 20 else ""
    return "; ".join(parts) + more
