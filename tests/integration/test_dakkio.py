"""dakkio's data API on the real pipeline: the seed's curl, Node, Python, Go and Arduino
requests, the batch route, the query route, and every answer the seed lists."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from producer_api.errors import error_middleware_for
from producer_api.families.dakkio_answers import dakkio_error, internal_errors
from producer_api.ratelimit import RateLimited
from runtime.settings import Settings
from sluice.catalog_cli import create_bucket, create_data_source
from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

BUCKET, SOURCE = "507f1f77bcf86cd799439011", "507f1f77bcf86cd799439012"
VALUES = {"temperature": 22.5, "humidity": 65, "pressure": 1013.25}
METADATA = {"deviceId": "ESP32-001", "location": "Living Room", "batteryLevel": 85}


@pytest.fixture
def key(database_url: str, new_key: Callable[..., str]) -> str:
    """A key of a fresh tenant that owns the seed's bucket and data source."""
    tenant = f"dk-{uuid.uuid4().hex[:10]}"
    settings = Settings(database_url=database_url)
    create_bucket(settings, tenant, "Home Sensors", BUCKET)
    create_data_source(settings, tenant, BUCKET, "Living room", SOURCE)
    return new_key(tenant)


def _post(stack: ProcessStack, key: str | None, path: str, payload: Any) -> Answer:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-Key"] = key
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return call("POST", f"{stack.base_url}/dakkio{path}", body=body, headers=headers)


def _query(stack: ProcessStack, key: str, query: str) -> Answer:
    return call("GET", f"{stack.base_url}/dakkio/api/data?{query}", headers={"X-API-Key": key})


def _point(timestamp: str | None, metadata: dict[str, Any] | None = METADATA) -> dict[str, Any]:
    point: dict[str, Any] = {"bucketId": BUCKET, "dataSourceId": SOURCE, "values": VALUES}
    if timestamp is not None:
        point["timestamp"] = timestamp
    if metadata is not None:
        point["metadata"] = metadata
    return point


def test_the_seed_curl_request_answers_the_stored_point_and_is_queryable(
    stack: ProcessStack, key: str
) -> None:
    answer = _post(stack, key, "/api/data", _point("2024-01-15T10:30:00Z"))
    assert answer.status == 201, answer.body
    reply = answer.json()
    assert reply["message"] == "Data point ingested successfully"
    stored = reply["dataPoint"]
    assert {k: stored[k] for k in ("bucketId", "dataSourceId", "timestamp", "values", "metadata")} \
        == {**_point("2024-01-15T10:30:00Z")}  # fmt: skip
    assert stored["createdAt"].endswith("Z") and stored["_id"]

    query = f"bucketId={BUCKET}&dataSourceId={SOURCE}&startTime=2024-01-15T00:00:00Z"
    found = eventually(lambda: (a := _query(stack, key, query)).json()["data"] and a.json())
    assert found["data"] == [stored]
    assert found["pagination"] == {"limit": 100, "offset": 0, "total": 1, "hasMore": False}


def test_the_node_python_go_and_arduino_snippets_are_accepted(
    stack: ProcessStack, key: str
) -> None:
    now = datetime.now(UTC)
    node = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # toISOString()
    python = now.replace(tzinfo=None).isoformat() + "Z"  # utcnow().isoformat() + 'Z'
    go = now.strftime("%Y-%m-%dT%H:%M:%SZ")  # time.RFC3339
    arduino = {k: v for k, v in METADATA.items() if k != "batteryLevel"}
    for point in (_point(node), _point(python), _point(go), _point("2024-01-15T10:30:00Z",
                                                                   arduino)):  # fmt: skip
        answer = _post(stack, key, "/api/data", point)
        assert answer.status == 201, answer.body
    found = eventually(
        lambda: (
            (a := _query(stack, key, f"bucketId={BUCKET}").json())["pagination"]["total"] == 4 and a
        )
    )
    assert found["data"][0]["timestamp"] == "2024-01-15T10:30:00Z"


