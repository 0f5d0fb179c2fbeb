"""Invariant 4 end to end: deletes by id and by filter reach PostgreSQL rows and dead
letters, receipts report them, a delete covers events still in flight and nothing
accepted after it; and the native answer tells which events replaced a version."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime.topic_admin import ensure_topics
from sluice.stack import ProcessStack
from tests.conftest import eventually, make_settings
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration


def _event(event_id: str, type_: str = "usage.kept", **data: Any) -> dict[str, Any]:
    return {"id": event_id, "type": type_, "source": "/tests", "time": "2024-11-23T10:00:00Z",
            "data": data or {"n": 1}}  # fmt: skip


def _call(base: str, key: str, method: str, path: str, payload: Any = None) -> Answer:
    return call(method, f"{base}{path}", json_body=payload, headers={"X-API-Key": key})


def _stored(database_url: str, tenant: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_id, version FROM events WHERE tenant = %s", (tenant,)
        ).fetchall()
    return dict(rows)


def _finished(base: str, key: str, deletion_id: str) -> dict[str, Any] | None:
    answer = _call(base, key, "GET", f"/v1/deletions/{deletion_id}")
    assert answer.status == 200, answer.body
    receipt: dict[str, Any] = answer.json()
    return receipt if receipt["status"] == "finished" else None


def test_delete_by_id_removes_the_row_and_its_dead_letters(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    tenant = f"del-{uuid.uuid4().hex[:8]}"
    key = new_key(tenant)
    base = stack.base_url
    rejected = _call(base, key, "POST", "/v1/events", {"id": "x", "type": 7})
    assert rejected.status == 400
    assert _call(base, key, "POST", "/v1/events", _event("x")).status == 202
    assert _call(base, key, "POST", "/v1/events", _event("y")).status == 202
    eventually(lambda: set(_stored(database_url, tenant)) == {"x", "y"})

    answer = _call(base, key, "DELETE", "/v1/events/x")
    assert answer.status == 202
    receipt = eventually(lambda: _finished(base, key, answer.json()["deletion_id"]))
    assert receipt["removed"] == {"events": 1, "dead_letters": 1}
    assert receipt["finished_at"] is not None and receipt["kind"] == "ids"
    assert set(_stored(database_url, tenant)) == {"y"}
    with psycopg.connect(database_url) as conn:
        (letters,) = conn.execute(
            "SELECT count(*) FROM dead_letters WHERE tenant = %s AND event_id = 'x'", (tenant,)
        ).fetchone() or (None,)
    assert letters == 0


def test_delete_by_filter_covers_what_came_before_and_nothing_after(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    tenant = f"del-{uuid.uuid4().hex[:8]}"
    key = new_key(tenant)
    base = stack.base_url
    batch = [_event(f"doomed-{i}", "usage.doomed") for i in range(12)]
    batch += [_event(f"kept-{i}") for i in range(5)]
    assert _call(base, key, "POST", "/v1/events", batch).status == 202
    eventually(lambda: len(_stored(database_url, tenant)) == 17)

    answer = _call(base, key, "DELETE", "/v1/events?type=usage.doomed")
    assert answer.status == 202, answer.body
    deletion_id = answer.json()["deletion_id"]
    after = _call(base, key, "POST", "/v1/events", _event("doomed-late", "usage.doomed"))
    assert after.status == 202

    receipt = eventually(lambda: _finished(base, key, deletion_id))
    assert receipt["removed"]["events"] == 12
    assert receipt["steps_applied"] == receipt["steps_expected"] == stack.settings.partitions
    expected = {f"kept-{i}" for i in range(5)} | {"doomed-late"}
    assert eventually(lambda: set(_stored(database_url, tenant)) == expected)

    other = new_key(f"other-{uuid.uuid4().hex[:8]}")
    assert _call(base, other, "GET", f"/v1/deletions/{deletion_id}").status == 404


def test_a_delete_needs_a_filter_or_all(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    key = new_key("acme")
    assert _call(stack.base_url, key, "DELETE", "/v1/events").status == 400
    assert _call(stack.base_url, key, "DELETE", "/v1/events?all=true&type=a").status == 400
    assert _call(stack.base_url, key, "DELETE", "/v1/events?from=yesterday").status == 400
    reader = new_key("acme", ["events:read"])
    assert _call(stack.base_url, reader, "DELETE", "/v1/events?all=true").status == 403


def test_the_answer_tells_which_events_replaced_a_version(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    tenant = f"rep-{uuid.uuid4().hex[:8]}"
    key = new_key(tenant)
    base = stack.base_url
    assert _call(base, key, "POST", "/v1/events", _event("old")).json()["replaced"] == []
    eventually(lambda: "old" in _stored(database_url, tenant))

    payload = [_event("old", n=2), _event("new"), _event("new", n=3)]
    answer = _call(base, key, "POST", "/v1/events", payload).json()
    assert answer["replaced"] == ["old", "new"]

    def newest() -> bool:
        got = _call(base, key, "GET", "/v1/events/new")
        return got.status == 200 and got.json()["data"] == {"n": 3}

    assert eventually(newest)

    # Another tenant's event of the same id was never stored for it: nothing replaced.
    other = new_key(f"rep-{uuid.uuid4().hex[:8]}")
    assert _call(base, other, "POST", "/v1/events", _event("old")).json()["replaced"] == []


def test_a_delete_covers_events_still_in_flight(
    kafka_bootstrap: str, database_url: str, new_key: Callable[..., str], tmp_path: Path
) -> None:
    """The sink is stopped: events and the deletes wait in Kafka; none ever shows up."""
    settings = make_settings(kafka_bootstrap, database_url)
    ensure_topics(settings)
    stack = ProcessStack(settings, tmp_path / "logs")
    stack.start()
    try:
        stack.wait_ready(timeout=120)
        tenant = f"fly-{uuid.uuid4().hex[:8]}"
        key = new_key(tenant)
        base = stack.base_url
        assert _call(base, key, "POST", "/v1/events", _event("warm")).status == 202
        eventually(lambda: "warm" in _stored(database_url, tenant))
        stack.stop_role("sink")

        batch = [_event(f"gone-{i}", "usage.doomed") for i in range(20)] + [_event("by-id")]
        assert _call(base, key, "POST", "/v1/events", batch).status == 202
        by_filter = _call(base, key, "DELETE", "/v1/events?type=usage.doomed").json()
        by_id = _call(base, key, "DELETE", "/v1/events/by-id").json()
        survivor = _call(base, key, "POST", "/v1/events", _event("gone-0", "usage.doomed"))
        assert survivor.status == 202

        stack.start_role("sink")
        for receipt in (by_filter, by_id):
            eventually(lambda r=receipt: _finished(base, key, r["deletion_id"]), timeout=90)
        expected = {"warm", "gone-0"}
        eventually(lambda: set(_stored(database_url, tenant)) == expected)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert set(_stored(database_url, tenant)) == expected
            time.sleep(0.2)
        assert _call(base, key, "GET", "/v1/events/by-id").status == 404
    finally:
        stack.stop()
