"""dakkio's data-source routes on the real pipeline: a data source's `schema` is the latest
version of the registry subject `dakkio.<dataSourceId>`, points are held to it, updates
follow the registry's compatibility rules, and reads show the subject's latest version.

Extends tests/integration/test_dakkio.py (the data API), with the seed's sensor fields."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from runtime.settings import Settings
from schemas.families.dakkio_schema import contract_of, parse_fields
from sluice.catalog_cli import create_bucket, create_data_source
from sluice.stack import ProcessStack
from tests.httpclient import Answer, call
from tests.integration.test_dakkio import VALUES

pytestmark = pytest.mark.integration

BUCKET = "507f1f77bcf86cd799439011"
SCHEMA = {
    "temperature": {"type": "number", "unit": "celsius", "description": "Temperature reading",
                    "min": -40, "max": 85},
    "humidity": {"type": "number", "unit": "percent", "description": "Relative humidity",
                 "required": True},
    "pressure": {"type": "number", "unit": "hPa"},
}  # fmt: skip
SCOPES = ["events:write", "events:read", "schemas:read", "schemas:write"]


class Dakkio:
    def __init__(self, stack: ProcessStack, tenant: str, key: str) -> None:
        self.stack, self.tenant, self.key = stack, tenant, key

    def __call__(self, method: str, path: str, body: Any = None, key: str | None = None) -> Answer:
        raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        headers = {"X-API-Key": key or self.key, "Content-Type": "application/json"}
        return call(method, f"{self.stack.base_url}/dakkio{path}", body=raw, headers=headers)

    def registry(self, path: str) -> Answer:
        return call("GET", f"{self.stack.base_url}/schema-registry{path}",
                    headers={"X-API-Key": self.key})  # fmt: skip

    def create(self, schema: Any = SCHEMA, **extra: Any) -> dict[str, Any]:
        body = {"name": "Temperature Sensor", "schema": schema, **extra}
        answer = self("POST", f"/api/buckets/{BUCKET}/sources", body)
        assert answer.status == 201, answer.body
        created: dict[str, Any] = answer.json()["dataSource"]
        return created

    def point(self, source: str, values: dict[str, Any]) -> Answer:
        body = {"bucketId": BUCKET, "dataSourceId": source, "values": values,
                "timestamp": "2024-01-15T10:30:00Z"}  # fmt: skip
        return self("POST", "/api/data", body)


@pytest.fixture
def dakkio(stack: ProcessStack, database_url: str, new_key: Callable[..., str]) -> Dakkio:
    tenant = f"dks-{uuid.uuid4().hex[:10]}"
    create_bucket(Settings(database_url=database_url), tenant, "Home Sensors", BUCKET)
    return Dakkio(stack, tenant, new_key(tenant, SCOPES))


def _contract(schema: dict[str, Any]) -> dict[str, Any]:
    fields, problems = parse_fields(schema)
    assert not problems
    document: dict[str, Any] = json.loads(contract_of(fields))
    return document


def test_create_registers_the_schema_as_the_data_sources_contract(dakkio: Dakkio) -> None:
    created = dakkio.create(type="sensor", description="DHT22", downsampling=False)
    source = created["_id"]
    assert len(source) == 24 and created["bucketId"] == BUCKET
    assert {k: created[k] for k in ("name", "type", "description", "downsampling", "status")} == {
        "name": "Temperature Sensor", "type": "sensor", "description": "DHT22",
        "downsampling": False, "status": "active",
    }  # fmt: skip
    assert created["schema"] == SCHEMA
    assert created["createdAt"].endswith("Z") and created["updatedAt"].endswith("Z")

    stored = dakkio.registry(f"/subjects/dakkio.{source}/versions/latest").json()
    assert stored["version"] == 1 and stored["schemaType"] == "JSON"
    assert json.loads(stored["schema"]) == created["jsonSchema"] == _contract(SCHEMA)
    assert (created["schemaSubject"], created["schemaVersion"], created["schemaId"]) == \
        (f"dakkio.{source}", 1, stored["id"])  # fmt: skip
    values = created["jsonSchema"]["properties"]["values"]
    assert values["additionalProperties"] is False and values["required"] == ["humidity"]
    assert values["properties"]["temperature"] == {
        "type": "number", "x-unit": "celsius", "description": "Temperature reading",
        "minimum": -40, "maximum": 85,
    }  # fmt: skip

    shown = dakkio("GET", f"/api/buckets/{BUCKET}/sources/{source}")
    assert shown.status == 200 and shown.json() == {"dataSource": created}
    other = dakkio.create({"pressure": {"type": "number", "unit": "hPa"}}, name="Pressure")
    listed = dakkio("GET", f"/api/buckets/{BUCKET}/sources").json()["dataSources"]
    assert [s["_id"] for s in listed] == [source, other["_id"]]
    assert listed[0] == created and listed[1]["schema"] == {
        "pressure": {"type": "number", "unit": "hPa"}
    }


def test_points_are_held_to_the_data_sources_schema(dakkio: Dakkio) -> None:
    source = dakkio.create()["_id"]
    good = dakkio.point(source, VALUES)
    assert good.status == 201, good.body

    wrong = dakkio.point(source, {**VALUES, "temperature": "hot"}).json()  # at once: one API
    assert wrong["error"] == "Validation Error"
    assert [d["path"] for d in wrong["details"]] == [["body", "values", "temperature"]]
    assert f"dakkio.{source} version 1" in wrong["details"][0]["message"]

    for values, path in (({**VALUES, "temperature": 99}, ["body", "values", "temperature"]),
                         ({**VALUES, "wind": 3}, ["body", "values"]),
                         ({"temperature": 20.0}, ["body", "values"])):  # fmt: skip
        answer = dakkio.point(source, values)
        assert answer.status == 400, (values, answer.body)
        assert [d["path"] for d in answer.json()["details"]] == [path], answer.body

    batch = {"bucketId": BUCKET, "dataPoints": [
        {"dataSourceId": source, "values": VALUES},
        {"dataSourceId": source, "values": {**VALUES, "humidity": "wet"}},
    ]}  # fmt: skip
    answer = dakkio("POST", "/api/data/batch", batch)
    assert answer.status == 400, answer.body
    assert [d["path"] for d in answer.json()["details"]] == \
        [["body", "dataPoints", 1, "values", "humidity"]]  # fmt: skip


def test_updates_follow_the_registrys_compatibility_rules(dakkio: Dakkio) -> None:
    created = dakkio.create()
    source, path = created["_id"], f"/api/buckets/{BUCKET}/sources/{created['_id']}"
    wider = {**SCHEMA, "battery": {"type": "number", "unit": "percent"}}
    added = dakkio("PUT", path, {"schema": wider, "description": "with battery"})
    assert added.status == 200, added.body
    shown = added.json()["dataSource"]
    assert added.json()["message"] == "Data source updated successfully"
    assert (shown["schema"], shown["schemaVersion"], shown["description"]) == \
        (wider, 2, "with battery")  # fmt: skip
    assert dakkio.registry(f"/subjects/dakkio.{source}/versions").json() == [1, 2]

    same = dakkio("PATCH", path, {"schema": wider, "name": "Renamed"})
    assert same.status == 200 and same.json()["dataSource"]["schemaVersion"] == 2
    assert same.json()["dataSource"]["name"] == "Renamed"

    narrowed = {
        **wider,
        "temperature": {"type": "string"},
        "pressure": {"type": "number", "required": True},
    }
    refused = dakkio("PUT", path, {"schema": narrowed, "name": "Not applied"})
    assert refused.status == 409, refused.body
    conflict = refused.json()
    assert conflict["error"] == "Conflict" and conflict["details"]
    paths = {tuple(d["path"]) for d in conflict["details"]}
    assert ("body", "schema", "temperature") in paths
    assert any("pressure" in d["message"] and "required" in d["message"]
               for d in conflict["details"]), conflict  # fmt: skip
    dropped = {k: v for k, v in wider.items() if k != "pressure"}
    assert dakkio("PUT", path, {"schema": dropped}).status == 409  # a field removed

    after = dakkio("GET", path).json()["dataSource"]
    assert (after["schemaVersion"], after["schema"], after["name"]) == (2, wider, "Renamed")
    assert dakkio.registry(f"/subjects/dakkio.{source}/versions").json() == [1, 2]
    assert dakkio.point(source, {**VALUES, "battery": 80}).status == 201


def test_reading_shows_the_subjects_latest_whoever_registered_it(dakkio: Dakkio) -> None:
    source = dakkio.create()["_id"]
    newer = _contract({**SCHEMA, "co2": {"type": "number", "unit": "ppm"}})
    newer["properties"]["values"]["properties"]["label"] = {"type": ["string", "null"]}
    registered = call(
        "POST", f"{dakkio.stack.base_url}/schema-registry/subjects/dakkio.{source}/versions",
        json_body={"schema": json.dumps(newer), "schemaType": "JSON"},
        headers={"X-API-Key": dakkio.key},
    )  # fmt: skip
    assert registered.status == 200, registered.body
    shown = dakkio("GET", f"/api/buckets/{BUCKET}/sources/{source}").json()["dataSource"]
    assert shown["schemaVersion"] == registered.json()["version"] == 2
    assert shown["jsonSchema"] == newer
    assert shown["schema"] == {**SCHEMA, "co2": {"type": "number", "unit": "ppm"},
                               "label": {"type": "any"}}  # fmt: skip


def test_a_data_source_made_by_the_cli_gets_its_first_schema(
    dakkio: Dakkio, database_url: str
) -> None:
    settings = Settings(database_url=database_url)
    source = create_data_source(settings, dakkio.tenant, BUCKET, "Old")
    path = f"/api/buckets/{BUCKET}/sources/{source}"
    before = dakkio("GET", path).json()["dataSource"]
    assert (before["name"], before["schema"], before["schemaVersion"], before["jsonSchema"]) == \
        ("Old", {}, None, None)  # fmt: skip
    assert dakkio.point(source, {"anything": "goes"}).status == 201
    updated = dakkio("PUT", path, {"schema": SCHEMA}).json()["dataSource"]
    assert (updated["schema"], updated["schemaVersion"], updated["name"]) == (SCHEMA, 1, "Old")
    assert dakkio.point(source, {"anything": "goes"}).status == 400


def test_bad_requests_get_dakkios_errors(dakkio: Dakkio, new_key: Callable[..., str]) -> None:
    sources = f"/api/buckets/{BUCKET}/sources"

    def details(answer: Answer) -> list[list[Any]]:
        assert answer.status == 400 and answer.json()["error"] == "Validation Error", answer.body
        return [d["path"] for d in answer.json()["details"]]

    assert details(dakkio("POST", sources, {})) == [["body", "name"], ["body", "schema"]]
    assert details(dakkio("POST", sources, {"name": "x", "schema": {}})) == [["body", "schema"]]
    bad_fields = {"t": {"type": "float"}, "u": {"type": "string", "min": 1},
                  "v": {"type": "number", "colour": "red"}, "w": "number"}  # fmt: skip
    assert details(dakkio("POST", sources, {"name": "x", "schema": bad_fields})) == [
        ["body", "schema", "t", "type"], ["body", "schema", "u", "min"],
        ["body", "schema", "v"], ["body", "schema", "w"],
    ]  # fmt: skip
    assert details(dakkio("POST", sources, {"name": 3, "schema": SCHEMA,
                                            "downsampling": "yes"})) == \
        [["body", "name"], ["body", "downsampling"]]  # fmt: skip
    assert details(dakkio("POST", sources, b"[1]")) == [["body"]]
    assert details(dakkio("POST", sources, b"{not json")) == [["body"]]
    assert details(dakkio("GET", "/api/buckets/not-an-id/sources")) == [["params", "bucketId"]]

    source = dakkio.create()["_id"]
    assert details(dakkio("PUT", f"{sources}/{source}", {"status": "x"})) == [["body"]]

    missing = "0" * 23 + "1"
    for method, path in (("GET", f"/api/buckets/{missing}/sources"),
                         ("POST", f"/api/buckets/{missing}/sources"),
                         ("GET", f"/api/buckets/{missing}/sources/{source}")):  # fmt: skip
        answer = dakkio(method, path, {"name": "x", "schema": SCHEMA})
        assert (answer.status, answer.json()) == \
            (404, {"error": "Not Found", "message": "Bucket not found"})  # fmt: skip
    for method in ("GET", "PUT"):
        answer = dakkio(method, f"{sources}/{missing}", {"name": "y"})
        assert (answer.status, answer.json()["message"]) == (404, "Data source not found")

    reader = new_key(f"dks-r-{uuid.uuid4().hex[:8]}", ["events:write", "events:read"])
    forbidden = dakkio("POST", sources, {"name": "x", "schema": SCHEMA}, key=reader)
    assert forbidden.status == 403 and forbidden.json()["error"] == "Forbidden"
    assert dakkio("GET", sources, key="nope").status == 401
