"""Dead letters end to end on real Kafka and PostgreSQL: list, read exactly, replay (one,
corrected, twice, by filter as a job), discard, and tenants sealed from each other."""

from __future__ import annotations

import base64
import gzip
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer, TopicPartition

from runtime.settings import settings_env
from runtime.topic_admin import ensure_topics
from schemas.codec import decode
from schemas.deadletter import Origin, build_dead_letter
from schemas.identity import partition_for
from schemas.outcome import Violation
from sluice.cli import main
from sluice.stack import ProcessStack
from tests.conftest import eventually, make_settings
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration


def _event(event_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": event_id, "type": "usage", "source": "/dl-tests",
            "time": "2024-11-23T10:00:00Z", "data": {"units": 1}, **fields}  # fmt: skip


def _api(stack: ProcessStack, key: str, method: str, path: str, **kw: Any) -> Answer:
    headers = {"X-API-Key": key, **kw.pop("headers", {})}
    return call(method, f"{stack.base_url}{path}", headers=headers, **kw)


def _rejected_id(answer: Answer) -> str:
    assert answer.status == 400, answer.body
    (rejected,) = answer.json()["rejected"]
    return str(rejected["dead_letter_id"])


def _stored(stack: ProcessStack, key: str, dl_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        answer = _api(stack, key, "GET", f"/v1/dead-letters/{dl_id}")
        return answer.json() if answer.status == 200 else None

    return eventually(found)


def _event_there(stack: ProcessStack, key: str, event_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        answer = _api(stack, key, "GET", f"/v1/events/{event_id}")
        return answer.json() if answer.status == 200 else None

    return eventually(found)


def _replays_on_ingest_raw(stack: ProcessStack, dead_letter_ids: set[str]) -> dict[str, int]:
    """How many items on ingest.raw replay each of `dead_letter_ids` (read to the end)."""
    settings = stack.settings
    topic = f"{settings.topic_prefix}ingest.raw"
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers,
         "group.id": f"probe-{uuid.uuid4()}", "enable.auto.commit": False}
    )  # fmt: skip
    counts = dict.fromkeys(dead_letter_ids, 0)
    try:
        for partition in range(settings.partitions):
            tp = TopicPartition(topic, partition)
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            consumer.assign([TopicPartition(topic, partition, 0)])
            position = 0
            while position < high:
                for msg in consumer.consume(500, timeout=2.0):
                    if msg.error() is not None:
                        continue
                    position = msg.offset() + 1
                    for item in decode(msg.value(), "IngestEnvelope")[1]["items"]:
                        if item["replay_of"] in counts:
                            counts[item["replay_of"]] += 1
    finally:
        consumer.close()
    return counts


