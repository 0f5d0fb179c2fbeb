"""The console's figures on real Kafka and PostgreSQL: `GET /v1/overview` and
`GET /v1/dead-letters/summary`.

Two API processes share one worker and one sink; events go through both doors, in two
families, valid and invalid. The overview must count each process's events under their
family (the two flushers' counts sum in PostgreSQL), the rejected ones under `rejected`
and under their reason, show a plausible acceptance → queryable latency and both lags
once the pipeline has run, and show another tenant none of it. The summary groups the
same dead letters by reason and family, filters by bytes in the body, and is sealed too.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime.settings import Settings
from runtime.topic_admin import ensure_topics
from sluice.stack import ProcessStack
from store.figures import BreakerRow, replace_breakers
from tests.conftest import eventually, free_port, make_settings
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

NATIVE_VIA_FIRST = 30
NATIVE_VIA_SECOND = 20
DYNATRACE = 5
BAD_TIME = 4
MISSING_TYPE = 3


def _event(event_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": event_id, "type": "usage", "source": "/overview-tests",
            "time": "2024-11-23T10:00:00Z", "data": {"n": 1}, **fields}  # fmt: skip


@dataclass
class Pipeline:
    first: ProcessStack
    second: ProcessStack
    settings: Settings
    tenant: str
    key: str
    other_key: str
    marker: str

    def get(self, path: str, key: str | None = None, via: ProcessStack | None = None) -> Answer:
        url = f"{(via or self.first).base_url}{path}"
        return call("GET", url, headers={"X-API-Key": key or self.key})


@pytest.fixture(scope="module")
def pipeline(
    kafka_bootstrap: str, database_url: str, new_key: Callable[..., str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:  # fmt: skip
    """api + worker + sink, and a second API process on the same topics and database,
    with short flush and report intervals; the traffic is sent once for every test."""
    settings = make_settings(
        kafka_bootstrap, database_url, figures_flush_seconds=0.5, figures_report_seconds=1.0
    )
    ensure_topics(settings)
    logs = tmp_path_factory.mktemp("overview-logs")
    first = ProcessStack(settings, logs)
    second = ProcessStack(replace(settings, http_port=free_port()), Path(logs) / "second")
    first.start()
    second.start(roles=("api",))
    try:
        first.wait_ready(timeout=120)
        second.wait_ready(timeout=120)
        tenant = f"ov-{uuid.uuid4().hex[:8]}"
        found = Pipeline(first, second, settings, tenant, new_key(tenant),
                         new_key(f"ov-other-{uuid.uuid4().hex[:8]}"), uuid.uuid4().hex)  # fmt: skip
        _send(found)
        yield found
    finally:
        second.stop()
        first.stop()


def _post(stack: ProcessStack, key: str, body: Any, path: str = "/v1/events") -> Answer:
    return call("POST", f"{stack.base_url}{path}", json_body=body, headers={"X-API-Key": key})


def _send(p: Pipeline) -> None:
    run = uuid.uuid4().hex[:6]
    batch = [_event(f"a-{run}-{i}") for i in range(NATIVE_VIA_FIRST)]
    assert _post(p.first, p.key, batch).status == 202
    batch = [_event(f"b-{run}-{i}") for i in range(NATIVE_VIA_SECOND)]
    assert _post(p.second, p.key, batch).status == 202
    generic = [{"event.id": f"d-{run}-{i}", "v": i} for i in range(DYNATRACE)]
    answer = call("POST", f"{p.second.base_url}/dynatrace/platform/ingest/v1/events",
                  json_body=generic, headers={"Authorization": f"Api-Token {p.key}"})  # fmt: skip
    assert answer.status == 202, answer.body
    bad = [_event(f"t-{run}-{i}", time="yesterday", note=p.marker) for i in range(BAD_TIME)]
    assert _post(p.first, p.key, bad).status == 400
    untyped = [_event(f"u-{run}-{i}") for i in range(MISSING_TYPE)]
    for event in untyped:
        del event["type"]
    assert _post(p.second, p.key, untyped).status == 400


def _total(series: list[list[float]], seconds: int) -> int:
    """Events in a series of per-second rates on a `seconds` grid."""
    return round(sum(point[1] * seconds for point in series))


def _overview(p: Pipeline, key: str | None = None) -> dict[str, Any]:
    answer = p.get("/v1/overview", key)
    assert answer.status == 200, answer.body
    found: dict[str, Any] = answer.json()
    return found


def _settled(p: Pipeline) -> dict[str, Any] | None:
    """The overview once every request is counted, the dead letters stored, latency and
    both lags recorded."""
    view = _overview(p)
    done = (
        view["totals"]["accepted"] == NATIVE_VIA_FIRST + NATIVE_VIA_SECOND + DYNATRACE
        and view["totals"]["rejected"] == BAD_TIME + MISSING_TYPE
        and view["latency_ms"]["p50"] is not None
        and view["lag"]["worker"] is not None
        and view["lag"]["sink"] is not None
        and sum(_total(s, 10) for s in view["dead_letters"].values()) >= BAD_TIME + MISSING_TYPE
    )
    return view if done else None


def test_both_doors_events_are_counted_by_family_and_reason(pipeline: Pipeline) -> None:
    view = eventually(lambda: _settled(pipeline), timeout=90, interval=1.0)
    step = view["bucket_seconds"]
    assert (step, view["window_seconds"], view["tenant"]) == (10, 900, pipeline.tenant)
    assert abs(view["now"] - time.time()) < 30
    # The two API processes flushed separately; PostgreSQL summed them bucket by bucket.
    assert set(view["accepted"]) == {"native", "dynatrace"}
    assert _total(view["accepted"]["native"], step) == NATIVE_VIA_FIRST + NATIVE_VIA_SECOND
    assert _total(view["accepted"]["dynatrace"], step) == DYNATRACE
    assert set(view["rejected"]) == {"native"}
    assert _total(view["rejected"]["native"], step) == BAD_TIME + MISSING_TYPE
    reasons = {code: _total(s, step) for code, s in view["dead_letters"].items()}
    assert reasons.get("invalid_timestamp") == BAD_TIME, reasons
    assert sum(reasons.values()) >= BAD_TIME + MISSING_TYPE
    assert view["totals"]["dead_letters_pending"] == BAD_TIME + MISSING_TYPE
    for series in (*view["accepted"].values(), *view["rejected"].values()):
        times = [point[0] for point in series]
        assert times == sorted(times) and all(t % step == 0 for t in times)
        assert all(view["now"] - 900 - step <= t <= view["now"] for t in times)


def test_latency_and_lag_are_measured(pipeline: Pipeline) -> None:
    view = eventually(lambda: _settled(pipeline), timeout=90, interval=1.0)
    latency = view["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] < 60_000, latency
    assert latency["series"] and all(p50 <= p99 for _, p50, p99 in latency["series"])
    lag = view["lag"]
    assert lag["worker"] >= 0 and lag["sink"] >= 0
    assert lag["series"]["worker"] and lag["series"]["sink"]
    # Once the pipeline is idle both groups have committed everything.
    idle = eventually(lambda: _idle_lag(pipeline), timeout=60, interval=1.0)
    assert idle["worker"] == 0 and idle["sink"] == 0


def _idle_lag(p: Pipeline) -> dict[str, Any] | None:
    lag: dict[str, Any] = _overview(p)["lag"]
    return lag if (lag["worker"], lag["sink"]) == (0, 0) else None


def test_either_api_process_answers_the_same(pipeline: Pipeline) -> None:
    eventually(lambda: _settled(pipeline), timeout=90, interval=1.0)
    here, there = _overview(pipeline), pipeline.get("/v1/overview", via=pipeline.second).json()
    assert here["accepted"] == there["accepted"] and here["totals"] == there["totals"]


def test_another_tenant_sees_none_of_it(pipeline: Pipeline) -> None:
    eventually(lambda: _settled(pipeline), timeout=90, interval=1.0)
    theirs = _overview(pipeline, pipeline.other_key)
    assert theirs["tenant"] != pipeline.tenant
    assert (theirs["accepted"], theirs["rejected"], theirs["dead_letters"]) == ({}, {}, {})
    assert theirs["latency_ms"] == {"p50": None, "p99": None, "series": []}
    assert theirs["totals"] == {"accepted": 0, "rejected": 0, "dead_letters_pending": 0}
    assert theirs["breakers"] == []
    summary = pipeline.get("/v1/dead-letters/summary", pipeline.other_key).json()
    assert summary == {"groups": [], "total": 0}


def test_a_stream_rejection_counts_as_rejected(pipeline: Pipeline, database_url: str) -> None:
    """What the stream rejects is known from the dead letters the sink stored (stage
    `stream`), not from the door's counts: one stored so appears under `rejected`."""
    before = eventually(lambda: _settled(pipeline), timeout=90, interval=1.0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dead_letters (dead_letter_id, tenant, family, content_type, raw, stage,"
            " reasons, received_at) VALUES (%s, %s, 'dynatrace', 'application/json', %s,"
            " 'stream', %s, now())",
            (uuid.uuid4(), pipeline.tenant, b'{"x": 1}',
             json.dumps([{"code": "stream_only", "path": "$", "message": "m"}])),
        )  # fmt: skip
    after = _overview(pipeline)
    assert after["totals"]["rejected"] == before["totals"]["rejected"] + 1
    assert _total(after["rejected"]["dynatrace"], 10) == 1
    assert _total(after["dead_letters"]["stream_only"], 10) == 1


def test_open_breakers_are_shown_to_their_tenant_only(
    pipeline: Pipeline, database_url: str
) -> None:
    """A worker's open keys as it records them (`replace_breakers`); a worker that stopped
    reporting is left out, and another tenant's keys are never shown."""
    since = time.time() - 42
    row = BreakerRow(pipeline.tenant, 3, "native", "open", 17, since, "97 of 100 invalid")
    others = BreakerRow("someone-else", 1, "native", "open", 5, since, "x")
    with psycopg.connect(database_url, autocommit=True) as conn:
        replace_breakers(conn, "test-worker-live", [row, others])
        replace_breakers(conn, "test-worker-dead", [replace(row, partition=1)])
        conn.execute(
            "UPDATE breaker_states SET reported_at = now() - interval '1 hour'"
            " WHERE worker = 'test-worker-dead'"
        )
    try:
        shown = _overview(pipeline)["breakers"]
        expected = {"worker": "test-worker-live", "partition": 3, "family": "native",
                    "state": "open", "held": 17,
                    "since": pytest.approx(since, abs=0.01)}  # fmt: skip
        assert shown == [expected]
        assert _overview(pipeline, pipeline.other_key)["breakers"] == []
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            replace_breakers(conn, "test-worker-live", [])
            replace_breakers(conn, "test-worker-dead", [])


@pytest.mark.parametrize("minutes", ["0", "61", "ten", "1.5", "-3"])
def test_a_bad_window_is_refused(pipeline: Pipeline, minutes: str) -> None:
    answer = pipeline.get(f"/v1/overview?minutes={minutes}")
    assert answer.status == 400, answer.body
    assert answer.json()["error"]["code"] == "bad_query"


def test_the_window_follows_minutes(pipeline: Pipeline) -> None:
    view = pipeline.get("/v1/overview?minutes=1").json()
    assert view["window_seconds"] == 60
    for series in view["accepted"].values():
        assert all(point[0] > view["now"] - 70 for point in series)


def test_the_overview_needs_events_read(pipeline: Pipeline, new_key: Callable[..., str]) -> None:
    writer = new_key(pipeline.tenant, ["events:write"])
    assert pipeline.get("/v1/overview", writer).status == 403
    assert call("GET", f"{pipeline.first.base_url}/v1/overview").status == 401


# --- GET /v1/dead-letters/summary ------------------------------------------------------


def _summary(p: Pipeline, query: str = "", key: str | None = None) -> dict[str, Any]:
    answer = p.get(f"/v1/dead-letters/summary{query}", key)
    assert answer.status == 200, answer.body
    found: dict[str, Any] = answer.json()
    return found


def _door_summary(p: Pipeline) -> dict[str, Any] | None:
    found = _summary(p, "?stage=door")
    return found if found["total"] == BAD_TIME + MISSING_TYPE else None


def test_the_summary_groups_by_reason_and_family(pipeline: Pipeline) -> None:
    found = eventually(lambda: _door_summary(pipeline), timeout=90, interval=1.0)
    groups = {(g["reason"], g["family"]): g for g in found["groups"]}
    timing = groups[("invalid_timestamp", "native")]
    assert (timing["count"], timing["pending"]) == (BAD_TIME, BAD_TIME)
    assert timing["first"] <= timing["last"] <= time.time() + 1
    assert sum(n for _, n in timing["trend"]) == BAD_TIME
    assert all(t % 3600 == 0 for t, _ in timing["trend"])
    counts = [g["count"] for g in found["groups"]]
    assert counts == sorted(counts, reverse=True)
    assert sum(counts) >= found["total"]  # a dead letter of two reasons is in two groups


def test_the_summary_filters_like_the_listing(pipeline: Pipeline) -> None:
    eventually(lambda: _door_summary(pipeline), timeout=90, interval=1.0)
    marked = _summary(pipeline, f"?stage=door&contains={pipeline.marker}")
    assert marked["total"] == BAD_TIME
    assert {(g["reason"], g["count"]) for g in marked["groups"]} == {
        ("invalid_timestamp", BAD_TIME)
    }
    listed = pipeline.get(f"/v1/dead-letters?contains={pipeline.marker}").json()["dead_letters"]
    assert len(listed) == BAD_TIME
    assert _summary(pipeline, "?stage=door&reason=invalid_timestamp")["total"] == BAD_TIME
    assert _summary(pipeline, "?family=dynatrace&stage=door")["total"] == 0
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert _summary(pipeline, f"?since={later.replace('+', '%2B')}")["total"] == 0
    assert _summary(pipeline, f"?stage=door&until={time.time() + 60:.0f}")["total"] == (
        BAD_TIME + MISSING_TYPE
    )


@pytest.mark.parametrize(
    "query", ["?status=lost", "?family=nope", "?since=never", "?q=a&contains=b", "?from=1&since=2"]
)
def test_the_summary_refuses_a_bad_filter(pipeline: Pipeline, query: str) -> None:
    answer = pipeline.get(f"/v1/dead-letters/summary{query}")
    assert answer.status == 400, answer.body
    assert answer.json()["error"]["code"] == "bad_query"


def test_the_summary_needs_deadletters_read(
    pipeline: Pipeline, new_key: Callable[..., str]
) -> None:
    reader = new_key(pipeline.tenant, ["events:read"])
    assert pipeline.get("/v1/dead-letters/summary", reader).status == 403
