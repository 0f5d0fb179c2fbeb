"""Secrets never appear in logs, errors, metrics or dead letters.

A stack of its own runs with a canary `SLUICE_KEY_SECRET`; traffic goes through it
with a canary API key (valid, wrong-scope, mistyped, revoked, in every header form the
families accept). Then every output is searched for either canary:
the api/worker/sink logs, every HTTP answer (status line, headers and body), the
metrics page, every row of every table (dead letters included), and every key, value
and header of every message on the stack's Kafka topics.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from runtime.settings import Settings
from runtime.topic_admin import ensure_topics
from schemas.topics import TopicNames
from sluice.keys_cli import create_key
from sluice.stack import ProcessStack
from tests.conftest import eventually, make_settings
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

CANARY_SECRET = f"canary-server-secret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def canary_stack(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProcessStack]:
    settings = make_settings(
        kafka_bootstrap, database_url, key_secret=CANARY_SECRET, http_access_log=True
    )
    ensure_topics(settings)
    stack = ProcessStack(settings, tmp_path_factory.mktemp("canary-logs"))
    stack.start()
    try:
        stack.wait_ready(timeout=120)
        yield stack
    finally:
        stack.stop()


def drive_traffic(stack: ProcessStack, key: str, reader: str) -> list[Answer]:
    """Requests that touch every path a key takes: accepted, rejected, denied, refused."""
    base, tenant_id = stack.base_url, uuid.uuid4().hex[:8]
    event = {"id": f"canary-{tenant_id}", "type": "t", "source": "s",
             "time": "2024-01-01T00:00:00Z", "data": {"n": 1}}  # fmt: skip
    mistyped = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
    answers = [
        call("POST", f"{base}/v1/events", json_body=event, headers={"X-API-Key": key}),
        call(
            "POST",
            f"{base}/v1/events",
            json_body=[event, {"data": 1}],
            headers={"Authorization": f"Bearer {key}"},
        ),
        call("POST", f"{base}/v1/events", body=b"{not json", headers={"X-API-Key": key}),
        call("GET", f"{base}/v1/events?type=t", headers={"X-API-Key": key}),
        call("GET", f"{base}/v1/events/{event['id']}", headers={"X-API-Key": key}),
        call("DELETE", f"{base}/v1/events/nothing", headers={"X-API-Key": key}),
        call("POST", f"{base}/v1/events", json_body=event, headers={"X-API-Key": reader}),
        call("GET", f"{base}/v1/events", headers={"X-API-Key": mistyped}),
        call("GET", f"{base}/v1/events", headers={"Authorization": f"Api-Token {mistyped}"}),
        call("GET", f"{base}/v1/dead-letters", headers={"X-API-Key": key}),
        call("GET", f"{base}/v1/admin/keys", headers={"X-API-Key": key}),
        call(
            "POST",
            f"{base}/datahub/v1/events",
            body=b'{"events": [{"id": 1}]}',
            headers={"Authorization": f"Bearer {key}"},
        ),
        call(
            "POST",
            f"{base}/dynatrace/platform/ingest/v1/events",
            json_body={"a": 1},
            headers={"Authorization": f"Api-Token {key}"},
        ),
        call("GET", f"{base}/metrics"),
    ]
    assert answers[0].status == 202 and answers[6].status == 403 and answers[7].status == 401
    eventually(lambda: call("GET", f"{base}/v1/events/{event['id']}",
                            headers={"X-API-Key": key}).status == 200)  # fmt: skip
    return answers


def malformed_header_lines(stack: ProcessStack, key: str) -> list[bytes]:
    """Header lines aiohttp's parser refuses, each quoting the key: it logs the line at
    ERROR (runtime/redaction.py keeps the key out of the log). Its 400 answer quotes the
    line back to the sender, who sent the key, so answers are not searched here."""
    host, port = stack.base_url.removeprefix("http://").rsplit(":", 1)
    lines = [f"X-API-Key: {key}\x7f", f"X-API-Key: {key}\x00", f"X-API-Key: {key}\x0b",
             f"Authorization: Bearer {key}\rx", f"X-API-Key: {key}" + "B" * 8200]  # fmt: skip
    answers = []
    for line in lines:
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(f"GET /v1/events HTTP/1.1\r\nHost: x\r\n{line}\r\n\r\n".encode())
            answers.append(conn.recv(64))
    assert all(a.startswith(b"HTTP/1.") and b" 400 " in a for a in answers), answers
    return answers


def kafka_contents(settings: Settings) -> bytes:
    """Every key, value and header of every message on the stack's topics."""
    topics = TopicNames.for_prefix(settings.topic_prefix)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "group.id": f"canary-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})  # fmt: skip
    parts = [TopicPartition(t, p, 0) for t in (topics.ingest_raw, topics.events, topics.dlq)
             for p in range(settings.partitions)]  # fmt: skip
    ends = {(p.topic, p.partition): consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
    consumer.assign(parts)
    seen: list[bytes] = []
    remaining = sum(ends.values())
    deadline = time.monotonic() + 60
    while remaining > 0 and time.monotonic() < deadline:
        for msg in consumer.consume(500, timeout=1.0):
            if msg.error() is not None:
                continue
            seen += [msg.key() or b"", msg.value() or b""]
            seen += [bytes(v or b"") for _, v in msg.headers() or []]
            remaining -= 1
    consumer.close()
    assert remaining <= 0, "did not read every message back"
    return b"\n".join(seen)


def database_contents(database_url: str) -> str:
    """Every row of every Sluice table, as JSON text."""
    with psycopg.connect(database_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()]  # fmt: skip
        dumps = []
        for table in tables:
            rows = conn.execute(f'SELECT row_to_json(t)::text FROM "{table}" t').fetchall()
            dumps += [r[0] for r in rows]
    return "\n".join(dumps)


def test_no_output_carries_the_key_or_the_server_secret(canary_stack: ProcessStack) -> None:
    settings = replace(canary_stack.settings)
    key = create_key(settings, "canary", ["events:write", "events:read", "events:delete",
                                          "deadletters:read"])  # fmt: skip
    reader = create_key(settings, "canary", ["events:read"])
    answers = drive_traffic(canary_stack, key, reader)
    malformed_header_lines(canary_stack, key)
    # Caught up: a marker sent after all the traffic is stored before anything is looked at.
    marker = {"id": f"marker-{uuid.uuid4().hex[:8]}", "type": "t", "source": "s",
              "time": "2024-01-01T00:00:00Z", "data": {}}  # fmt: skip
    base, auth = canary_stack.base_url, {"X-API-Key": key}
    assert call("POST", f"{base}/v1/events", json_body=marker, headers=auth).status == 202
    shown = f"{base}/v1/events/{marker['id']}"
    eventually(lambda: call("GET", shown, headers=auth).status == 200, timeout=90)

    canaries = {
        "key": key,
        "key payload": key.split(".")[1],
        "reader key": reader,
        "server secret": CANARY_SECRET,
    }
    outputs: dict[str, str] = {
        "http answers": "\n".join(
            f"{a.status} {json.dumps(a.headers)} {a.body.decode(errors='replace')}" for a in answers
        ),
        "database": database_contents(settings.database_url),
        "kafka": kafka_contents(settings).decode(errors="replace"),
    }
    for log in sorted(Path(canary_stack.log_dir).glob("*.log")):
        outputs[f"log {log.name}"] = log.read_text(errors="replace")
    assert len(outputs["log api.log"]) > 0 and "canary-" in outputs["kafka"]
    assert '"POST /v1/events HTTP/1.1" 202' in outputs["log api.log"]  # the access log is on
    assert key.split(".")[0] in outputs["database"]  # the prefix is safe and is stored
    leaks = [(what, where) for what, secret in canaries.items()
             for where, text in outputs.items() if secret in text]  # fmt: skip
    assert not leaks, f"secrets found in outputs: {leaks}"
