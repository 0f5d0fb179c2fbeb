"""Sluice's Schema Registry, driven by confluent-kafka's own `SchemaRegistryClient`.

Given only `<api>/schema-registry` and a key, Confluent's `AvroDeserializer` decodes real
messages of each of Sluice's topics, and the client's register / look-up / latest /
compatibility / config calls work. Tenants' subjects are sealed from each other; bad
input gets the registry's 4xx.
"""

from __future__ import annotations

import io
import json
import struct
import uuid
from collections.abc import Callable
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas.codec import schema_text
from sluice.stack import ProcessStack
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

READ, WRITE = ["schemas:read"], ["schemas:read", "schemas:write"]


def client(stack: ProcessStack, key: str, bearer: bool = False) -> SchemaRegistryClient:
    url = f"{stack.base_url}/schema-registry"
    if bearer:
        return SchemaRegistryClient({
            "url": url, "bearer.auth.credentials.source": "STATIC_TOKEN",
            "bearer.auth.token": key, "bearer.auth.logical.cluster": "sluice",
            "bearer.auth.identity.pool.id": "sluice",
        })  # fmt: skip
    return SchemaRegistryClient({"url": url, "basic.auth.user.info": f"anyone:{key}"})


def rest(stack: ProcessStack, key: str, method: str, path: str, body: Any = None) -> Answer:
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": CT}
    return call(method, f"{stack.base_url}/schema-registry{path}", body=raw, headers=headers)


CT = "application/vnd.schemaregistry.v1+json"


def avro(*fields: tuple[Any, ...], name: str = "Reading") -> Schema:
    """A record schema of (name, type) or (name, type, default) fields."""
    listed = [{"name": fl[0], "type": fl[1], **({"default": fl[2]} if len(fl) > 2 else {})}
              for fl in fields]  # fmt: skip
    body = {"type": "record", "name": name, "fields": listed}
    return Schema(json.dumps(body), "AVRO")