def test_replay_with_a_corrected_body_twice_is_one_event(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("dl-acme")
    event_id = f"late-{uuid.uuid4()}"
    dl_id = _rejected_id(_api(stack, key, "POST", "/v1/events",
                              json_body=_event(event_id, time="yesterday")))  # fmt: skip
    stored = _stored(stack, key, dl_id)
    assert stored["status"] == "pending" and stored["event_id"] == event_id

    path = f"/v1/dead-letters/{dl_id}/replay"
    patch = [{"op": "replace", "path": "/time", "value": "2024-11-23T11:00:00Z"}]
    patch_headers = {"Content-Type": "application/json-patch+json"}
    dry = _api(stack, key, "POST", f"{path}?dry_run=true", json_body=patch, headers=patch_headers)
    assert dry.status == 200 and dry.json()["outcome"] == "valid", dry.body
    assert _stored(stack, key, dl_id)["status"] == "pending"

    first = _api(stack, key, "POST", path, json_body=patch, headers=patch_headers)
    assert first.status == 202 and first.json()["event_ids"] == [event_id], first.body
    second = _api(stack, key, "POST", path, json_body=patch, headers=patch_headers)
    assert second.status == 409 and second.json()["error"]["code"] == "not_pending"

    assert _event_there(stack, key, event_id)["time"].startswith("2024-11-23T11:00:00")
    assert _stored(stack, key, dl_id)["status"] == "replayed"
    assert _replays_on_ingest_raw(stack, {dl_id}) == {dl_id: 1}


def test_a_patch_that_is_a_program_is_refused_at_once(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("dl-patch-bombs")
    dl_id = _rejected_id(_api(stack, key, "POST", "/v1/events",
                              json_body=_event(f"e-{uuid.uuid4()}", time="yesterday")))  # fmt: skip
    _stored(stack, key, dl_id)
    path = f"/v1/dead-letters/{dl_id}/replay?dry_run=true"
    headers = {"Content-Type": "application/json-patch+json"}
    doubling = [{"op": "copy", "from": "", "path": f"/{i}"} for i in range(30)]  # 2^30 times
    too_many = [{"op": "test", "path": "/type", "value": "usage"}] * 101
    deep = b'[{"op": "add", "path": "/data/x", "value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]"
    for patch, status, code in [
        (json.dumps(doubling).encode(), 413, "patched_body_too_large"),
        (json.dumps(too_many).encode(), 422, "too_many_operations"),
        (deep, 422, "too_deep"),
    ]:
        answer = _api(stack, key, "POST", path, body=patch, headers=headers, timeout=10)
        assert (answer.status, answer.json()["error"]["code"]) == (status, code), answer.body
    assert _stored(stack, key, dl_id)["status"] == "pending"


def test_a_still_invalid_replay_is_a_new_dead_letter_with_lineage(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("dl-acme")
    dl_id = _rejected_id(_api(stack, key, "POST", "/v1/events", body=b'{"type": 7}',
                              headers={"Content-Type": "application/json"}))  # fmt: skip
    _stored(stack, key, dl_id)
    answer = _api(stack, key, "POST", f"/v1/dead-letters/{dl_id}/replay")
    assert answer.status == 200 and answer.json()["outcome"] == "still_invalid", answer.body
    (new_id,) = answer.json()["new_dead_letter_ids"]
    child = _stored(stack, key, new_id)
    assert child["attempt"] == 2 and child["replay_of"] == dl_id and child["status"] == "pending"
    assert base64.b64decode(child["raw_base64"]) == b'{"type": 7}'
    assert _stored(stack, key, dl_id)["outcome"]["new_dead_letter_ids"] == [new_id]


@pytest.mark.parametrize(
    ("name", "body", "headers"),
    [
        ("non-utf8", b'\xff\xfe\x80{"type": "t", "x": 1}', {}),
        ("non-utf8-in-a-string", b'{"type": "\xff\xfe\x80", "x": 1}', {}),
        ("bom", b'\xef\xbb\xbf{"type": "t"}', {}),
        ("32kb", json.dumps({"type": "t", "data": {"pad": "x" * 32_768}}).encode(), {}),
        ("broken-gzip", gzip.compress(b'[{"type": "t"}]' * 50)[:-20], {}),
        (
            "broken-gzip-declared",
            gzip.compress(b'[{"type": "t"}]' * 50)[:-20],
            {"Content-Encoding": "gzip"},
        ),
    ],
)
def test_raw_bytes_come_back_byte_for_byte(
    stack: ProcessStack, new_key: Callable[..., str], name: str, body: bytes,
    headers: dict[str, str],
) -> None:  # fmt: skip
    key = new_key("dl-bytes")
    sent = {"Content-Type": "application/json", **headers}
    dl_id = _rejected_id(_api(stack, key, "POST", "/v1/events", body=body, headers=sent))
    stored = _stored(stack, key, dl_id)
    assert base64.b64decode(stored["raw_base64"]) == body, name
    exact = _api(stack, key, "GET", f"/v1/dead-letters/{dl_id}",
                 headers={"Accept": "application/octet-stream"})  # fmt: skip
    assert exact.status == 200 and exact.body == body
    assert exact.headers["Content-Type"] == "application/octet-stream"


def test_list_filters_and_discard(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    key = new_key(f"dl-{uuid.uuid4().hex[:8]}")
    marker = f"needle-{uuid.uuid4().hex[:6]}"
    bad_time = _rejected_id(_api(stack, key, "POST", "/v1/events",
                                 json_body=_event(marker, time="nope")))  # fmt: skip
    no_type = _rejected_id(_api(stack, key, "POST", "/v1/events", json_body={"data": {}}))
    _stored(stack, key, bad_time)
    _stored(stack, key, no_type)

    def ids(query: str) -> list[str]:
        answer = _api(stack, key, "GET", f"/v1/dead-letters?{query}")
        assert answer.status == 200, answer.body
        return [d["dead_letter_id"] for d in answer.json()["dead_letters"]]

    assert ids("reason=invalid_timestamp") == [bad_time]
    assert ids(f"q={marker}") == [bad_time]  # without `from`: the last 7 days
    assert ids(f"q={marker}&to=2020-01-01T00:00:00Z") == []  # the 7 days before `to`
    wide = _api(stack, key, "GET", f"/v1/dead-letters?q={marker}&from=2020-01-01T00:00:00Z")
    assert wide.status == 400 and "narrow from/to" in wide.json()["error"]["message"]
    wide_job = {"q": marker, "from": "2020-01-01T00:00:00Z", "dry_run": True}
    job = _api(stack, key, "POST", "/v1/dead-letters/replay", json_body=wide_job)
    assert job.status == 400
    assert ids("stage=door&family=native") == [bad_time, no_type]
    assert ids("limit=1") == [bad_time]
    cursor = _api(stack, key, "GET", "/v1/dead-letters?limit=1").json()["next_cursor"]
    assert ids(f"limit=1&cursor={cursor}") == [no_type]
    assert _api(stack, key, "GET", "/v1/dead-letters?stage=nowhere").status == 400
    unknown = _api(stack, key, "POST", "/v1/dead-letters/replay", json_body={"colour": "red"})
    assert unknown.status == 400 and unknown.json()["error"]["code"] == "bad_filter"

    discarded = _api(stack, key, "POST", f"/v1/dead-letters/{no_type}/discard")
    assert discarded.status == 200 and discarded.json()["status"] == "discarded"
    assert ids("status=discarded") == [no_type]
    again = _api(stack, key, "POST", f"/v1/dead-letters/{no_type}/replay")
    assert again.status == 409


def test_another_tenant_cannot_see_or_touch_dead_letters(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    owner = new_key(f"dl-a-{uuid.uuid4().hex[:6]}")
    intruder = new_key(f"dl-b-{uuid.uuid4().hex[:6]}")
    dl_id = _rejected_id(_api(stack, owner, "POST", "/v1/events", json_body={"type": 1}))
    _stored(stack, owner, dl_id)
    job = _api(stack, owner, "POST", "/v1/dead-letters/replay", json_body={"dry_run": True})
    assert job.status == 202
    missing = str(uuid.uuid4())
    for method, path in [
        ("GET", "/v1/dead-letters/{}"),
        ("POST", "/v1/dead-letters/{}/replay"),
        ("POST", "/v1/dead-letters/{}/replay?dry_run=true"),
        ("POST", "/v1/dead-letters/{}/discard"),
    ]:
        theirs = _api(stack, intruder, method, path.format(dl_id))
        nobody = _api(stack, intruder, method, path.format(missing))
        assert theirs.status == nobody.status == 404
        assert theirs.body == nobody.body
    listing = _api(stack, intruder, "GET", "/v1/dead-letters").json()["dead_letters"]
    assert listing == []
    assert _api(stack, intruder, "GET", f"/v1/replay-jobs/{job.json()['job_id']}").status == 404
    assert _stored(stack, owner, dl_id)["status"] == "pending"
    reader = new_key("dl-reader", ["deadletters:read"])
    assert _api(stack, reader, "POST", f"/v1/dead-letters/{dl_id}/replay").status == 403


def _job_done(stack: ProcessStack, key: str, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = _api(stack, key, "GET", f"/v1/replay-jobs/{job_id}").json()
        return job if job["state"] in ("done", "failed") else None

    return eventually(done, timeout=120)


def test_two_jobs_over_one_filter_replay_each_dead_letter_once(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(f"dl-jobs-{uuid.uuid4().hex[:6]}")
    body = [_event(f"j-{i}", time="never") for i in range(30)]
    answer = _api(stack, key, "POST", "/v1/events", json_body=body)
    ids = {r["dead_letter_id"] for r in answer.json()["rejected"]}
    eventually(lambda: len(_list_all(stack, key, "reason=invalid_timestamp")) == 30)

    spec = {"reason": "invalid_timestamp"}
    jobs = [_api(stack, key, "POST", "/v1/dead-letters/replay", json_body=spec) for _ in range(2)]
    assert all(j.status == 202 for j in jobs)
    finished = [_job_done(stack, key, j.json()["job_id"]) for j in jobs]
    assert all(job["state"] == "done" for job in finished), finished
    assert sum(job["counts"]["still_invalid"] for job in finished) == 30
    assert {job["progress"] for job in finished} == {1.0}
    # still invalid: the door dead-lettered each again, nothing reached ingest.raw
    assert _replays_on_ingest_raw(stack, ids) == dict.fromkeys(ids, 0)
    originals = {d["dead_letter_id"]: d for d in _list_all(stack, key, "reason=invalid_timestamp")
                 if d["dead_letter_id"] in ids}  # fmt: skip
    assert {d["status"] for d in originals.values()} == {"replayed"}
    children = [d for d in _list_all(stack, key, "status=pending") if d["replay_of"] in ids]
    assert sorted(d["replay_of"] for d in children) == sorted(ids)  # exactly one each


def _list_all(stack: ProcessStack, key: str, query: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = _api(stack, key, "GET", f"/v1/dead-letters?{query}&limit=1000{cursor}").json()
        found += page["dead_letters"]
        if not page["next_cursor"]:
            return found
        cursor = f"&cursor={page['next_cursor']}"


TOO_STRICT_RULE = '''
"""Release 1 of the native rules, for the replay test: `data.units` over 99 is refused."""
from schemas import validators
from schemas.outcome import Rejected, ValidEvent, Violation

_current = validators.VALIDATORS["native"]


def _too_strict(raw, route):
    outcome = _current(raw, route)
    if isinstance(outcome, ValidEvent) and '"units":1000' in outcome.data_json.replace(" ", ""):
        why = Violation("units_too_large", "$.data.units", "units must be below 100")
        return Rejected((why,), outcome.event_id)
    return outcome


validators.VALIDATORS["native"] = _too_strict
'''


@pytest.fixture
def release_one(tmp_path: Path, kafka_bootstrap: str, database_url: str) -> Iterator[ProcessStack]:
    """A stack whose api and worker run a too-strict native rule (loaded by sitecustomize)."""
    rules = tmp_path / "release1"
    rules.mkdir()
    (rules / "sitecustomize.py").write_text(TOO_STRICT_RULE)
    settings = make_settings(kafka_bootstrap, database_url)
    ensure_topics(settings)
    stack = ProcessStack(settings, tmp_path / "logs")
    stack.log_dir.mkdir()
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": f"{rules}:{os.getcwd()}"}
    for role in ("api", "worker", "sink"):
        stack.start_role(role, env)
    try:
        stack.wait_ready(timeout=120)
        yield stack
    finally:
        stack.stop()


def test_the_user_loop_a_too_strict_rule_is_fixed_and_a_bulk_replay_recovers(
    release_one: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    """Release 1 refuses big `units`; release 2 (the real rules) is deployed; replay by code."""
    stack = release_one
    key = new_key("loop")
    big = [_event(f"big-{i}", data={"units": 1000}) for i in range(12)]
    answer = _api(stack, key, "POST", "/v1/events", json_body=[*big, {"type": "no-source"}])
    rejected = answer.json()["rejected"]
    assert {r["reasons"][0]["code"] for r in rejected} == {"units_too_large", "missing_field"}
    eventually(lambda: len(_list_all(stack, key, "status=pending")) == 13)

    for role in ("api", "worker"):  # deploy release 2: the same processes, without the rule
        stack.stop_role(role)
        stack.start_role(role)
    stack.wait_ready(timeout=120)

    job = _api(
        stack, key, "POST", "/v1/dead-letters/replay", json_body={"reason": "units_too_large"}
    )
    assert job.status == 202 and job.json()["total"] == 12, job.body
    finished = _job_done(stack, key, job.json()["job_id"])
    assert finished["state"] == "done" and finished["counts"]["replayed"] == 12, finished
    for i in range(12):
        assert _event_there(stack, key, f"big-{i}")["data"] == {"units": 1000}
    statuses = {d["reasons"][0]["code"]: d["status"] for d in _list_all(stack, key, "stage=door")}
    assert statuses == {"units_too_large": "replayed", "missing_field": "pending"}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_id, count(*) FROM events WHERE tenant = 'loop' GROUP BY event_id"
        ).fetchall()
    assert sorted(rows) == sorted((f"big-{i}", 1) for i in range(12))


FIX_TIME = """
import sys
path = sys.argv[1]
data = open(path, "rb").read()
open(path, "wb").write(data.replace(b"yesterday", b"2024-11-23T12:00:00Z"))
"""


def test_the_cli_lists_shows_edits_replays_and_discards(
    stack: ProcessStack, new_key: Callable[..., str], tmp_path: Path
) -> None:
    tenant = f"dl-cli-{uuid.uuid4().hex[:6]}"
    key = new_key(tenant)
    edited, later = f"cli-{uuid.uuid4().hex[:6]}", f"cli-{uuid.uuid4().hex[:6]}"
    raws = [json.dumps(_event(i, time="yesterday")).encode() for i in (edited, later)]
    json_type = {"Content-Type": "application/json"}
    a, b = (
        _rejected_id(_api(stack, key, "POST", "/v1/events", body=raw, headers=json_type))
        for raw in raws
    )
    c = _rejected_id(_api(stack, key, "POST", "/v1/events", json_body={"data": {}}))
    for dl_id in (a, b, c):
        _stored(stack, key, dl_id)
    (tmp_path / "fix.py").write_text(FIX_TIME)
    env = {**settings_env(stack.settings), "EDITOR": f"{sys.executable} {tmp_path / 'fix.py'}"}
    runner = CliRunner()

    def sluice(*args: str) -> Any:
        result = runner.invoke(main, ["replay", *args, "--tenant", tenant], env=env)
        assert result.exit_code == 0, result.output
        return result

    listed = sluice("list", "--reason", "invalid_timestamp", "--json").output
    assert {json.loads(line)["dead_letter_id"] for line in listed.splitlines()} == {a, b}
    assert sluice("show", a, "--raw").stdout_bytes == raws[0]

    outcome = json.loads(sluice("replay", a, "--edit").output)
    assert outcome["outcome"] == "replayed" and outcome["event_ids"] == [edited]
    assert _event_there(stack, key, edited)["time"].startswith("2024-11-23T12:00:00")

    dry = sluice("replay", "--reason", "invalid_timestamp", "--dry-run").output
    assert "would replay 0, still invalid 1, failed 0, skipped 0" in dry
    assert "discarded" in sluice("discard", c).output
    bulk = sluice("replay", "--reason", "invalid_timestamp").output
    assert "replayed 0, still invalid 1, failed 0, skipped 0" in bulk
    assert {d["dead_letter_id"]: d["status"] for d in _list_all(stack, key, "stage=door")
            if d["attempt"] == 1} == {a: "replayed", b: "replayed", c: "discarded"}  # fmt: skip


def test_a_replay_never_brings_back_an_event_deleted_after_the_rejection(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    """The delete removes the event's own dead letters (issue 5); one rejected under another
    id before the delete and patched to the deleted id is refused with 409."""
    key = new_key("dl-deleted")
    event_id, other_id = f"gone-{uuid.uuid4()}", f"other-{uuid.uuid4()}"
    assert _api(stack, key, "POST", "/v1/events", json_body=_event(event_id)).status == 202
    _event_there(stack, key, event_id)
    own = _rejected_id(_api(stack, key, "POST", "/v1/events",
                            json_body=_event(event_id, time="later")))  # fmt: skip
    other = _rejected_id(_api(stack, key, "POST", "/v1/events",
                              json_body=_event(other_id, time="later")))  # fmt: skip
    _stored(stack, key, own)
    _stored(stack, key, other)
    assert _api(stack, key, "DELETE", f"/v1/events/{event_id}").status == 202

    def deletion_recorded() -> bool:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT 1 FROM event_deletions WHERE tenant = 'dl-deleted' AND event_id = %s",
                (event_id,),
            ).fetchone()
        return row is not None

    assert eventually(deletion_recorded)
    patch = [{"op": "replace", "path": "/time", "value": "2024-11-23T11:00:00Z"},
             {"op": "replace", "path": "/id", "value": event_id}]  # fmt: skip
    headers = {"Content-Type": "application/json-patch+json"}
    for dl_id, status, code in ((own, 404, "not_found"), (other, 409, "event_deleted")):
        answer = _api(stack, key, "POST", f"/v1/dead-letters/{dl_id}/replay", json_body=patch,
                      headers=headers)  # fmt: skip
        assert answer.status == status and answer.json()["error"]["code"] == code, answer.body
    assert _stored(stack, key, other)["status"] == "pending"
    assert _api(stack, key, "GET", f"/v1/events/{event_id}").status == 404
    assert _replays_on_ingest_raw(stack, {own, other}) == {own: 0, other: 0}


def _produce_dead_letter(stack: ProcessStack, tenant: str, event_id: str) -> str:
    """A stream-stage dead letter of a valid event (its rule was fixed since), on events.dlq."""
    settings = stack.settings
    origin = Origin(tenant, "native", {}, "application/json", datetime.now(UTC))
    dead = build_dead_letter(
        raw=json.dumps(_event(event_id)).encode(), origin=origin, stage="stream",
        reasons=(Violation("processing_error", "$", "a bug, fixed since"),), event_id=event_id,
    )  # fmt: skip
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(f"{settings.topic_prefix}events.dlq", dead.value, dead.key,
                     partition=partition_for(dead.key, settings.partitions))  # fmt: skip
    assert producer.flush(10) == 0
    return dead.dead_letter_id


def test_replay_from_kafka_is_resumable(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    tenant = f"dl-fk-{uuid.uuid4().hex[:6]}"
    key = new_key(tenant)
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    args = ["replay", "--from-kafka", "--since", since, "--tenant", tenant]
    env = settings_env(stack.settings)

    def run() -> str:
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 0, result.output
        return str(result.output)

    first = _produce_dead_letter(stack, tenant, "fk-a")
    _stored(stack, key, first)
    assert "replayed 1, still invalid 0, failed 0, skipped 0" in run()
    assert _event_there(stack, key, "fk-a")
    assert _stored(stack, key, first)["status"] == "replayed"

    second = _produce_dead_letter(stack, tenant, "fk-b")
    _stored(stack, key, second)
    assert "replayed 1, still invalid 0, failed 0, skipped 0" in run()  # fk-a is not read again
    assert _event_there(stack, key, "fk-b")
    assert "replayed 0, still invalid 0, failed 0, skipped 0" in run()
    assert _replays_on_ingest_raw(stack, {first, second}) == {first: 1, second: 1}


def test_a_job_abandoned_by_its_process_is_resumed_by_a_lookup(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    tenant = f"dl-orphan-{uuid.uuid4().hex[:6]}"
    key = new_key(tenant)
    answer = _api(stack, key, "POST", "/v1/events",
                  json_body=[_event(f"o-{i}", time="soon") for i in range(4)])  # fmt: skip
    ids = {r["dead_letter_id"] for r in answer.json()["rejected"]}
    eventually(lambda: len(_list_all(stack, key, "status=pending")) == 4)
    job_id = str(uuid.uuid4())
    with psycopg.connect(database_url, autocommit=True) as conn:  # as a dead process left it
        conn.execute(
            "INSERT INTO replay_jobs (job_id, tenant, filter, state, total, heartbeat_at)"
            " VALUES (%s, %s, %s, 'running', 4, now() - interval '10 minutes')",
            (job_id, tenant, json.dumps({"reason": "invalid_timestamp", "status": "pending"})),
        )
    job = _job_done(stack, key, job_id)
    assert job["state"] == "done" and job["counts"]["still_invalid"] == 4, job
    children = [d for d in _list_all(stack, key, "status=pending") if d["replay_of"] in ids]
    assert len(children) == 4


def test_a_replay_does_not_overwrite_a_version_sent_after_the_rejection(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("dl-newer")
    event_id = f"fresh-{uuid.uuid4()}"
    dl_id = _rejected_id(_api(stack, key, "POST", "/v1/events",
                              json_body=_event(event_id, time="stale")))  # fmt: skip
    _stored(stack, key, dl_id)
    newer = _event(event_id, data={"units": 2})
    assert _api(stack, key, "POST", "/v1/events", json_body=newer).status == 202
    assert eventually(lambda: _event_there(stack, key, event_id)["data"] == {"units": 2})
    fixed = json.dumps(_event(event_id, data={"units": 1})).encode()
    answer = _api(stack, key, "POST", f"/v1/dead-letters/{dl_id}/replay", body=fixed,
                  headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status == 409 and answer.json()["error"]["code"] == "superseded", answer.body
    assert _stored(stack, key, dl_id)["status"] == "pending"
    assert _event_there(stack, key, event_id)["data"] == {"units": 2}
