"""Sluice pointed at an existing schema registry (`SLUICE_SCHEMA_REGISTRY_URL`).

The "existing" registry is a second Sluice API process on its own port and its own
database, reached with HTTP basic auth like any Confluent-compatible registry: a tenant
key of that registry is the password. The stack under test (API door, stream worker,
sink) registers its topic schemas there at start-up and writes that registry's ids;
confluent-kafka's `AvroDeserializer`, given only that registry, decodes every topic.
Wrong credentials or an unreachable registry stop each process with one clear line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fastavro
import fastavro.schema
import psycopg
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from runtime.registry_client import register_topic_schemas
from runtime.settings import Settings, settings_env
from runtime.topic_admin import ensure_topics
from schemas.codec import SCHEMA_IDS, encode, schema_text
from schemas.identity import Identity, partition_for
from schemas.subjects import RESERVED_IDS
from sinks.migrate import migrate
from sluice.keys_cli import create_key
from sluice.launchers.apicurio import ApicurioLauncher, ApicurioLauncherError, resolve_apicurio
from sluice.stack import ProcessStack
from tests.conftest import TEST_SECRET, eventually, make_settings
from tests.httpclient import call

pytestmark = pytest.mark.integration

REGISTRY_SCOPES = ["schemas:read", "schemas:write"]


@dataclass(frozen=True)
class ExternalRegistry:
    stack: ProcessStack
    key: str
    """A key of the registry's tenant `sluice-topics`, with both registry scopes."""

    @property
    def url(self) -> str:
        return f"{self.stack.base_url}/schema-registry"

    def client(self, key: str | None = None) -> SchemaRegistryClient:
        return SchemaRegistryClient(
            {"url": self.url, "basic.auth.user.info": f"reader:{key or self.key}"}
        )


def _own_database(database_url: str) -> str:
    """A new database on the same server: the other registry shares nothing with Sluice's."""
    name = f"extreg_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
def external(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExternalRegistry]:
    ext_database = _own_database(database_url)
    migrate(ext_database)
    settings = make_settings(kafka_bootstrap, ext_database)
    stack = ProcessStack(settings, tmp_path_factory.mktemp("external-registry-logs"))
    stack.start(("api",))
    try:
        stack.wait_ready(timeout=120)
        key = create_key(
            Settings(database_url=ext_database, key_secret=TEST_SECRET), "sluice-topics",
            REGISTRY_SCOPES,
        )  # fmt: skip
        yield ExternalRegistry(stack, key)
    finally:
        stack.stop()


def _pointed_settings(kafka: str, database: str, external: ExternalRegistry) -> Settings:
    return make_settings(
        kafka, database, schema_registry_url=external.url,
        schema_registry_basic_auth_user_info=f"sluice:{external.key}",
    )  # fmt: skip


@pytest.fixture(scope="module")
def pointed(
    kafka_bootstrap: str, database_url: str, external: ExternalRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProcessStack]:  # fmt: skip
    """api + worker + sink writing the external registry's ids."""
    settings = _pointed_settings(kafka_bootstrap, database_url, external)
    ensure_topics(settings)
    stack = ProcessStack(settings, tmp_path_factory.mktemp("pointed-stack-logs"))
    stack.start()
    try:
        stack.wait_ready(timeout=120)
        yield stack
    finally:
        stack.stop()


