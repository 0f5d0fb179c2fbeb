"""Retention on real Kafka and PostgreSQL (issue 20): events past their policy leave the
queries, the table and (as tombstones) the compacted `events` topic, in bounded steps
with deletion receipts; those within it, and types kept longer, stay; expired dead letters
leave PostgreSQL; a replay of an expired event's dead letter is refused with a reason;
bad policies are clear 4xx; the CLI sets, shows, clears and runs the same rules."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from runtime.settings import settings_env
from runtime.topic_admin import ensure_topics
from schemas.codec import decode
from schemas.identity import Identity
from sluice.cli import main
from sluice.stack import ProcessStack
from tests.conftest import eventually, make_settings
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

SCOPES = ["admin", "events:write", "events:read", "deadletters:read", "deadletters:replay"]


def _api(stack: ProcessStack, key: str, method: str, path: str, body: Any = None) -> Answer:
    raw = None if body is None else json.dumps(body).encode()
    return call(method, f"{stack.base_url}{path}", body=raw,
                headers={"X-API-Key": key, "Content-Type": "application/json"})  # fmt: skip


def _event(event_id: str, age_days: float, type_: str = "usage", **data: Any) -> dict[str, Any]:
    moment = datetime.now(UTC) - timedelta(days=age_days)
    when = moment.isoformat().replace("+00:00", "Z")
    return {"id": event_id, "type": type_, "source": "/retention", "time": when,
            "data": data or {"n": 1}}  # fmt: skip


def _stored(database_url: str, tenant: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT event_id FROM events WHERE tenant = %s", (tenant,)).fetchall()
    return {str(r[0]) for r in rows}


def _tombstoned(stack: ProcessStack, keys: set[bytes]) -> set[bytes]:
    """Which of `keys` have a tombstone on the `events` topic (read to its end)."""
    settings = stack.settings
    topic = f"{settings.topic_prefix}events"
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "group.id": f"probe-{uuid.uuid4()}",
                         "enable.auto.commit": False})  # fmt: skip
    found: set[bytes] = set()
    try:
        for partition in range(settings.partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            consumer.assign([TopicPartition(topic, partition, 0)])
            position = 0
            while position < high:
                for msg in consumer.consume(500, timeout=2.0):
                    if msg.error() is not None:
                        continue
                    position = (msg.offset() or 0) + 1
                    if msg.value() is None and msg.key() in keys:
                        found.add(msg.key() or b"")
    finally:
        consumer.close()
    return found


def _run(stack: ProcessStack, key: str) -> dict[str, Any]:
    started = _api(stack, key, "POST", "/v1/admin/retention/run")
    assert started.status == 202, started.body

    def done() -> dict[str, Any] | None:
        run = _api(stack, key, "GET", started.json()["status_url"]).json()
        assert run["state"] != "failed", run
        return run if run["state"] == "done" else None

    return eventually(done, timeout=120)


def test_expired_events_and_dead_letters_leave_postgresql_and_kafka(
    stack: ProcessStack, database_url: str, new_key: Callable[..., str]
) -> None:
    tenant = f"ret-{uuid.uuid4().hex[:8]}"
    key = new_key(tenant, SCOPES)
    old = [f"old-{i}" for i in range(5)]
    kept = ["new-1", "new-2", "audit-old"]
    events = [*(_event(i, 10) for i in old), _event("new-1", 0), _event("new-2", 4),
              _event("audit-old", 10, "audit")]  # fmt: skip
    assert _api(stack, key, "POST", "/v1/events", events).status == 202
    # a dead letter of an old event (its body breaks the native rules: data is not an object)
    bad = _api(stack, key, "POST", "/v1/events", [_event("old-bad", 10) | {"data": 5}])
    (rejected,) = bad.json()["rejected"]
    fresh = _api(stack, key, "POST", "/v1/events", [_event("fresh-bad", 0) | {"data": 5}])
    eventually(lambda: _stored(database_url, tenant) == {*old, *kept} or None)
    with psycopg.connect(database_url) as conn:  # one dead letter received 3 days ago
        count = "SELECT count(*) FROM dead_letters WHERE tenant = %s"
        eventually(lambda: conn.execute(count, (tenant,)).fetchone() == (2,))
        conn.execute("UPDATE dead_letters SET received_at = now() - interval '3 days'"
                     " WHERE tenant = %s AND event_id = 'old-bad'", (tenant,))  # fmt: skip
        conn.commit()

    for policy in ({"kind": "events", "family": "native", "keep_days": 5},
                   {"kind": "events", "family": "native", "type": "audit", "keep_days": 30},
                   {"kind": "dead_letters", "family": "native", "keep_days": 1}):  # fmt: skip
        answer = _api(stack, key, "PUT", "/v1/admin/retention", policy)
        assert answer.status == 200, answer.body
    shown = _api(stack, key, "GET", "/v1/admin/retention").json()["policies"]
    assert {(p["kind"], p["type"], p["keep_days"]) for p in shown} == {
        ("events", None, 5), ("events", "audit", 30), ("dead_letters", None, 1)}  # fmt: skip

    # the replay of the old event's dead letter (corrected) is refused: it is expired
    fix = [{"op": "replace", "path": "/data", "value": {"n": 2}}]
    replay = f"{stack.base_url}/v1/dead-letters/{rejected['dead_letter_id']}/replay"
    patch_type = {"X-API-Key": key, "Content-Type": "application/json-patch+json"}
    refused = call("POST", replay, body=json.dumps(fix).encode(), headers=patch_type)
    assert (refused.status, refused.json()["error"]["code"]) == (409, "expired"), refused.body

    run = _run(stack, key)
    assert run["events_removed"] == len(old) and run["dead_letters_removed"] == 1
    assert _stored(database_url, tenant) == set(kept)
    for receipt in run["receipts"]:
        answer = _api(stack, key, "GET", f"/v1/deletions/{receipt}").json()
        assert answer["status"] == "finished"
    assert _api(stack, key, "GET", "/v1/events/old-1").status == 404
    assert _api(stack, key, "GET", "/v1/events/new-2").status == 200
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT event_id FROM dead_letters WHERE tenant = %s", (tenant,))
        letters = {str(r[0]) for r in rows.fetchall()}
    assert letters == {"fresh-bad"}, fresh.body
    keys = {Identity(tenant, "native", i).key() for i in [*old, *kept]}
    gone = {Identity(tenant, "native", i).key() for i in old}
    assert eventually(lambda: _tombstoned(stack, keys) == gone or None)

    # a policy shown with its last run; a second run finds nothing more
    shown = _api(stack, key, "GET", "/v1/admin/retention").json()["policies"]
    assert all(p["last_run_at"] for p in shown)
    again = _run(stack, key)
    assert (again["events_removed"], again["dead_letters_removed"], again["receipts"]) == (0, 0, [])


def test_expiry_takes_bounded_steps(
    stack: ProcessStack, database_url: str, new_key: Callable[..., str]
) -> None:
    """`SLUICE_RETENTION_STEP_ROWS` events at most per step (the CLI runs it here, with
    a step of 4 over 10 expired events: three steps, each with its receipt)."""
    tenant = f"ret-{uuid.uuid4().hex[:8]}"
    key = new_key(tenant, SCOPES)
    events = [_event(f"e-{i}", 20 + i / 100) for i in range(10)] + [_event("stays", 1)]
    assert _api(stack, key, "POST", "/v1/events", events).status == 202
    eventually(lambda: len(_stored(database_url, tenant)) == 11 or None)
    env = {**settings_env(stack.settings), "SLUICE_RETENTION_STEP_ROWS": "4"}

    def sluice(*args: str) -> str:
        result = CliRunner().invoke(main, ["retention", *args, "--tenant", tenant], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    assert "native" in sluice("set", "--family", "native", "--days", "10")
    assert "removed 10 events in 3 steps, 0 dead letters" in sluice("run")
    assert _stored(database_url, tenant) == {"stays"}
    listed = [json.loads(line) for line in sluice("show", "--json").splitlines()]
    assert [(p["kind"], p["family"], p["keep_days"]) for p in listed] == [("events", "native", 10)]
    assert "cleared" in sluice("clear", "--family", "native")
    assert sluice("show", "--json").strip() == ""


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"kind": "events", "family": "native", "keep_days": -1}, 400),
        ({"kind": "events", "family": "native", "keep_days": 0}, 400),
        ({"kind": "events", "family": "native", "keep_days": 1e9}, 400),
        ({"kind": "events", "family": "native", "keep_days": "30"}, 400),
        ({"kind": "events", "family": "native", "keep_days": True}, 400),
        ({"kind": "events", "family": "native"}, 400),
        ({"kind": "events", "family": "nope", "keep_days": 1}, 400),
        ({"kind": "logs", "family": "native", "keep_days": 1}, 400),
        ({"kind": "dead_letters", "family": "native", "type": "x", "keep_days": 1}, 400),
        ({"kind": "events", "family": "native", "keep_days": 1, "tenant": "other"}, 400),
        ({"kind": "events", "family": "native", "keep_days": 1, "extra": 1}, 400),
        ([1], 400),
    ],
)
def test_a_bad_policy_is_a_clear_400(
    stack: ProcessStack, new_key: Callable[..., str], body: Any, code: int
) -> None:
    key = new_key(f"ret-{uuid.uuid4().hex[:8]}", SCOPES)
    answer = _api(stack, key, "PUT", "/v1/admin/retention", body)
    assert answer.status == code and answer.json()["error"]["code"] == "bad_request", answer.body
    assert answer.json()["error"]["message"]


def test_policies_are_the_tenants_own_and_need_admin(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    mine, theirs = (new_key(f"ret-{uuid.uuid4().hex[:8]}", SCOPES) for _ in range(2))
    policy = {"kind": "events", "family": "native", "keep_days": 3}
    assert _api(stack, mine, "PUT", "/v1/admin/retention", policy).status == 200
    assert _api(stack, theirs, "GET", "/v1/admin/retention").json()["policies"] == []
    cleared = _api(stack, theirs, "DELETE", "/v1/admin/retention?kind=events&family=native")
    assert cleared.status == 404
    assert len(_api(stack, mine, "GET", "/v1/admin/retention").json()["policies"]) == 1
    writer = new_key(f"ret-{uuid.uuid4().hex[:8]}", ["events:write"])
    assert _api(stack, writer, "PUT", "/v1/admin/retention", policy).status == 403
    run = _api(stack, mine, "GET", f"/v1/admin/retention/runs/{uuid.uuid4()}")
    assert run.status == 404


FAST_CLEANER = {  # the test's own `events` topic: segments roll and are cleaned in seconds
    "segment.ms": "1000",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "1000",
    "min.compaction.lag.ms": "0",
}


def _clean_fast(settings: Any) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
               for k, v in FAST_CLEANER.items()]  # fmt: skip
    topic = ConfigResource(ConfigResource.Type.TOPIC, f"{settings.topic_prefix}events",
                           incremental_configs=entries)  # fmt: skip
    for future in admin.incremental_alter_configs([topic]).values():
        future.result(timeout=30)


def _records_by_key(settings: Any, keys: set[bytes]) -> dict[bytes, list[bytes | None]]:
    """Every record (value, None for a tombstone) the `events` topic holds under `keys`, in
    order, read from the start of each partition to its end."""
    topic = f"{settings.topic_prefix}events"
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "group.id": f"probe-{uuid.uuid4()}",
                         "enable.auto.commit": False})  # fmt: skip
    found: dict[bytes, list[bytes | None]] = {}
    try:
        for partition in range(settings.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            consumer.assign([TopicPartition(topic, partition, low)])
            position = low
            while position < high:
                for msg in consumer.consume(500, timeout=2.0):
                    if msg.error() is not None:
                        continue
                    position = (msg.offset() or 0) + 1
                    if msg.key() in keys:
                        found.setdefault(msg.key() or b"", []).append(msg.value())
    finally:
        consumer.close()
    return found


@pytest.mark.slow
def test_expired_events_leave_the_compacted_events_topic(
    kafka_bootstrap: str, database_url: str, new_key: Callable[..., str], tmp_path: Any
) -> None:
    """After expiry and compaction (a fast cleaner on this test's own topics), reading
    `events` from the start yields nothing for an expired identity, not even its
    tombstone, and only the latest value of each kept one."""
    settings = make_settings(kafka_bootstrap, database_url)
    ensure_topics(settings)
    _clean_fast(settings)
    stack = ProcessStack(settings, tmp_path)
    stack.start()
    try:
        stack.wait_ready(timeout=120)
        _expire_then_compact(stack, database_url, new_key)
    finally:
        stack.stop()


def _expire_then_compact(
    stack: ProcessStack, database_url: str, new_key: Callable[..., str]
) -> None:
    tenant = f"ret-{uuid.uuid4().hex[:8]}"
    key = new_key(tenant, SCOPES)
    old, kept = [f"old-{i}" for i in range(6)], [f"new-{i}" for i in range(6)]
    first = [*(_event(i, 10) for i in old), *(_event(i, 1, v=1) for i in kept)]
    assert _api(stack, key, "POST", "/v1/events", first).status == 202
    assert _api(stack, key, "POST", "/v1/events", [_event(i, 1, v=2) for i in kept]).status == 202
    eventually(lambda: _stored(database_url, tenant) == {*old, *kept} or None)
    policy = {"kind": "events", "family": "native", "keep_days": 5}
    assert _api(stack, key, "PUT", "/v1/admin/retention", policy).status == 200
    assert _run(stack, key)["events_removed"] == len(old)
    assert _stored(database_url, tenant) == set(kept)

    identity = {i: Identity(tenant, "native", i).key() for i in [*old, *kept]}
    rounds = iter(range(10_000))

    def compacted() -> bool:
        # new versions of another identity roll the segments, so the cleaner has work
        filler = [_event(f"filler-{next(rounds)}-{p}", 0) for p in range(8)]
        assert _api(stack, key, "POST", "/v1/events", filler).status == 202
        held = _records_by_key(stack.settings, set(identity.values()))
        expired_gone = not any(identity[i] in held for i in old)
        latest = [held.get(identity[i], []) for i in kept]
        return expired_gone and all(len(r) == 1 and r[0] is not None for r in latest)

    eventually(compacted, timeout=90, interval=1.0)
    held = _records_by_key(stack.settings, {identity[i] for i in kept})
    for event_id in kept:
        (value,) = held[identity[event_id]]
        assert value is not None
        _name, record = decode(value)
        assert json.loads(record["data_json"]) == {"v": 2}, record
