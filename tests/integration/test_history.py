"""Where is my event? Histories end to end on real Kafka and PostgreSQL.

Events go through the running stack: one is sent twice (replaced), one deleted, one
rejected and replayed corrected, one rejected and replayed by a job while still invalid.
Each history must list its steps in order with the request ids, receipts, dead-letter ids
and job ids that the API handed out; another tenant's key gets 404, and a key without
`deadletters:read` sees no dead-letter detail. The CLI reads the same histories.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from runtime.settings import Settings, settings_env
from sinks.history import prune_history
from sluice.cli import main
from sluice.keys_cli import create_key
from sluice.stack import ProcessStack
from tests.conftest import TEST_SECRET, eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration


def _event(event_id: str, marker: str, **fields: Any) -> dict[str, Any]:
    return {"id": event_id, "type": "usage", "source": "/history-tests",
            "time": "2024-11-23T10:00:00Z", "data": {"marker": marker}, **fields}  # fmt: skip


def _api(stack: ProcessStack, key: str, method: str, path: str, **kw: Any) -> Answer:
    headers = {"X-API-Key": key, **kw.pop("headers", {})}
    return call(method, f"{stack.base_url}{path}", headers=headers, **kw)


@dataclass
class Story:
    """What the API answered while the events were sent, replaced, deleted and replayed."""

    stack: ProcessStack
    tenant: str
    key: str
    replaced_id: str
    first_request: str
    second_request: str
    deleted_id: str
    deleted_request: str
    receipt: str
    healed_id: str
    healed_request: str
    healed_dead_letter: str
    job_event_id: str
    job_dead_letter: str
    job_id: str

    def history(self, event_id: str, key: str | None = None) -> Answer:
        return _api(self.stack, key or self.key, "GET", f"/v1/events/{event_id}/history")


def _accepted(stack: ProcessStack, key: str, body: Any) -> str:
    answer = _api(stack, key, "POST", "/v1/events", json_body=body)
    assert answer.status == 202, answer.body
    return str(answer.json()["request_id"])


def _rejected(stack: ProcessStack, key: str, body: Any) -> tuple[str, str]:
    answer = _api(stack, key, "POST", "/v1/events", json_body=body)
    assert answer.status == 400, answer.body
    (rejected,) = answer.json()["rejected"]
    return str(answer.json()["request_id"]), str(rejected["dead_letter_id"])


def _pending(stack: ProcessStack, key: str, dead_letter_id: str) -> None:
    path = f"/v1/dead-letters/{dead_letter_id}"
    eventually(lambda: _api(stack, key, "GET", path).status == 200)


@pytest.fixture(scope="module")
def story(stack: ProcessStack, new_key: Callable[..., str]) -> Story:
    suffix = uuid.uuid4().hex[:8]
    tenant = f"history-{suffix}"
    key = new_key(tenant)
    replaced_id, deleted_id = f"twice-{suffix}", f"gone-{suffix}"
    healed_id, job_event_id = f"healed-{suffix}", f"stubborn-{suffix}"

    first = _accepted(stack, key, _event(replaced_id, "v1"))
    eventually(lambda: _api(stack, key, "GET", f"/v1/events/{replaced_id}").status == 200)
    second = _accepted(stack, key, _event(replaced_id, "v2"))
    eventually(lambda: _api(stack, key, "GET", f"/v1/events/{replaced_id}").json()["data"]
               == {"marker": "v2"})  # fmt: skip

    deleted_request = _accepted(stack, key, _event(deleted_id, "doomed"))
    eventually(lambda: _api(stack, key, "GET", f"/v1/events/{deleted_id}").status == 200)
    deletion = _api(stack, key, "DELETE", f"/v1/events/{deleted_id}")
    assert deletion.status == 202, deletion.body
    receipt = deletion.json()["deletion_id"]
    eventually(lambda: _api(stack, key, "GET", f"/v1/deletions/{receipt}").json()["status"]
               == "finished")  # fmt: skip

    healed_request, healed_letter = _rejected(stack, key, _event(healed_id, "x", time="later"))
    _pending(stack, key, healed_letter)
    fix = [{"op": "replace", "path": "/time", "value": "2024-11-23T11:00:00Z"}]
    replay = _api(stack, key, "POST", f"/v1/dead-letters/{healed_letter}/replay", json_body=fix,
                  headers={"Content-Type": "application/json-patch+json"})  # fmt: skip
    assert replay.status == 202, replay.body
    eventually(lambda: _api(stack, key, "GET", f"/v1/events/{healed_id}").status == 200)

    marker = f"stubborn-marker-{suffix}"
    _request, job_letter = _rejected(stack, key, _event(job_event_id, marker, time="never"))
    _pending(stack, key, job_letter)
    job = _api(stack, key, "POST", "/v1/dead-letters/replay", json_body={"q": marker})
    assert job.status == 202 and job.json()["total"] == 1, job.body
    job_id = job.json()["job_id"]
    eventually(lambda: _api(stack, key, "GET", f"/v1/replay-jobs/{job_id}").json()["state"]
               == "done")  # fmt: skip

    return Story(
        stack=stack, tenant=tenant, key=key, replaced_id=replaced_id, first_request=first,
        second_request=second, deleted_id=deleted_id, deleted_request=deleted_request,
        receipt=receipt, healed_id=healed_id, healed_request=healed_request,
        healed_dead_letter=healed_letter, job_event_id=job_event_id,
        job_dead_letter=job_letter, job_id=job_id,
    )  # fmt: skip


def _kinds(history: dict[str, Any]) -> list[str]:
    return [step["step"] for step in history["steps"]]


def _settled(story: Story, event_id: str, kinds: list[str]) -> dict[str, Any]:
    """The history once the sink has stored every step expected of it."""

    def found() -> dict[str, Any] | None:
        answer = story.history(event_id)
        if answer.status != 200:
            return None
        history: dict[str, Any] = answer.json()
        return history if _kinds(history) == kinds else None

    try:
        return eventually(found, timeout=30)
    except AssertionError:
        raise AssertionError(f"{event_id}: {story.history(event_id).body!r}") from None


def test_a_replaced_event_shows_both_versions_and_who_replaced_it(story: Story) -> None:
    history = _settled(story, story.replaced_id,
                       ["accepted", "stored", "accepted", "stored", "replaced"])  # fmt: skip
    first, stored1, second, stored2, replaced = history["steps"]
    assert (first["request_id"], second["request_id"]) == (story.first_request,
                                                           story.second_request)  # fmt: skip
    assert first["partition"] == second["partition"]  # one identity, one partition
    assert second["offset"] > first["offset"]
    assert stored1["version"] == first["offset"] << 20 | first["index"]
    assert history["current_version"] == stored2["version"] > stored1["version"]
    assert replaced["version"] == stored1["version"]
    assert replaced["by_request_id"] == story.second_request
    assert replaced["by_version"] == stored2["version"]
    times = [step["at"] for step in history["steps"]]
    assert times == sorted(times)


def test_a_deleted_event_names_its_receipt(story: Story) -> None:
    history = _settled(story, story.deleted_id, ["accepted", "stored", "deleted"])
    accepted, stored, deleted = history["steps"]
    assert accepted["request_id"] == story.deleted_request
    assert deleted["deletion_id"] == story.receipt
    assert deleted["version"] > stored["version"]
    assert history["current_version"] is None


def test_a_rejected_then_corrected_event_shows_its_dead_letter_and_replay(story: Story) -> None:
    history = _settled(story, story.healed_id, ["rejected", "replayed", "accepted", "stored"])
    rejected, replayed, accepted, _stored = history["steps"]
    assert rejected["stage"] == "door" and rejected["request_id"] == story.healed_request
    assert rejected["dead_letter_id"] == story.healed_dead_letter
    assert [r["code"] for r in rejected["reasons"]] == ["invalid_timestamp"]
    assert replayed["dead_letter_id"] == story.healed_dead_letter
    assert replayed["job_id"] is None  # one replay by id, not a job
    assert replayed["request_id"] == accepted["request_id"] != story.healed_request


def test_a_job_replay_that_is_still_invalid_names_the_job(story: Story) -> None:
    history = _settled(story, story.job_event_id, ["rejected", "replayed", "rejected"])
    original, replayed, again = history["steps"]
    assert original["dead_letter_id"] == story.job_dead_letter
    assert replayed["dead_letter_id"] == story.job_dead_letter
    assert replayed["job_id"] == story.job_id
    assert replayed["outcome"] == "still_invalid"
    assert replayed["new_dead_letter_ids"] == [again["dead_letter_id"]]
    assert again["attempt"] == 2 and again["status"] == "pending"


def test_a_request_lists_the_history_of_each_event_it_carried(story: Story) -> None:
    _settled(story, story.replaced_id, ["accepted", "stored", "accepted", "stored", "replaced"])
    answer = _api(story.stack, story.key, "GET", f"/v1/requests/{story.first_request}")
    assert answer.status == 200, answer.body
    (carried,) = answer.json()["events"]
    assert (carried["family"], carried["event_id"]) == ("native", story.replaced_id)
    assert carried["steps"] == story.history(story.replaced_id).json()["steps"]

    rejected = _api(story.stack, story.key, "GET", f"/v1/requests/{story.healed_request}")
    assert [e["event_id"] for e in rejected.json()["events"]] == [story.healed_id]
    unknown = _api(story.stack, story.key, "GET", f"/v1/requests/{uuid.uuid4()}")
    assert unknown.status == 404


def test_another_tenants_key_finds_nothing(story: Story, new_key: Callable[..., str]) -> None:
    _settled(story, story.healed_id, ["rejected", "replayed", "accepted", "stored"])
    other = new_key(f"history-other-{uuid.uuid4().hex[:6]}")
    for path in (f"/v1/events/{story.healed_id}/history", f"/v1/requests/{story.first_request}",
                 f"/v1/events/{story.replaced_id}/history"):  # fmt: skip
        answer = _api(story.stack, other, "GET", path)
        assert answer.status == 404, (path, answer.body)
        nowhere = _api(story.stack, other, "GET", path.replace(story.tenant, "x") + "-absent")
        assert answer.json() == nowhere.json() or nowhere.status == 404


def test_without_deadletters_read_there_is_no_dead_letter_detail(
    story: Story, new_key: Callable[..., str]
) -> None:
    full = _settled(story, story.healed_id, ["rejected", "replayed", "accepted", "stored"])
    reader = new_key(story.tenant, ["events:read"])
    answer = story.history(story.healed_id, key=reader)
    assert answer.status == 200, answer.body
    text = answer.body.decode()
    assert story.healed_dead_letter not in text and "invalid_timestamp" not in text
    assert _kinds(answer.json()) == _kinds(full)  # the steps themselves are events:read's
    writer = new_key(story.tenant, ["events:write"])
    assert story.history(story.healed_id, key=writer).status == 403


def test_the_cli_shows_the_same_histories(story: Story) -> None:
    full = _settled(story, story.deleted_id, ["accepted", "stored", "deleted"])
    env = settings_env(story.stack.settings)
    runner = CliRunner()
    shown = runner.invoke(main, ["events", "history", story.deleted_id, "--tenant", story.tenant,
                                 "--json"], env=env)  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert [json.loads(line) for line in shown.output.splitlines()] == full["steps"]
    table = runner.invoke(main, ["events", "history", story.deleted_id, "--tenant",
                                 story.tenant], env=env)  # fmt: skip
    assert table.exit_code == 0, table.output
    header, *rows = table.output.splitlines()
    assert header.split()[:2] == ["STEP", "AT"]
    assert [row.split()[0] for row in rows] == ["accepted", "stored", "deleted"]
    assert story.receipt in rows[2] and "ago" in rows[2]

    request = runner.invoke(main, ["requests", "show", story.first_request, "--tenant",
                                   story.tenant, "--json"], env=env)  # fmt: skip
    assert request.exit_code == 0, request.output
    lines = [json.loads(line) for line in request.output.splitlines()]
    assert {line["event_id"] for line in lines} == {story.replaced_id}
    assert [line["step"] for line in lines] == _kinds(story.history(story.replaced_id).json())
    other = runner.invoke(main, ["events", "history", story.deleted_id, "--tenant",
                                 "history-nobody"], env=env)  # fmt: skip
    assert other.exit_code != 0 and "nothing is recorded" in other.output


def test_cli_listings_have_headers_json_and_escaped_labels(story: Story) -> None:
    settings = Settings(database_url=story.stack.settings.database_url, key_secret=TEST_SECRET)
    evil = "ops\nsk_forged  acme  active\x1b[2K"
    create_key(settings, story.tenant, ["events:read"], evil)
    env = settings_env(story.stack.settings)
    runner = CliRunner()
    keys = runner.invoke(main, ["keys", "list", "--tenant", story.tenant], env=env)
    assert keys.exit_code == 0, keys.output
    header, *rows = keys.output.splitlines()
    assert header.split() == [
        "PREFIX", "TENANT", "STATE", "SCOPES", "CREATED", "EXPIRES", "SECRET", "LABEL"
    ]  # fmt: skip
    forged = [row for row in rows if "sk_forged" in row]
    assert len(forged) == 1 and "ops\\nsk_forged" in forged[0] and "\\x1b[2K" in forged[0]
    assert "\x1b" not in keys.output
    assert all(row.index(story.tenant) == header.index("TENANT") for row in rows)
    listed = runner.invoke(main, ["keys", "list", "--tenant", story.tenant, "--json"], env=env)
    labels = [json.loads(line)["label"] for line in listed.output.splitlines()]
    assert evil in labels and len(labels) == len(rows)

    letters = runner.invoke(main, ["replay", "list", "--tenant", story.tenant, "--json"], env=env)
    assert letters.exit_code == 0, letters.output
    found = {json.loads(line)["dead_letter_id"] for line in letters.output.splitlines()}
    assert {story.healed_dead_letter, story.job_dead_letter} <= found
    table = runner.invoke(main, ["replay", "list", "--tenant", story.tenant], env=env).output
    assert table.splitlines()[0].split()[:3] == ["ID", "RECEIVED", "FAMILY"]
    assert len(table.splitlines()) == len(found) + 1 and "ago)" in table


def test_the_sink_prunes_history_past_its_retention(story: Story) -> None:
    _settled(story, story.replaced_id, ["accepted", "stored", "accepted", "stored", "replaced"])
    old = f"history-old-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(story.stack.settings.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ingest_envelopes (tenant, family, kafka_partition, envelope_offset,"
            " request_id, received_at, event_ids, stored_at)"
            " VALUES (%s, 'native', 0, 1, 'r-old', now(), '{a}', now() - interval '30 days')",
            (old,),
        )
        conn.execute(
            "INSERT INTO event_history (tenant, family, event_id, version, received_at,"
            " stored_at, left_at) VALUES (%s, 'native', 'a', 1, now(), now(),"
            " now() - interval '30 days')",
            (old,),
        )
        assert prune_history(conn, 7 * 86400, 1000) >= 2
        for table in ("ingest_envelopes", "event_history"):
            left = conn.execute(f"SELECT count(*) FROM {table} WHERE tenant = %s", (old,))
            assert left.fetchone() == (0,)
    kept = story.history(story.replaced_id).json()
    assert [s["request_id"] for s in kept["steps"] if s["step"] == "accepted"] == [
        story.first_request,
        story.second_request,
    ]
