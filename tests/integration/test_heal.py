"""Dead letters that heal (issue 17 part 3), on real Kafka and PostgreSQL: the user loop.

A tenant registers a data contract with confluent-kafka's own registry client; events that
break it are dead-lettered at the door and in the stream; a corrected, compatible version's
registration answers `would_heal`; `POST /v1/dead-letters/heal` (dry, then for real) replays
exactly the dead letters the new version passes, each once, and refreshes the reasons of the
rest; a second heal replays nothing; `sluice replay heal` does the same from a terminal."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from confluent_kafka.schema_registry import Schema

from runtime.settings import settings_env
from sluice.cli import main
from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call
from tests.integration.test_contracts import (
    REGISTRY_TYPE,
    SUBJECT,
    _event,
    _post,
    _produce_raw,
    _refused_at_door,
    _registry,
    _schema,
    stream_refuses,
)
from tests.integration.test_dead_letters import _replays_on_ingest_raw

pytestmark = pytest.mark.integration

SCOPES = ["events:write", "events:read", "deadletters:read", "deadletters:replay",
          "schemas:read", "schemas:write"]  # fmt: skip


def _heal(stack: ProcessStack, key: str, body: Any) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return call("POST", f"{stack.base_url}/v1/dead-letters/heal", body=raw,
                headers={"X-API-Key": key, "Content-Type": "application/json"})  # fmt: skip


def _job_done(stack: ProcessStack, key: str, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = call("GET", f"{stack.base_url}/v1/replay-jobs/{job_id}",
                   headers={"X-API-Key": key}).json()  # fmt: skip
        assert job["state"] != "failed", job
        return job if job["state"] == "done" else None

    return eventually(done)


def _dead_letters(database_url: str, tenant: str) -> dict[str, tuple[str, Any]]:
    """event id → (status, reasons) of the tenant's first-attempt dead letters."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_id, status, reasons FROM dead_letters WHERE tenant = %s AND attempt = 1",
            (tenant,),
        ).fetchall()
    return {str(e): (str(s), r) for e, s, r in rows}


def _stored_ids(database_url: str, tenant: str) -> dict[str, int | None]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_id, schema_id FROM events WHERE tenant = %s", (tenant,)
        ).fetchall()
    return {str(e): s for e, s in rows}


def _wait_until_enforced(stack: ProcessStack, database_url: str, probe: str, key: str) -> None:
    """Until the door and the stream both refuse a probe tenant's events by its contract."""
    eventually(lambda: _refused_at_door(stack, key, {"units": 500}), timeout=15)

    stream_refuses(stack, database_url, probe, {"units": 500, "plan": "pro"})


def _register(stack: ProcessStack, key: str, schema: str) -> dict[str, Any]:
    answer = call("POST", f"{stack.base_url}/schema-registry/subjects/{SUBJECT}/versions",
                  body=json.dumps({"schemaType": "JSON", "schema": schema}).encode(),
                  headers={"X-API-Key": key, "Content-Type": REGISTRY_TYPE})  # fmt: skip
    assert answer.status == 200, answer.body
    body: dict[str, Any] = answer.json()
    return body


