"""Invariant 1: with Kafka down the door answers 503 with Retry-After, never a 2xx.

Every route that publishes is walked while the broker is stopped: each family's writes,
the DataHub CSV upload, the deletes and a replay. A route that answered before Kafka's
acknowledgement would answer 2xx here (`make mutants` checks that this test notices).
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.settings import Settings
from runtime.topic_admin import ensure_topics
from sluice.catalog_cli import create_bucket, create_data_source, create_dataset
from sluice.launchers.kafka import KafkaLauncher
from sluice.stack import ProcessStack
from tests.conftest import eventually, make_settings
from tests.httpclient import call

pytestmark = pytest.mark.integration

EVENT = {"type": "t", "source": "s", "time": "2024-01-01T00:00:00Z", "data": {}}
BUCKET, SOURCE = "5f0c0ffee0ddba11deadbe01", "5f0c0ffee0ddba11deadbe02"
GET_OBJECT = {"action": "GetObject", "timestamp": "2013-01-01T12:00:00+08:00",
              "provider": "aws", "bucketName": "b", "objectKey": "k", "bytes": 1}  # fmt: skip
CSV = (
    b"usage_date,id,fixed.region,label.team,metric.cost\r\n2024-03-10T00:00:00Z,row-1,eu,a,1.5\r\n"
)


def _csv_upload() -> tuple[bytes, str]:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("rows.csv", CSV)
    boundary = uuid.uuid4().hex
    part = f"--{boundary}\r\nContent-Disposition: form-data"
    head = (f'{part}; name="provider"\r\n\r\nmydataset\r\n'
            f'{part}; name="file"; filename="rows.zip"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n")  # fmt: skip
    body = head.encode() + out.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def publishing_routes(
    key: str, dataset: str, dead_letter_id: str
) -> list[tuple[str, str, Any, dict[str, str]]]:
    """(method, path, body, headers) of a valid request to every route that publishes."""
    log = {"timeUnixNano": "1700000000000000000", "body": {"stringValue": "hello"}}
    otlp = {"resourceLogs": [{"scopeLogs": [{"logRecords": [log]}]}]}
    capture = {"api_key": key, "event": "e", "distinct_id": "d", "uuid": str(uuid.uuid4())}
    metric = {"type": "cost", "value": 1}
    hub_event = {"provider": "Snowflake", "id": str(uuid.uuid4()), "time": "2024-03-01T00:00:00Z"}
    hub = {"events": [{**hub_event, "metrics": [metric]}]}
    point = {"dataSourceId": SOURCE, "values": {"t": 1.0}}
    csv_body, csv_type = _csv_upload()
    auth = {"X-API-Key": key}
    return [
        ("POST", "/v1/events", {**EVENT, "id": "during"}, auth),
        ("POST", "/dashdive/s3/single", GET_OBJECT, auth),
        ("POST", "/dashdive/s3", GET_OBJECT, auth),
        ("POST", "/dashdive/s3/batch", [GET_OBJECT], auth),
        ("POST", "/datahub/v1/events", hub, auth),
        ("POST", "/datahub/v1/csv/upload", csv_body, {**auth, "Content-Type": csv_type}),
        (
            "POST",
            "/dynatrace/platform/ingest/v1/events",
            {"event.id": 1},
            {"Authorization": f"Api-Token {key}"},
        ),
        ("POST", f"/baselime/v1/{dataset}/ns", [{"message": "m"}], auth),
        ("POST", f"/baselime/v1/{dataset}", [{"message": "m"}], {**auth, "x-namespace": "ns"}),
        ("POST", "/dakkio/api/data", {"bucketId": BUCKET, **point}, auth),
        ("POST", "/dakkio/api/data/batch", {"bucketId": BUCKET, "dataPoints": [point]}, auth),
        ("POST", "/posthog/capture/", capture, {}),
        ("POST", "/posthog/batch/", {"api_key": key, "batch": [capture]}, {}),
        ("POST", "/posthog/e/", {**capture, "token": key}, {}),
        ("POST", "/posthog/i/v0/e/", {**capture, "token": key}, {}),
        ("POST", "/otlp/v1/logs", otlp, auth),
        ("DELETE", "/v1/events/before", None, auth),
        ("DELETE", "/v1/events?all=true", None, auth),
        ("DELETE", "/datahub/v1/events/delete", {"eventIds": ["x"]}, auth),
        ("DELETE", "/datahub/v1/events", None, auth),
        ("POST", f"/v1/dead-letters/{dead_letter_id}/replay", None, auth),
    ]


def test_every_publishing_route_answers_503_while_kafka_is_stopped(
    tmp_path: Path, database_url: str, new_key: Callable[..., str]
) -> None:
    tenant = f"outage-{uuid.uuid4().hex[:8]}"
    catalog = Settings(database_url=database_url)
    dataset = f"ds-{tenant}"
    create_dataset(catalog, tenant, dataset)
    create_bucket(catalog, tenant, "sensors", BUCKET)
    create_data_source(catalog, tenant, BUCKET, "room", SOURCE)
    with KafkaLauncher(tmp_path / "kafka") as kafka:
        settings = make_settings(kafka.bootstrap_servers, database_url, produce_timeout_ms=1000)
        ensure_topics(settings)
        stack = ProcessStack(settings, tmp_path / "logs")
        stack.start(("api", "worker", "sink"))
        try:
            stack.wait_ready(timeout=90)
            key = new_key(tenant)
            auth = {"X-API-Key": key}
            url = f"{stack.base_url}/v1/events"
            first = call("POST", url, json_body={**EVENT, "id": "before"}, headers=auth)
            assert first.status == 202
            bad = call("POST", url, json_body={"id": "rejected", "data": {}}, headers=auth)
            assert bad.status == 400, bad.body
            dead = bad.json()["rejected"][0]["dead_letter_id"]
            shown = f"{stack.base_url}/v1/dead-letters/{dead}"
            eventually(lambda: call("GET", shown, headers=auth).status == 200, timeout=90)

            kafka.stop()
            for method, path, body, headers in publishing_routes(key, dataset, dead):
                raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
                sent = {"Content-Type": "application/json", **headers}
                answer = call(method, f"{stack.base_url}{path}", body=raw, headers=sent)
                assert answer.status == 503, (method, path, answer.status, answer.body)
                assert int(answer.headers["Retry-After"]) > 0, (method, path)
            ready = call("GET", f"{stack.base_url}/readyz")
            assert ready.status == 503 and ready.json()["kafka"] == "unreachable"
            pending = call("GET", shown, headers=auth).json()
            assert pending["status"] == "pending", pending  # the failed replay released it
        finally:
            stack.stop()