def consume_all(stack: ProcessStack, topic: str, until: Callable[[list[Any]], bool]) -> list[Any]:
    consumer = Consumer({
        "bootstrap.servers": stack.settings.kafka_bootstrap_servers,
        "group.id": f"registry-probe-{uuid.uuid4()}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })  # fmt: skip
    consumer.subscribe([topic])
    seen: list[Any] = []
    try:
        for _ in range(60):
            seen += [m for m in consumer.consume(500, timeout=1.0) if m.error() is None]
            if until(seen):
                break
        return seen
    finally:
        consumer.close()


def test_confluent_deserializer_decodes_every_topic(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    tenant = f"sr-{uuid.uuid4().hex[:8]}"
    producer_key, reader_key = new_key(tenant), new_key(f"other-{tenant}", READ)
    good_id = f"good-{uuid.uuid4().hex[:8]}"
    event = {"id": good_id, "type": "usage.api_call", "source": "/sr",
             "time": "2024-11-23T10:00:00Z", "data": {"units": 3}}  # fmt: skip
    headers = {"X-API-Key": producer_key}
    assert (
        call("POST", f"{stack.base_url}/v1/events", json_body=event, headers=headers).status == 202
    )
    bad = call("POST", f"{stack.base_url}/v1/events", json_body={"id": "x", "data": {}},
               headers=headers)  # fmt: skip
    assert bad.status == 400
    gone = call("DELETE", f"{stack.base_url}/v1/events?type=usage.gone", headers=headers)
    assert gone.status == 202, gone.body
    deserialize = AvroDeserializer(client(stack, reader_key))
    prefix = stack.settings.topic_prefix

    def decoded(topic: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def done(messages: list[Any]) -> bool:
            for m in messages[len(found_msgs) :]:
                found_msgs.append(m)
                if m.value() is None:
                    continue
                record = deserialize(m.value(), SerializationContext(topic, MessageField.VALUE))
                if wanted(record):
                    found.append(record)
            return bool(found)

        found_msgs: list[Any] = []
        consume_all(stack, topic, done)
        assert found, f"nothing of {tenant} decoded on {topic}"
        return found[0]

    raw = decoded(f"{prefix}ingest.raw",
                  lambda r: any(item["event_id"] == good_id for item in r["items"]))  # fmt: skip
    assert raw["tenant"] == tenant and any(b'"units"' in item["raw"] for item in raw["items"])
    canonical = decoded(f"{prefix}events", lambda r: r.get("event_id") == good_id)
    assert canonical["tenant"] == tenant and canonical["type"] == "usage.api_call"
    deletion = decoded(f"{prefix}events", lambda r: r["tenant"] == tenant and "filter" in r)
    assert deletion["filter"]["types"] == ["usage.gone"]
    dead = decoded(f"{prefix}events.dlq", lambda r: r["tenant"] == tenant)
    assert dead["reasons"] and b'"x"' in dead["raw"]

    # A message written with the first envelope schema (id 1, before `delete_filter`) resolves
    old = {k: v for k, v in raw.items() if k != "delete_filter"}
    body = io.BytesIO()
    body.write(struct.pack(">bI", 0, 1))
    fastavro.schemaless_writer(body, fastavro.parse_schema(json.loads(schema_text(1))), old)
    again = deserialize(body.getvalue(), SerializationContext("x", MessageField.VALUE))
    assert again["request_id"] == raw["request_id"] and "delete_filter" not in again


def test_sluice_subjects_are_registered_with_their_ids(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    sr = client(stack, new_key(f"sr-{uuid.uuid4().hex[:8]}", READ))
    prefix = stack.settings.topic_prefix
    subjects = sr.get_subjects()
    for subject in ("ingest.raw-value", "events-value", "events.dlq-value",
                    "events-sluice.FilterDeletion"):  # fmt: skip
        assert f"{prefix}{subject}" in subjects
    envelope = sr.get_versions(f"{prefix}ingest.raw-value")
    assert envelope == [1, 2]
    assert sr.get_version(f"{prefix}ingest.raw-value", 1).schema_id == 1
    assert sr.get_latest_version(f"{prefix}ingest.raw-value").schema_id == 4
    assert sr.get_versions(f"{prefix}events-value") == [1, 2, 3]
    assert sr.get_version(f"{prefix}events-value", 1).schema_id == 2
    assert sr.get_version(f"{prefix}events-value", 2).schema_id == 6
    assert sr.get_latest_version(f"{prefix}events-value").schema_id == 7
    assert sr.get_latest_version(f"{prefix}events.dlq-value").schema_id == 3
    assert sr.get_latest_version(f"{prefix}events-sluice.FilterDeletion").schema_id == 5
    assert json.loads(sr.get_schema(2).schema_str)["name"] == "CanonicalEvent"


@pytest.mark.parametrize("bearer", [False, True], ids=["basic", "bearer"])
def test_client_register_lookup_latest_compatibility_config(
    stack: ProcessStack, new_key: Callable[..., str], bearer: bool
) -> None:
    sr = client(stack, new_key(f"sr-{uuid.uuid4().hex[:8]}", WRITE), bearer)
    subject = "readings-value"
    v1 = avro(("sensor", "string"))
    first = sr.register_schema(subject, v1)
    assert first >= 1000  # above Sluice's reserved ids
    assert (
        client(stack, new_key(f"sr-{uuid.uuid4().hex[:8]}", WRITE)).register_schema("elsewhere", v1)
        != first
    )  # another tenant's same schema has its own id
    assert sr.register_schema("also-readings", v1) == first  # same tenant, same schema

    looked = sr.lookup_schema(subject, v1)
    assert (looked.schema_id, looked.version, looked.subject) == (first, 1, subject)
    v2 = avro(("sensor", "string"), ("unit", "string", "C"))
    assert sr.test_compatibility(subject, v2) is True
    breaking = avro(("sensor", "int"))
    assert sr.test_compatibility(subject, breaking) is False
    second = sr.register_schema(subject, v2)
    assert second != first
    latest = sr.get_latest_version(subject)
    assert (latest.schema_id, latest.version) == (second, 2)
    with pytest.raises(SchemaRegistryError) as refused:
        sr.register_schema(subject, breaking)
    assert refused.value.http_status_code == 409 and refused.value.error_code == 409

    # NONE lets the breaking version in; the config reads back
    assert sr.set_config(subject, _config("NONE")) == {"compatibility": "NONE"}
    assert sr.get_config(subject).compatibility_level.value == "NONE"
    assert sr.register_schema(subject, breaking) not in (first, second)
    assert sr.set_config(config=_config("FULL")) == {"compatibility": "FULL"}
    assert sr.get_config().compatibility_level.value == "FULL"
    assert sr.get_versions(subject) == [1, 2, 3]


def _config(mode: str) -> Any:
    from confluent_kafka.schema_registry import ServerConfig
    from confluent_kafka.schema_registry.schema_registry_client import ConfigCompatibilityLevel

    return ServerConfig(compatibility=ConfigCompatibilityLevel(mode))


def test_deletes_soft_then_permanent(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    key = new_key(f"sr-{uuid.uuid4().hex[:8]}", WRITE)
    sr = client(stack, key)
    sr.register_schema("gone", avro(("a", "int")))
    sr.register_schema("gone", avro(("a", "int"), ("b", "int", 0)))
    permanent_first = rest(stack, key, "DELETE", "/subjects/gone/versions/1?permanent=true")
    assert (permanent_first.status, permanent_first.json()["error_code"]) == (404, 40407)
    assert rest(stack, key, "DELETE", "/subjects/gone/versions/1").json() == 1
    assert rest(stack, key, "GET", "/subjects/gone/versions").json() == [2]
    assert rest(stack, key, "GET", "/subjects/gone/versions?deleted=true").json() == [1, 2]
    assert rest(stack, key, "GET", "/subjects/gone/versions/1").json()["error_code"] == 40402
    assert rest(stack, key, "DELETE", "/subjects/gone?permanent=true").json()["error_code"] == 40405
    assert rest(stack, key, "DELETE", "/subjects/gone").json() == [2]
    assert rest(stack, key, "DELETE", "/subjects/gone").json()["error_code"] == 40404
    assert rest(stack, key, "GET", "/subjects/gone/versions").json()["error_code"] == 40401
    assert "gone" in rest(stack, key, "GET", "/subjects?deleted=true").json()
    assert rest(stack, key, "DELETE", "/subjects/gone?permanent=true").json() == [1, 2]
    assert "gone" not in rest(stack, key, "GET", "/subjects?deleted=true").json()
    # nothing is left of the subject: a new registration is its version 1 again
    again = sr.register_schema("gone", avro(("c", "int")))
    assert rest(stack, key, "GET", "/subjects/gone/versions/latest").json()["id"] == again
    assert rest(stack, key, "GET", "/subjects/gone/versions").json() == [1]


def test_tenants_are_sealed(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    a = new_key(f"sr-a-{uuid.uuid4().hex[:8]}", WRITE)
    b = new_key(f"sr-b-{uuid.uuid4().hex[:8]}", WRITE)
    schema_id = client(stack, a).register_schema("secret-value", avro(("s", "string")))
    for path in ("/subjects/secret-value/versions", "/subjects/secret-value/versions/1",
                 "/subjects/secret-value/versions/latest/schema"):  # fmt: skip
        answer = rest(stack, b, "GET", path)
        assert (answer.status, answer.json()["error_code"]) == (404, 40401), path
    gone = rest(stack, b, "GET", f"/schemas/ids/{schema_id}")
    assert (gone.status, gone.json()["error_code"]) == (404, 40403)
    assert "secret-value" not in rest(stack, b, "GET", "/subjects").json()
    looked = rest(stack, b, "POST", "/subjects/secret-value", {"schema": '"string"'})
    assert looked.json()["error_code"] == 40401
    deleted = rest(stack, b, "DELETE", "/subjects/secret-value")
    assert deleted.json()["error_code"] == 40401
    # B's own subject of the same name is B's alone
    assert client(stack, b).register_schema("secret-value", avro(("t", "int"))) != schema_id
    assert rest(stack, a, "GET", "/subjects/secret-value/versions").json() == [1]
    # Sluice's subjects: readable, not writable
    sluice_subject = f"{stack.settings.topic_prefix}events-value"
    assert rest(stack, b, "GET", f"/subjects/{sluice_subject}/versions").json() == [1, 2, 3]
    refused = rest(stack, b, "POST", f"/subjects/{sluice_subject}/versions", {"schema": '"int"'})
    assert (refused.status, refused.json()["error_code"]) == (403, 40301)
    refused = rest(stack, b, "DELETE", f"/subjects/{sluice_subject}")
    assert (refused.status, refused.json()["error_code"]) == (403, 40301)
    refused = rest(stack, b, "PUT", f"/config/{sluice_subject}", {"compatibility": "NONE"})
    assert (refused.status, refused.json()["error_code"]) == (403, 40301)


def test_scopes(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    reader = new_key(f"sr-{uuid.uuid4().hex[:8]}", READ)
    events_only = new_key(f"sr-{uuid.uuid4().hex[:8]}", ["events:write"])
    assert rest(stack, reader, "GET", "/subjects").status == 200
    refused = rest(stack, reader, "POST", "/subjects/s/versions", {"schema": '"int"'})
    assert (refused.status, refused.json()["error_code"]) == (403, 40301)
    assert rest(stack, events_only, "GET", "/subjects").json()["error_code"] == 40301
    anonymous = call("GET", f"{stack.base_url}/schema-registry/subjects")
    assert (anonymous.status, json.loads(anonymous.body)["error_code"]) == (401, 40101)
    assert anonymous.headers["Content-Type"].startswith(CT)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/subjects/s/versions", {"schema": "{nope"}, 422, 42201),
        ("POST", "/subjects/s/versions", {"schema": '{"type": "record", "name": "R"}'}, 422, 42201),
        ("POST", "/subjects/s/versions", {"schema": "{}", "schemaType": "PROTOBUF"}, 422, 42201),
        (
            "POST",
            "/subjects/s/versions",
            {"schema": '{"type": 7}', "schemaType": "JSON"},
            422,
            42201,
        ),
        (
            "POST",
            "/subjects/s/versions",
            {"schema": json.dumps({"enum": list(range(60_000))}), "schemaType": "JSON"},
            422,
            42201,
        ),
        ("POST", "/subjects/s/versions", b"x" * (10 * 1024 * 1024), 422, 42201),
        ("POST", "/subjects/s/versions", b"[1, 2", 400, 400),
        (
            "POST",
            "/subjects/s/versions",
            {"schema": '"int"', "references": [{"name": "x"}]},
            422,
            42201,
        ),
        ("GET", "/subjects/never-registered/versions", None, 404, 40401),
        ("GET", "/subjects/never-registered/versions/latest", None, 404, 40401),
        ("GET", "/subjects/bad-input-base/versions/7", None, 404, 40402),
        ("GET", "/subjects/bad-input-base/versions/0", None, 422, 42202),
        ("GET", "/subjects/bad-input-base/versions/abc", None, 422, 42202),
        ("GET", "/schemas/ids/999999999", None, 404, 40403),
        ("GET", "/schemas/ids/-3", None, 404, 40403),
        ("GET", "/schemas/ids/%C2%B9/schema", None, 404, 40403),  # "¹" is a digit to Python
        ("GET", "/subjects/bad-input-base/versions/%C2%B3", None, 422, 42202),
        ("POST", "/subjects/bad-input-base", {"schema": '"long"'}, 404, 40403),
        (
            "POST",
            "/compatibility/subjects/bad-input-base/versions/9",
            {"schema": '"int"'},
            404,
            40402,
        ),
        ("PUT", "/config", {"compatibility": "SIDEWAYS"}, 422, 42203),
        ("GET", "/config/bad-input-base", None, 404, 40408),
        ("POST", f"/subjects/{'s' * 300}/versions", {"schema": '"int"'}, 422, 42208),
        ("POST", "/subjects/s%00/versions", {"schema": '"int"'}, 422, 42208),
    ],
)
def test_bad_input_gets_the_registrys_4xx(
    stack: ProcessStack, new_key: Callable[..., str], method: str, path: str, body: Any,
    status: int, code: int,
) -> None:  # fmt: skip
    key = _bad_input_key(stack, new_key)
    answer = rest(stack, key, method, path, body)
    assert answer.status == status, answer.body[:300]
    assert answer.json()["error_code"] == code and answer.json()["message"]
    assert answer.headers["Content-Type"].startswith(CT)


_KEYS: dict[str, str] = {}


def _bad_input_key(stack: ProcessStack, new_key: Callable[..., str]) -> str:
    if "key" not in _KEYS:
        _KEYS["key"] = new_key(f"sr-bad-{uuid.uuid4().hex[:8]}", WRITE)
        client(stack, _KEYS["key"]).register_schema("bad-input-base", avro(("a", "int")))
    return _KEYS["key"]


def test_json_schema_type(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    key = new_key(f"sr-{uuid.uuid4().hex[:8]}", WRITE)
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                "properties": {"units": {"type": "integer"}}}  # fmt: skip
    sr = client(stack, key)
    schema_id = sr.register_schema("native.usage", Schema(json.dumps(document), "JSON"))
    served = rest(stack, key, "GET", f"/schemas/ids/{schema_id}").json()
    assert served["schemaType"] == "JSON" and json.loads(served["schema"]) == document
    assert rest(stack, key, "GET", "/schemas/types").json() == ["AVRO", "JSON"]
    stricter = {**document, "required": ["units"]}
    refused = rest(stack, key, "POST", "/subjects/native.usage/versions",
                   {"schema": json.dumps(stricter), "schemaType": "JSON"})  # fmt: skip
    assert refused.status == 409 and "became required" in refused.json()["message"]
    assert sr.get_latest_version("native.usage").schema_id == schema_id


def test_concurrent_registrations_agree(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    """One schema under many subjects at once gets one id; many schemas into one subject at
    once get one version each; nobody sees a 5xx."""
    from concurrent.futures import ThreadPoolExecutor

    key = new_key(f"sr-{uuid.uuid4().hex[:8]}", WRITE)
    same = {"schema": json.dumps({"type": "record", "name": "Same", "fields": []})}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(
            lambda i: rest(stack, key, "POST", f"/subjects/same-{i}/versions", same), range(8)
        ))  # fmt: skip
        assert [a.status for a in answers] == [200] * 8, [a.body for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1

        def version(i: int) -> Answer:
            fields = [{"name": f"f{j}", "type": "int", "default": 0} for j in range(i)]
            body = {"schema": json.dumps({"type": "record", "name": "Grows", "fields": fields})}
            return rest(stack, key, "POST", "/subjects/grows/versions", body)

        grown = list(pool.map(version, range(8)))
    assert [a.status for a in grown] == [200] * 8, [a.body for a in grown]
    assert sorted(a.json()["version"] for a in grown) == list(range(1, 9))
    assert len({a.json()["id"] for a in grown}) == 8


def test_the_database_keeps_sluice_rows_read_only(stack: ProcessStack, database_url: str) -> None:
    """As `sluice_api` in a tenant's transaction: Sluice's rows (tenant '') are readable, and
    no statement can change, remove or add one (migration 0008's policies; a schema is
    never updated at all, migration 0013)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET ROLE sluice_api")
        with conn.transaction():
            conn.execute("SELECT set_config('sluice.tenant', 'intruder', true)")
            own = conn.execute("SELECT count(*) FROM registry_versions WHERE tenant = ''")
            assert own.fetchone()[0] >= 5
            gone = conn.execute("DELETE FROM registry_versions WHERE tenant = ''")
            assert gone.rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("SELECT set_config('sluice.tenant', 'intruder', true)")
            conn.execute("UPDATE registry_schemas SET schema = '\"int\"' WHERE id = 2")  # 0013
        for tenant in ("intruder", ""):  # '' without sluice.registry_system = on
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute("SELECT set_config('sluice.tenant', %s, true)", (tenant,))
                conn.execute(
                    "INSERT INTO registry_config (tenant, subject, compatibility)"
                    " VALUES ('', 'x', 'NONE')"
                )
        assert conn.execute("SELECT schema FROM registry_schemas WHERE id = 2").fetchone() == (
            json.dumps(json.loads(schema_text(2)), separators=(",", ":")),
        )