def test_a_corrected_contract_heals_exactly_the_dead_letters_it_passes(
    stack: ProcessStack, database_url: str, new_key: Callable[..., str]
) -> None:
    tenant, other, probe = (f"heal-{uuid.uuid4().hex[:8]}" for _ in range(3))
    key, other_key, probe_key = (new_key(t, SCOPES) for t in (tenant, other, probe))
    first = _registry(stack, key).register_schema(SUBJECT, Schema(_schema(100), "JSON"))
    for later in (other_key, probe_key):  # the probe tenant's last: seen, so are the others
        _registry(stack, later).register_schema(SUBJECT, Schema(_schema(100), "JSON"))
    _wait_until_enforced(stack, database_url, probe, probe_key)

    fixable = [f"fix-{i}" for i in range(3)]
    answer = _post(stack, key, [
        *(_event(i, {"units": 500, "plan": "pro"}) for i in fixable),
        _event("too-big", {"units": 5000, "plan": "pro"}),
        _event("bad-plan", {"units": 5, "plan": "gold"}),
    ])  # fmt: skip
    assert answer.status == 400 and len(answer.json()["rejected"]) == 5
    assert _post(stack, other_key, [_event("theirs", {"units": 500, "plan": "pro"})]).status == 400
    _produce_raw(stack, tenant, "raw-fix", _event("raw-fix", {"units": 500, "plan": "free"}))
    fixable.append("raw-fix")
    everything = {*fixable, "too-big", "bad-plan"}
    eventually(lambda: set(_dead_letters(database_url, tenant)) == everything or None)
    eventually(lambda: "theirs" in _dead_letters(database_url, other) or None)
    assert _dead_letters(database_url, tenant)["raw-fix"][1][0]["message"].endswith(
        f"({SUBJECT} version 1, schema {first})"
    )

    # a corrected, compatible version (BACKWARD, the default): registering it says what heals
    registered = _register(stack, key, _schema(1000))
    second = registered["id"]
    assert registered["version"] == 2 and registered["would_heal"] == len(fixable)

    dry = _heal(stack, key, {"subject": SUBJECT, "dry_run": True})
    assert dry.status == 202, dry.body
    assert dry.json()["version"] == 2 and dry.json()["total"] == len(everything)
    counts = _job_done(stack, key, dry.json()["job_id"])["counts"]
    assert (counts["replayed"], counts["still_invalid"]) == (len(fixable), 2)
    assert {s for s, _r in _dead_letters(database_url, tenant).values()} == {"pending"}
    assert not _stored_ids(database_url, tenant)

    healed = _heal(stack, key, {"subject": SUBJECT})
    assert healed.status == 202, healed.body
    job = _job_done(stack, key, healed.json()["job_id"])
    assert job["kind"] == "heal"
    assert (job["counts"]["replayed"], job["counts"]["still_invalid"]) == (len(fixable), 2)
    stored = eventually(lambda: _stored_ids(database_url, tenant) if len(
        _stored_ids(database_url, tenant)) == len(fixable) else None)  # fmt: skip
    assert stored == dict.fromkeys(fixable, second)
    after = _dead_letters(database_url, tenant)
    assert {i for i, (s, _r) in after.items() if s == "replayed"} == set(fixable)
    assert after["too-big"][0] == after["bad-plan"][0] == "pending"
    refreshed = after["too-big"][1]
    assert [r["path"] for r in refreshed] == ["/units"]
    assert refreshed[0]["message"].endswith(f"({SUBJECT} version 2, schema {second})")
    assert _dead_letters(database_url, other)["theirs"][0] == "pending"  # not this tenant's

    # a second heal replays nothing, and nothing was replayed twice
    again = _heal(stack, key, {"subject": SUBJECT})
    counts = _job_done(stack, key, again.json()["job_id"])["counts"]
    assert (counts["replayed"], counts["still_invalid"]) == (0, 2)
    with psycopg.connect(database_url) as conn:
        ids = [str(r[0]) for r in conn.execute(
            "SELECT dead_letter_id FROM dead_letters WHERE tenant = %s AND status = 'replayed'",
            (tenant,)).fetchall()]  # fmt: skip
    assert set(_replays_on_ingest_raw(stack, set(ids)).values()) == {1}

    # the terminal: a third version passes one more; dry, then for real
    third = _register(stack, key, _schema(10_000))["id"]
    env = settings_env(stack.settings)

    def sluice(*args: str) -> str:
        result = CliRunner().invoke(main, ["replay", "heal", SUBJECT, "--tenant", tenant, *args],
                                    env=env)  # fmt: skip
        assert result.exit_code == 0, result.output
        return result.output

    assert "would heal 1, still invalid 1, cannot validate 0" in sluice("--dry-run")
    assert "healed 1, still invalid 1 (reasons refreshed)" in sluice()

    def big_stored() -> dict[str, int | None] | None:
        stored = _stored_ids(database_url, tenant)
        return stored if "too-big" in stored else None

    assert eventually(big_stored)["too-big"] == third

    # a replay by id is checked against the contract in force too: still invalid at once
    with psycopg.connect(database_url) as conn:
        (bad_plan,) = conn.execute(
            "SELECT dead_letter_id FROM dead_letters WHERE tenant = %s AND event_id = 'bad-plan'"
            " AND attempt = 1", (tenant,)).fetchone() or (None,)  # fmt: skip
    replayed = call("POST", f"{stack.base_url}/v1/dead-letters/{bad_plan}/replay",
                    headers={"X-API-Key": key})  # fmt: skip
    assert replayed.status == 200 and replayed.json()["outcome"] == "still_invalid", replayed.body
    assert {r["code"] for r in replayed.json()["reasons"]} == {"schema_violation"}


def test_heal_refuses_bad_input_clearly(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    tenant = f"heal-{uuid.uuid4().hex[:8]}"
    key = new_key(tenant, SCOPES)
    cases: list[tuple[Any, int, str]] = [
        (b"{nope", 400, "bad_request"),
        ([SUBJECT], 400, "bad_request"),
        ({}, 400, "bad_request"),
        ({"subject": SUBJECT, "dry_run": "yes"}, 400, "bad_request"),
        ({"subject": SUBJECT, "extra": 1}, 400, "bad_request"),
        ({"subject": "events-value"}, 400, "not_a_contract"),
        ({"subject": "native.never.registered"}, 404, "no_such_subject"),
    ]
    for body, status, code in cases:
        answer = _heal(stack, key, body)
        assert (answer.status, answer.json()["error"]["code"]) == (status, code), (body, answer)
    # another tenant's subject is as absent as one never registered
    owner = new_key(f"heal-{uuid.uuid4().hex[:8]}", SCOPES)
    _registry(stack, owner).register_schema("native.theirs", Schema(_schema(1), "JSON"))
    assert _heal(stack, key, {"subject": "native.theirs"}).status == 404
    reader = new_key(tenant, ["deadletters:read"])
    assert _heal(stack, reader, {"subject": SUBJECT}).status == 403
