"""The DLQ circuit breaker on a real worker: one tenant's garbage, on every partition, holds
only that tenant's envelopes; another tenant's events on the same partitions are stored at
once; an operator's resume (or the cool-down) sends the held garbage on as dead letters, so
nothing is held forever. Before keys were per tenant, the garbage paused every partition."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer

from runtime.settings import Settings, settings_env
from runtime.topic_admin import ensure_topics
from schemas.codec import encode
from schemas.identity import Identity, partition_for
from sluice.stack import ProcessStack
from tests.conftest import eventually, make_settings

pytestmark = pytest.mark.integration

MAX_CONSECUTIVE = 10
GARBAGE = 15
COOLDOWN = 600.0
"""Longer than the test: only the operator's resume can release the garbage here (the
cool-down's release is tested with a clock in tests/streams/test_breaker.py)."""


def _id_on(tenant: str, partition: int, label: str, partitions: int) -> str:
    while True:
        candidate = f"{label}-{uuid.uuid4().hex[:8]}"
        if partition_for(Identity(tenant, "native", candidate).key(), partitions) == partition:
            return candidate


def _envelope(tenant: str, event_id: str, valid: bool) -> bytes:
    # What the compiled door path once accepted and the stream refused: a lone surrogate.
    data = '{"n":1}' if valid else '{"s":"\\ud800"}'
    raw = ('{"type":"t","source":"s","time":"2024-11-23T10:00:00Z","data":' + data + "}").encode()
    return encode("IngestEnvelope", {
        "request_id": str(uuid.uuid4()), "tenant": tenant, "family": "native", "route": {},
        "content_type": "application/json", "received_at": 1732320000000000,
        "items": [{"op": "upsert", "event_id": event_id, "raw": raw, "attempt": 1,
                   "replay_of": None, "receipt_id": None}],
    })  # fmt: skip


def _produce(settings: Settings, partition: int, envelopes: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for value in envelopes:
        producer.produce(f"{settings.topic_prefix}ingest.raw", value, partition=partition)
    assert producer.flush(10) == 0


def _count(database_url: str, table: str, tenant: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE tenant = %s", (tenant,)).fetchone()
    return int(row[0]) if row else 0


def _status(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings)}
    return subprocess.run([sys.executable, "-m", "sluice", "worker", "breaker", *args],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.fixture
def worker(tmp_path: Path, kafka_bootstrap: str, database_url: str) -> Iterator[ProcessStack]:
    settings = make_settings(
        kafka_bootstrap, database_url, state_dir=tmp_path / "state",
        breaker_max_consecutive_invalid=MAX_CONSECUTIVE, breaker_max_invalid_ratio=1.0,
        breaker_cooldown_seconds=COOLDOWN, figures_report_seconds=1.0,
    )  # fmt: skip
    ensure_topics(settings)
    stack = ProcessStack(settings, tmp_path / "logs")
    stack.start(("worker", "sink"))
    try:
        yield stack
    finally:
        stack.stop()


def _recorded(database_url: str, tenant: str) -> set[tuple[int, str, int]]:
    """The open keys of `tenant` the workers recorded for the overview (migration 0015):
    (partition, family, envelopes held)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT kafka_partition, family, held FROM breaker_states"
            " WHERE tenant = %s AND state = 'open' AND reported_at > now() - interval '10 s'",
            (tenant,),
        ).fetchall()
    return {(int(r[0]), str(r[1]), int(r[2])) for r in rows}


def test_one_tenants_garbage_on_every_partition_holds_only_that_tenant(
    worker: ProcessStack, database_url: str
) -> None:
    settings = worker.settings
    n = settings.partitions
    poison, other = f"poison-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    status_file = settings.state_dir / f"breaker-{settings.worker_id}.json"
    for p in range(n):  # the garbage first, then the other tenant, on the same partitions
        garbage = [_envelope(poison, _id_on(poison, p, "junk", n), False) for _ in range(GARBAGE)]
        valid = [_envelope(other, _id_on(other, p, "ok", n), True) for _ in range(3)]
        _produce(settings, p, garbage + valid)

    assert eventually(lambda: _count(database_url, "events", other) == 3 * n, timeout=90)
    tripped = (_status(status_file) or {}).get("open", {})
    assert {(k["tenant"], k["family"]) for k in tripped.values()} == {(poison, "native")}
    assert len(tripped) == n, "every partition's key of the poisoning tenant trips"
    assert _count(database_url, "dead_letters", poison) < GARBAGE * n  # held, not sent
    log = worker.log_tail("worker", 400)
    assert "circuit breaker tripped" in log and "door bug?" in log

    # The worker records the same keys in PostgreSQL, for the overview of any machine.
    recorded = eventually(lambda: _recorded(database_url, poison) or None, timeout=30)
    assert {p for p, _, _ in recorded} == set(range(n))
    assert all(family == "native" and held >= 1 for _, family, held in recorded)
    assert _recorded(database_url, other) == set()

    shown = _cli(settings, "status")
    assert shown.returncode == 0 and f"{poison}/native" in shown.stdout, shown.stderr
    asked = _cli(settings, "resume", "--all")
    assert asked.returncode == 0, asked.stderr
    assert eventually(lambda: _count(database_url, "dead_letters", poison) == GARBAGE * n,
                      timeout=60)  # fmt: skip
    assert eventually(lambda: (_status(status_file) or {}).get("open") == {}, timeout=30)
    assert eventually(lambda: not _recorded(database_url, poison), timeout=30)
    assert _count(database_url, "events", poison) == 0