def _consume(settings: Settings, topic: str, until: Callable[[list[Any]], bool]) -> list[Any]:
    consumer = Consumer({
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": f"extreg-probe-{uuid.uuid4()}", "auto.offset.reset": "earliest",
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


def _decoded(
    settings: Settings, deserialize: AvroDeserializer, topic: str,
    wanted: Callable[[dict[str, Any]], bool],
) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """The schema id and record of the first message on `topic` that `wanted` picks."""
    found: list[tuple[int, dict[str, Any]]] = []
    read = 0

    def done(messages: list[Any]) -> bool:
        nonlocal read
        for message in messages[read:]:
            value = message.value()
            if value is not None:
                record = deserialize(value, SerializationContext(topic, MessageField.VALUE))
                if wanted(record):
                    found.append((int.from_bytes(value[1:5], "big"), record))
        read = len(messages)
        return bool(found)

    _consume(settings, topic, done)
    assert found, f"nothing wanted decoded on {topic}"
    return found[0]


def _canonical(text: str) -> str:
    return str(fastavro.schema.to_parsing_canonical_form(fastavro.parse_schema(json.loads(text))))


def _post(stack: ProcessStack, key: str, body: Any) -> int:
    answer = call("POST", f"{stack.base_url}/v1/events", json_body=body,
                  headers={"X-API-Key": key})  # fmt: skip
    return answer.status


def _stored_event(stack: ProcessStack, key: str, event_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        answer = call("GET", f"{stack.base_url}/v1/events/{event_id}",
                      headers={"X-API-Key": key})  # fmt: skip
        return answer.json() if answer.status == 200 else None

    return eventually(found)


def _flows_and_decodes_with_the_registry_alone(
    pointed: ProcessStack, registry: SchemaRegistryClient, key: str, tenant: str
) -> list[int]:
    """Events go door → stream → sink; every topic's messages carry the ids `registry`
    gives Sluice's subjects, and its `AvroDeserializer` decodes them. The ids, returned."""
    good_id = f"good-{uuid.uuid4().hex[:8]}"
    event = {"id": good_id, "type": "usage.api_call", "source": "/extreg",
             "time": "2026-11-23T10:00:00Z", "data": {"units": 3}}  # fmt: skip
    assert _post(pointed, key, event) == 202
    assert _post(pointed, key, {"id": "x", "data": {}}) == 400
    gone = call("DELETE", f"{pointed.base_url}/v1/events?type=usage.gone",
                headers={"X-API-Key": key})  # fmt: skip
    assert gone.status == 202, gone.body
    assert _stored_event(pointed, key, good_id)["type"] == "usage.api_call"

    deserialize = AvroDeserializer(registry)
    settings, prefix = pointed.settings, pointed.settings.topic_prefix

    def registered(schema_id: int, subject: str, record: str) -> bool:
        """`schema_id` is a version of `subject` there, and its schema is Sluice's record."""
        versions = registry.get_versions(f"{prefix}{subject}")
        ids = {registry.get_version(f"{prefix}{subject}", v).schema_id for v in versions}
        held = registry.get_schema(schema_id).schema_str
        return schema_id in ids and _canonical(held) == _canonical(schema_text(SCHEMA_IDS[record]))

    raw_id, raw = _decoded(settings, deserialize, f"{prefix}ingest.raw",
                           lambda r: any(i["event_id"] == good_id for i in r["items"]))  # fmt: skip
    assert raw["tenant"] == tenant and registered(raw_id, "ingest.raw-value", "IngestEnvelope")
    event_id, canonical = _decoded(settings, deserialize, f"{prefix}events",
                                   lambda r: r.get("event_id") == good_id)  # fmt: skip
    assert canonical["type"] == "usage.api_call"
    assert registered(event_id, "events-value", "CanonicalEvent")
    deletion_id, deletion = _decoded(settings, deserialize, f"{prefix}events",
                                     lambda r: r["tenant"] == tenant and "filter" in r)  # fmt: skip
    assert deletion["filter"]["types"] == ["usage.gone"]
    assert registered(deletion_id, "events-sluice.FilterDeletion", "FilterDeletion")
    dead_id, dead = _decoded(settings, deserialize, f"{prefix}events.dlq",
                             lambda r: r["tenant"] == tenant)  # fmt: skip
    assert dead["reasons"] and b'"x"' in dead["raw"]
    assert registered(dead_id, "events.dlq-value", "DeadLetter")
    return [raw_id, event_id, deletion_id, dead_id]


def _an_envelope_with_sluices_own_id_is_stored(
    pointed: ProcessStack, key: str, tenant: str
) -> None:
    """An envelope carrying Sluice's own id 4 (what the door wrote before the registry
    changed) is read by the stream by that id and lands in PostgreSQL."""
    settings = pointed.settings
    event_id = f"old-{uuid.uuid4()}"
    raw = b'{"type": "usage.old", "source": "/old", "time": "2026-01-01T00:00:00Z", "data": {}}'
    envelope = {
        "request_id": "before-the-switch", "tenant": tenant, "family": "native", "route": {},
        "content_type": "application/json", "received_at": 1764547200000000,
        "items": [{"op": "upsert", "event_id": event_id, "raw": raw, "attempt": 1,
                   "replay_of": None, "receipt_id": None}],
    }  # fmt: skip
    payload = encode("IngestEnvelope", envelope)  # this test process writes Sluice's own ids
    assert int.from_bytes(payload[1:5], "big") == SCHEMA_IDS["IngestEnvelope"]
    partition = partition_for(Identity(tenant, "native", event_id).key(), settings.partitions)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(f"{settings.topic_prefix}ingest.raw", payload, partition=partition)
    assert producer.flush(10) == 0
    assert _stored_event(pointed, key, event_id)["type"] == "usage.old"


def test_every_topic_carries_the_external_registrys_ids_and_decodes_with_it_alone(
    pointed: ProcessStack, external: ExternalRegistry, new_key: Callable[..., str]
) -> None:
    tenant = f"extreg-{uuid.uuid4().hex[:8]}"
    ids = _flows_and_decodes_with_the_registry_alone(
        pointed, external.client(), new_key(tenant), tenant
    )
    # the other registry's ids (its tenants' are numbered from 1000), not Sluice's own
    assert min(ids) > RESERVED_IDS
    # three processes registered side by side: one version per schema, oldest first, and
    # the ids written are each subject's latest
    prefix, registry = pointed.settings.topic_prefix, external.client()
    assert registry.get_versions(f"{prefix}events-value") == [1, 2, 3]
    subjects = ("ingest.raw-value", "events-value", "events-sluice.FilterDeletion",
                "events.dlq-value")  # fmt: skip
    assert ids == [registry.get_latest_version(f"{prefix}{s}").schema_id for s in subjects]


def test_a_message_written_with_sluices_own_id_before_the_switch_is_still_stored(
    pointed: ProcessStack, new_key: Callable[..., str]
) -> None:
    tenant = f"extreg-old-{uuid.uuid4().hex[:8]}"
    _an_envelope_with_sluices_own_id_is_stored(pointed, new_key(tenant), tenant)


def test_registering_is_idempotent_and_takes_a_bearer_token_too(
    pointed: ProcessStack, external: ExternalRegistry
) -> None:
    """What each process does at start-up, again, with the key as a bearer token instead:
    the same schemas get the same ids the running stack writes."""
    basic = register_topic_schemas(pointed.settings)
    bearer = register_topic_schemas(replace(
        pointed.settings, schema_registry_basic_auth_user_info="",
        schema_registry_bearer_token=external.key,
    ))  # fmt: skip
    assert basic == bearer
    assert set(basic) == {1, 2, 3, 4, 5, 6, 7}
    subject = f"{pointed.settings.topic_prefix}ingest.raw-value"
    assert external.client().get_latest_version(subject).schema_id == basic[4]


def _start_refused(settings: Settings, role: str, tmp_path: Path) -> tuple[int, str]:
    env = {**os.environ, **settings_env(settings)}
    done = subprocess.run(
        [sys.executable, "-m", "sluice", role], env=env, capture_output=True, text=True,
        timeout=120, cwd=tmp_path,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("role", ["api", "worker", "sink"])
def test_wrong_credentials_stop_each_process_with_a_clear_message(
    kafka_bootstrap: str, database_url: str, external: ExternalRegistry, role: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    wrong = "sluice:" + "x" * 8 + "." + "y" * 40
    settings = replace(
        _pointed_settings(kafka_bootstrap, database_url, external),
        schema_registry_basic_auth_user_info=wrong,
    )
    code, output = _start_refused(settings, role, tmp_path)
    assert code == 1, output
    assert "refused Sluice's credentials (HTTP 401" in output, output
    assert "SLUICE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO" in output
    assert "y" * 40 not in output  # the password is never printed


def test_an_unreachable_registry_stops_the_process(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    from tests.conftest import free_port

    settings = make_settings(
        kafka_bootstrap, database_url,
        schema_registry_url=f"http://127.0.0.1:{free_port()}/schema-registry",
        schema_registry_bearer_token="secret-token-value",
    )  # fmt: skip
    code, output = _start_refused(settings, "api", tmp_path)
    assert code == 1, output
    assert "cannot be reached" in output and "secret-token-value" not in output


@pytest.fixture(scope="module")
def apicurio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Apicurio Registry (in memory), built from Maven Central by `sluice.launchers.apicurio`;
    the test is skipped, saying why, where it cannot be fetched or built."""
    try:
        resolve_apicurio()
    except ApicurioLauncherError as exc:
        pytest.skip(f"Apicurio Registry cannot be fetched or built here: {str(exc)[-600:]}")
    with ApicurioLauncher(tmp_path_factory.mktemp("apicurio")) as launcher:
        yield launcher.ccompat_url


@pytest.mark.slow
def test_apicurio_registry_holds_the_ids_and_decodes_every_topic(
    apicurio: str, kafka_bootstrap: str, database_url: str, new_key: Callable[..., str],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Apicurio numbers schemas from 1, so most of its ids are Sluice's own ids of other
    records: the pipeline still writes and reads its ids, and an envelope written with
    Sluice's own id 4 (Apicurio's id of an older CanonicalEvent) is still read as one."""
    settings = make_settings(kafka_bootstrap, database_url, schema_registry_url=apicurio)
    ensure_topics(settings)
    stack = ProcessStack(settings, tmp_path / "logs")
    stack.start()
    try:
        stack.wait_ready(timeout=120)
        tenant = f"apicurio-{uuid.uuid4().hex[:8]}"
        key = new_key(tenant)
        registry = SchemaRegistryClient({"url": apicurio})
        ids = _flows_and_decodes_with_the_registry_alone(stack, registry, key, tenant)
        assert ids != [
            SCHEMA_IDS[name]
            for name in ("IngestEnvelope", "CanonicalEvent", "FilterDeletion", "DeadLetter")
        ]
        _an_envelope_with_sluices_own_id_is_stored(stack, key, tenant)
    finally:
        stack.stop()


def test_a_subject_that_refuses_sluices_schema_stops_the_process(
    kafka_bootstrap: str, database_url: str, external: ExternalRegistry, tmp_path: Path
) -> None:
    """Someone else's record already holds the dead-letter subject (BACKWARD, the default):
    Sluice's DeadLetter cannot follow it, and the API says so instead of starting."""
    settings = _pointed_settings(kafka_bootstrap, database_url, external)
    subject = f"{settings.topic_prefix}events.dlq-value"
    other = {"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}
    external.client().register_schema(subject, Schema(json.dumps(other), "AVRO"))
    code, output = _start_refused(settings, "api", tmp_path)
    assert code == 1, output
    assert f"refused Sluice's schema for subject '{subject}' as incompatible" in output, output