def test_a_batch_is_stored_whole_and_a_missing_timestamp_is_the_receive_time(
    stack: ProcessStack, key: str
) -> None:
    points = [{k: v for k, v in _point(t).items() if k != "bucketId"}
              for t in ("2024-03-01T00:00:00Z", "2024-03-02T00:00:00+01:00", None)]  # fmt: skip
    before = datetime.now(UTC).replace(microsecond=0)
    answer = _post(stack, key, "/api/data/batch", {"bucketId": BUCKET, "dataPoints": points})
    assert answer.status == 201, answer.body
    reply = answer.json()
    assert reply["count"] == 3
    stored = reply["dataPoints"]
    assert [p["timestamp"] for p in stored[:2]] == ["2024-03-01T00:00:00Z", "2024-03-01T23:00:00Z"]
    assert stored[2]["timestamp"] == stored[2]["createdAt"]
    assert datetime.fromisoformat(stored[2]["createdAt"]) >= before

    march = "startTime=2024-03-01T00:00:00Z&endTime=2024-03-31T00:00:00Z"
    found = eventually(lambda: len(d := _query(stack, key, f"bucketId={BUCKET}&{march}")
                                   .json()["data"]) == 2 and d)  # fmt: skip
    assert found == stored[:2]


def test_every_error_answer_of_the_seed(stack: ProcessStack, key: str) -> None:
    no_bucket = {k: v for k, v in _point("2024-01-15T10:30:00Z").items() if k != "bucketId"}
    invalid = _post(stack, key, "/api/data", no_bucket)
    assert (invalid.status, invalid.json()) == (400, {
        "error": "Validation Error", "message": "Invalid request parameters",
        "details": [
            {"path": ["body", "bucketId"], "message": "Expected string, received undefined"},
        ],
    })  # fmt: skip
    for sent_key in (None, "dakkio_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6"):
        unauthorized = _post(stack, sent_key, "/api/data", _point(None))
        assert (unauthorized.status, unauthorized.json()) == (
            401, {"error": "Unauthorized", "message": "Invalid or missing API key"},
        )  # fmt: skip
    unknown = {**_point(None), "bucketId": "0123456789abcdef01234567"}
    missing = _post(stack, key, "/api/data", unknown)
    assert (missing.status, missing.json()) == (
        404, {"error": "Not Found", "message": "Bucket not found"},
    )  # fmt: skip
    other_source = {**_point(None), "dataSourceId": "0123456789abcdef01234567"}
    assert _post(stack, key, "/api/data", other_source).json()["message"] == "Data source not found"


def test_a_batch_with_one_invalid_point_stores_nothing(stack: ProcessStack, key: str) -> None:
    good = {"dataSourceId": SOURCE, "timestamp": "2024-05-01T00:00:00Z", "values": {"t": 1}}
    bad = {"dataSourceId": SOURCE, "timestamp": "15/01/2024", "values": {"t": 2}}
    answer = _post(stack, key, "/api/data/batch", {"bucketId": BUCKET, "dataPoints": [good, bad]})
    assert answer.status == 400
    assert answer.json()["details"] == [
        {"path": ["body", "dataPoints", 1, "timestamp"], "message": "Invalid datetime"}
    ]
    marker = _post(stack, key, "/api/data", {**_point("2024-05-02T00:00:00Z"), "bucketId": BUCKET})
    assert marker.status == 201
    may = f"bucketId={BUCKET}&startTime=2024-05-01T00:00:00Z&endTime=2024-05-31T00:00:00Z"
    found = eventually(lambda: (d := _query(stack, key, may).json()["data"]) and d)
    assert [p["timestamp"] for p in found] == ["2024-05-02T00:00:00Z"]


def test_the_query_is_validated_and_scoped_to_the_tenant(
    stack: ProcessStack, key: str, new_key: Callable[..., str]
) -> None:
    bad = _query(stack, key, "bucketId=nope&limit=0")
    assert bad.status == 400
    assert [d["path"] for d in bad.json()["details"]] == [["query", "bucketId"], ["query", "limit"]]
    stranger = new_key(f"dk-{uuid.uuid4().hex[:10]}")
    assert _query(stack, stranger, f"bucketId={BUCKET}").json() == {
        "error": "Not Found", "message": "Bucket not found",
    }  # fmt: skip


async def test_a_rate_limited_key_gets_dakkio_429() -> None:
    async def limited(_request: web.Request) -> web.StreamResponse:
        raise RateLimited("requests", 7)

    async def inner(request: web.Request) -> web.StreamResponse:
        return await error_middleware_for(dakkio_error)(request, limited)

    response = await internal_errors(make_mocked_request("POST", "/dakkio/api/data"), inner)
    assert isinstance(response, web.Response)
    assert (response.status, response.headers["Retry-After"]) == (429, "7")
    assert response.body is not None
    assert json.loads(bytes(response.body))["error"] == "Too Many Requests"  # type: ignore[arg-type]


