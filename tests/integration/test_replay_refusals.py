"""A replay's 409 and 422 end to end, on real Kafka and PostgreSQL: a dead letter another
replayer holds is `replay_in_progress` (and replays once the holder's claim expires), and
one whose family this version cannot validate is `cannot_validate`, left pending. (503
while Kafka is down: tests/integration/test_kafka_outage.py.)"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration


def _api(stack: ProcessStack, key: str, method: str, path: str, **kw: Any) -> Answer:
    return call(method, f"{stack.base_url}{path}", headers={"X-API-Key": key}, **kw)


def _pending_dead_letter(stack: ProcessStack, key: str) -> str:
    """A native event rejected at the door (its time is not a time), once stored."""
    event = {"id": f"e-{uuid.uuid4()}", "type": "usage", "source": "/refusals",
             "time": "not a time", "data": {}}  # fmt: skip
    answer = _api(stack, key, "POST", "/v1/events", json_body=event)
    assert answer.status == 400, answer.body
    (rejected,) = answer.json()["rejected"]
    dead_letter_id = str(rejected["dead_letter_id"])
    eventually(lambda: _api(stack, key, "GET", f"/v1/dead-letters/{dead_letter_id}").status == 200)
    return dead_letter_id


def _status(stack: ProcessStack, key: str, dead_letter_id: str) -> str:
    return str(_api(stack, key, "GET", f"/v1/dead-letters/{dead_letter_id}").json()["status"])


def _code(answer: Answer) -> str:
    return str(answer.json()["error"]["code"])


def test_a_dead_letter_another_replayer_holds_is_409_until_its_claim_expires(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    key = new_key("replay-claimed")
    held = _pending_dead_letter(stack, key)
    with psycopg.connect(database_url) as conn:  # what a running replay elsewhere holds
        conn.execute(
            "UPDATE dead_letters SET claimed_by = 'another-api',"
            " claimed_until = now() + interval '1 hour' WHERE dead_letter_id = %s",
            (held,),
        )
    refused = _api(stack, key, "POST", f"/v1/dead-letters/{held}/replay",
                   json_body={"id": "fixed", "type": "usage", "source": "/refusals",
                              "time": "2024-11-23T10:00:00Z", "data": {}})  # fmt: skip
    assert refused.status == 409 and _code(refused) == "replay_in_progress", refused.body
    assert _status(stack, key, held) == "pending"

    with psycopg.connect(database_url) as conn:  # its holder died: the claim runs out
        conn.execute(
            "UPDATE dead_letters SET claimed_until = now() - interval '1 second'"
            " WHERE dead_letter_id = %s",
            (held,),
        )
    fixed = {"id": f"fixed-{uuid.uuid4()}", "type": "usage", "source": "/refusals",
             "time": "2024-11-23T10:00:00Z", "data": {}}  # fmt: skip
    replayed = _api(stack, key, "POST", f"/v1/dead-letters/{held}/replay", json_body=fixed)
    assert replayed.status == 202, replayed.body
    assert _status(stack, key, held) == "replayed"
    again = _api(stack, key, "POST", f"/v1/dead-letters/{held}/replay", json_body=fixed)
    assert again.status == 409 and _code(again) == "not_pending", again.body


def test_a_dead_letter_of_a_family_this_version_cannot_validate_is_422_and_stays_pending(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    """A dead letter written by another Sluice version, of a family this one does not
    know: the replay cannot validate it, says so, and leaves it pending for a version
    that can."""
    key = new_key("replay-unknown-family")
    dead_letter_id = _pending_dead_letter(stack, key)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE dead_letters SET family = 'from-a-newer-version' WHERE dead_letter_id = %s",
            (dead_letter_id,),
        )
    for query in ("?dry_run=true", ""):
        answer = _api(stack, key, "POST", f"/v1/dead-letters/{dead_letter_id}/replay{query}")
        assert answer.status == 422 and _code(answer) == "cannot_validate", (query, answer.body)
        assert "from-a-newer-version" in answer.json()["error"]["message"]
    assert _status(stack, key, dead_letter_id) == "pending"
