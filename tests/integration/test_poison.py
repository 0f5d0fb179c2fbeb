"""The attack of issue 15 against a running stack: one tenant's request of events the compiled
door path once accepted and the stream refused (a lone surrogate in `data`, nesting a
thousand levels deep) is now refused at the door, each event a dead letter byte for byte,
and another tenant's event sent right after is stored as usual."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import call

pytestmark = pytest.mark.integration


def _raw(event_id: str, data: str) -> str:
    return (f'{{"id":"{event_id}","type":"t","source":"s","time":"2024-11-23T10:00:00Z",'
            f'"data":{data}}}')  # fmt: skip


def _dead_letters(database_url: str, tenant: str) -> dict[str, tuple[bytes, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT dead_letter_id::text, raw, reasons FROM dead_letters WHERE tenant = %s",
            (tenant,),
        ).fetchall()
    return {row[0]: (bytes(row[1]), row[2]) for row in rows}


def _post(stack: ProcessStack, key: str, body: bytes) -> Any:
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    return call("POST", f"{stack.base_url}/v1/events", body=body, headers=headers, timeout=60)


def test_a_poison_request_is_refused_at_the_door_and_others_flow(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    poison, other = f"poison-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    poison_key = new_key(poison)
    surrogates = ("[" + ",".join(_raw(f"s-{i}", '{"s":"\\ud800"}') for i in range(4400))
                  + "]").encode()  # fmt: skip
    refused = _post(stack, poison_key, surrogates)
    assert refused.status == 400, refused.body[:300]
    (whole,) = refused.json()["rejected"]  # msgspec cannot split it: one dead letter
    assert [r["code"] for r in whole["reasons"]] == ["unsplittable_body"]

    deep = '{"a":' * 100 + "1" + "}" * 100
    raws = [_raw(f"d-{i}", deep) for i in range(20)] + [_raw("fine", '{"n":1}')]
    answer = _post(stack, poison_key, ("[" + ",".join(raws) + "]").encode())
    assert answer.status == 202, answer.body[:300]
    rejected = answer.json()["rejected"]
    assert [tuple(c["code"] for c in r["reasons"]) for r in rejected] == [("too_deep",)] * 20

    deeper = b"[" + _raw("x", '{"a":' * 5000 + "1" + "}" * 5000).encode() + b"]"
    too_deep_to_split = _post(stack, poison_key, deeper)
    assert too_deep_to_split.status == 400, too_deep_to_split.body[:300]
    assert too_deep_to_split.json()["rejected"][0]["reasons"][0]["code"] == "unsplittable_body"

    key = new_key(other)
    event_id = f"after-{uuid.uuid4()}"
    assert _post(stack, key, _raw(event_id, '{"n":1}').encode()).status == 202
    url = f"{stack.base_url}/v1/events/{event_id}"
    found = eventually(lambda: call("GET", url, headers={"X-API-Key": key}).status == 200, 30)
    assert found

    letters = [whole["dead_letter_id"]] + [r["dead_letter_id"] for r in rejected]
    stored = eventually(lambda: (d := _dead_letters(database_url, poison)) and
                        set(letters) <= set(d) and d, timeout=60)  # fmt: skip
    assert stored[letters[0]][0] == surrogates
    assert stored[letters[5]][0] == raws[4].encode()
    assert stored[letters[5]][1][0]["code"] == "too_deep"