def test_a_batch_for_a_missing_bucket_is_kept_and_replayable_once_it_exists(
    stack: ProcessStack, database_url: str, new_key: Callable[..., str]
) -> None:
    tenant = f"dk-{uuid.uuid4().hex[:10]}"
    key = new_key(tenant)
    points = [{"dataSourceId": SOURCE, "values": {"t": i}} for i in range(2)]
    answer = _post(stack, key, "/api/data/batch", {"bucketId": BUCKET, "dataPoints": points})
    assert (answer.status, answer.json()["message"]) == (404, "Bucket not found")

    def dead_letter() -> str | None:
        listed = call("GET", f"{stack.base_url}/v1/dead-letters?family=dakkio",
                      headers={"X-API-Key": key}).json()["dead_letters"]  # fmt: skip
        return listed[0]["dead_letter_id"] if listed else None

    dead_letter_id = eventually(dead_letter)
    settings = Settings(database_url=database_url)
    create_bucket(settings, tenant, "Late bucket", BUCKET)
    create_data_source(settings, tenant, BUCKET, "Late source", SOURCE)
    replay = call("POST", f"{stack.base_url}/v1/dead-letters/{dead_letter_id}/replay",
                  headers={"X-API-Key": key})  # fmt: skip
    assert replay.status == 202, replay.body
    found = eventually(lambda: len(d := _query(stack, key, f"bucketId={BUCKET}").json()["data"])
                       == 2 and d)  # fmt: skip
    assert sorted(p["values"]["t"] for p in found) == [0, 1]
    assert all(OBJECT_ID.match(p["_id"]) for p in found)  # a replayed point's id too
    # no timestamp: the request's receive time, kept through the replay (stored later)
    assert found[0]["timestamp"] < found[0]["createdAt"]


OBJECT_ID = re.compile(r"^[0-9a-f]{24}\Z")


def test_every_id_is_an_object_id_stable_across_reads_and_finds_the_point(
    stack: ProcessStack, key: str
) -> None:
    single = _post(stack, key, "/api/data", _point("2024-07-01T00:00:00Z"))
    points = [{k: v for k, v in _point(f"2024-07-0{d}T00:00:00Z").items() if k != "bucketId"}
              for d in (2, 3)]  # fmt: skip
    batch = _post(stack, key, "/api/data/batch", {"bucketId": BUCKET, "dataPoints": points})
    assert (single.status, batch.status) == (201, 201)
    answered = [single.json()["dataPoint"]["_id"]] + [p["_id"] for p in batch.json()["dataPoints"]]
    assert all(OBJECT_ID.match(i) for i in answered) and len(set(answered)) == 3
    july = f"bucketId={BUCKET}&startTime=2024-07-01T00:00:00Z&endTime=2024-07-31T00:00:00Z"
    found = eventually(lambda: len(d := _query(stack, key, july).json()["data"]) == 3 and d)
    assert [p["_id"] for p in found] == answered
    assert [p["_id"] for p in _query(stack, key, july).json()["data"]] == answered
    for object_id, point in zip(answered, found, strict=True):
        event = call("GET", f"{stack.base_url}/v1/events/{object_id}?family=dakkio",
                     headers={"X-API-Key": key})  # fmt: skip
        assert event.status == 200 and event.json()["data"]["values"] == point["values"]
        history = call("GET", f"{stack.base_url}/v1/events/{object_id}/history?family=dakkio",
                       headers={"X-API-Key": key})  # fmt: skip
        assert history.status == 200 and history.json()["event_id"] == object_id


def test_a_retry_with_the_same_idempotency_key_names_the_same_object_id(
    stack: ProcessStack, key: str
) -> None:
    retry = {"Content-Type": "application/json", "X-API-Key": key,
             "Idempotency-Key": f"dk-{uuid.uuid4()}"}  # fmt: skip
    body = json.dumps(_point("2024-08-01T00:00:00Z")).encode()
    url = f"{stack.base_url}/dakkio/api/data"
    first = call("POST", url, body=body, headers=retry).json()["dataPoint"]["_id"]
    again = call("POST", url, body=body, headers=retry).json()["dataPoint"]["_id"]
    assert OBJECT_ID.match(first) and first == again
    august = f"bucketId={BUCKET}&startTime=2024-08-01T00:00:00Z&endTime=2024-08-31T00:00:00Z"
    found = eventually(lambda: (d := _query(stack, key, august).json()["data"]) and d)
    assert [p["_id"] for p in found] == [first]
