"""OTLP/HTTP logs on the real pipeline, driven by OpenTelemetry's own Python SDK and its
OTLP/HTTP exporter (protobuf, gzip, the key as a header): every record one event with its
resource and scope; OTLP/JSON too; a body that does not parse is one dead letter of its
bytes and a 400 with a `google.rpc.Status`; refused records counted in `partial_success`."""

from __future__ import annotations

import gzip
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration


def _tenant() -> str:
    return f"otlp-{uuid.uuid4().hex[:10]}"


def _all_events(stack: ProcessStack, key: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        url = f"{stack.base_url}/v1/events?family=otlp&limit=1000{cursor}"
        page = call("GET", url, headers={"X-API-Key": key}).json()
        found += page["events"]
        if not page.get("next_cursor"):
            return found
        cursor = f"&cursor={quote(page['next_cursor'])}"


def _dead_letters(database_url: str, tenant: str) -> list[tuple[Any, ...]] | None:
    with psycopg.connect(database_url) as conn:
        query = "SELECT raw FROM dead_letters WHERE tenant = %s"
        return conn.execute(query, (tenant,)).fetchall() or None


def _attributes(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    return {p["key"]: next(iter(p["value"].values())) for p in pairs}


def _post(stack: ProcessStack, body: bytes, key: str, content_type: str, **more: str) -> Answer:
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {key}", **more}
    return call("POST", f"{stack.base_url}/otlp/v1/logs", body=body, headers=headers)


def test_the_sdk_exports_a_thousand_records_each_an_event_with_resource_and_scope(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(_tenant())
    exporter = OTLPLogExporter(
        endpoint=f"{stack.base_url}/otlp/v1/logs", headers={"Authorization": f"Bearer {key}"},
        compression=Compression.Gzip,
    )  # fmt: skip
    resource = Resource.create({"service.name": "checkout", "deployment.environment": "test"})
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_export_batch_size=200))
    logger = logging.getLogger(f"sluice.test.otlp.{uuid.uuid4().hex[:6]}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(LoggingHandler(logger_provider=provider))
    for n in range(1000):
        logger.warning("order %d placed", n, extra={"order.n": n, "order.kind": "web"})
    assert provider.force_flush()
    provider.shutdown()

    stored = eventually(lambda: (found := _all_events(stack, key)) and len(found) >= 1000 and found)
    assert len(stored) == 1000
    numbers = set()
    for event in stored:
        assert event["type"] == "log" and event["source"] == "checkout"
        data = event["data"]
        assert _attributes(data["resource"]["attributes"])["deployment.environment"] == "test"
        assert data["scope"]["name"] == logger.name
        record = data["logRecord"]
        attributes = _attributes(record["attributes"])
        assert record["body"]["stringValue"] == f"order {attributes['order.n']} placed"
        assert record["severityText"] == "WARN" and record["severityNumber"] == 13
        assert attributes["order.kind"] == "web"
        numbers.add(int(attributes["order.n"]))
    assert numbers == set(range(1000))


def test_otlp_json_with_hex_ids_and_a_refused_record_in_partial_success(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    tenant = _tenant()
    key = new_key(tenant)
    trace = "5b8efff798038103d269b633813fc60c"
    record = {"timeUnixNano": "1700000000000000000", "severityNumber": 9,
              "body": {"stringValue": "hello"}, "traceId": trace, "spanId": "eee19b7ec3c1b174",
              "attributes": [{"key": "k", "value": {"intValue": "7"}}]}  # fmt: skip
    bad = {**record, "body": {"stringValue": "nul \u0000"}}
    request = {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeLogs": [{"scope": {"name": "my.scope", "version": "1.2"},
                       "logRecords": [record, bad]}],
    }]}  # fmt: skip
    answer = _post(stack, json.dumps(request).encode(), key, "application/json")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1" and "record 1" in partial["errorMessage"]

    events = eventually(lambda: _all_events(stack, key) or None)
    assert len(events) == 1
    event = events[0]
    assert event["source"] == "api" and event["subject"] == trace
    assert event["time"].startswith("2023-11-14T22:13:20")
    assert event["data"]["logRecord"]["spanId"] == "eee19b7ec3c1b174"
    assert event["data"]["scope"] == {"name": "my.scope", "version": "1.2"}

    rows = eventually(lambda: _dead_letters(database_url, tenant))
    assert len(rows) == 1 and b"nul \\u0000" in bytes(rows[0][0])

    resent = _post(stack, gzip.compress(json.dumps(request).encode()), key, "application/json",
                   **{"Content-Encoding": "gzip"})  # fmt: skip
    assert resent.status == 200
    assert len(_all_events(stack, key)) == 1  # the same record again is the same event


def test_a_body_that_does_not_parse_is_one_raw_dead_letter_and_a_status(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    tenant = _tenant()
    key = new_key(tenant)
    garbage = b"\x0a\xff\xff\xff\xff\x0fnot protobuf"
    answer = _post(stack, garbage, key, "application/x-protobuf")
    assert answer.status == 400 and answer.headers["Content-Type"] == "application/x-protobuf"
    status = status_pb2.Status.FromString(answer.body)
    assert status.code == 3 and "ExportLogsServiceRequest" in status.message

    rows = eventually(lambda: _dead_letters(database_url, tenant))
    assert [bytes(r[0]) for r in rows] == [garbage]

    empty = _post(stack, b"", key, "application/x-protobuf")
    assert empty.status == 200
    assert ExportLogsServiceResponse.FromString(empty.body) == ExportLogsServiceResponse()
    unauthenticated = _post(stack, b"", "nope", "application/x-protobuf")
    assert unauthenticated.status == 401
    assert status_pb2.Status.FromString(unauthenticated.body).code == 16
    wrong_type = _post(stack, b"{}", key, "text/plain")
    assert wrong_type.status == 415


def test_an_oversized_record_from_the_sdk_is_dead_lettered_and_the_rest_stored(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    """The exporter counts a 200 as success and does not read `partial_success` (the spec
    says it must not retry one): the refused record is kept as a dead letter."""
    tenant = _tenant()
    key = new_key(tenant)
    exporter = OTLPLogExporter(f"{stack.base_url}/otlp/v1/logs",
                               headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger = logging.getLogger(f"sluice.test.otlp.big.{uuid.uuid4().hex[:6]}")
    logger.propagate = False
    logger.addHandler(LoggingHandler(logger_provider=provider))
    huge = "y" * (1024 * 1024 + 10)
    logger.warning("small one")
    logger.warning(huge)
    assert provider.force_flush()
    provider.shutdown()

    rows = eventually(lambda: _dead_letters(database_url, tenant))
    assert len(rows) == 1
    dead = json.loads(bytes(rows[0][0]))
    assert dead["logRecord"]["body"]["stringValue"] == huge
    stored = eventually(lambda: _all_events(stack, key) or None)
    assert [e["data"]["logRecord"]["body"]["stringValue"] for e in stored] == ["small one"]
