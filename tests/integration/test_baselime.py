"""Baselime's Events API on the real pipeline: the seed's request, partial acceptance with
byte-identical dead letters, and every answer the seed lists."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from producer_api.families.baselime import internal_errors
from runtime.settings import Settings
from sluice.catalog_cli import create_dataset
from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

BAD_REQUEST = {"message": "Bad Request"}


@pytest.fixture
def tenant(database_url: str) -> tuple[str, str]:
    """A fresh tenant with a dataset `prod-logs`."""
    name = f"bl-{uuid.uuid4().hex[:10]}"
    assert create_dataset(Settings(database_url=database_url), name, "prod-logs")
    return name, "prod-logs"


def _post(stack: ProcessStack, key: str | None, path: str, body: bytes,
          method: str = "POST") -> Answer:  # fmt: skip
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    return call(method, f"{stack.base_url}/baselime{path}", body=body, headers=headers)


def _events(stack: ProcessStack, key: str, dataset: str) -> list[dict[str, Any]]:
    url = f"{stack.base_url}/v1/events?family=baselime&source={dataset}&limit=1000"
    answer = call("GET", url, headers={"X-API-Key": key})
    assert answer.status == 200, answer.body
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def _dead_letter(database_url: str, dead_letter_id: str) -> tuple[bytes, Any] | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT raw, reasons FROM dead_letters WHERE dead_letter_id = %s", (dead_letter_id,)
        ).fetchone()
    return None if row is None else (bytes(row[0]), row[1])


def test_the_seed_curl_request_is_accepted_and_queryable(
    stack: ProcessStack, new_key: Callable[..., str], tenant: tuple[str, str]
) -> None:
    key = new_key(tenant[0])
    body = b"""[
        {"key1":"value1","key2":"value2"},
        {"key3":"value3","key4":"value4"}
      ]"""
    answer = _post(stack, key, "/v1/prod-logs/checkout", body)
    assert (answer.status, answer.json()) == (202, {"message": "Request Accepted"})

    events = eventually(lambda: (e := _events(stack, key, "prod-logs")) and len(e) == 2 and e)
    assert sorted(json.dumps(e["data"], sort_keys=True) for e in events) == [
        '{"key1": "value1", "key2": "value2"}', '{"key3": "value3", "key4": "value4"}',
    ]  # fmt: skip
    assert {e["type"] for e in events} == {"checkout"}


def test_valid_events_are_ingested_and_failed_ones_listed_and_dead_lettered(
    stack: ProcessStack, new_key: Callable[..., str], tenant: tuple[str, str], database_url: str
) -> None:
    key = new_key(tenant[0])
    null_event = b'{ "user":  null,\n "n": 1 }'
    big_event = json.dumps({"blob": "x" * 33_000}).encode()
    bad_utf8 = b'{"s": "\xff"}'
    events = [b'{"ok": 1}', null_event, b'{"ok": {"deep": true}}', big_event, bad_utf8]
    body = b"[" + b",".join(events) + b"]"
    answer = _post(stack, key, "/v1/prod-logs/api", body)
    assert answer.status == 400
    reply = answer.json()
    assert reply["message"] == "Bad Request"
    assert reply["invalid"][:2] == [json.loads(null_event), json.loads(big_event)]
    assert [e["index"] for e in reply["errors"]] == [1, 3, 4]
    assert reply["errors"][1]["reasons"][0]["code"] == "event_too_large"

    for error, raw in zip(reply["errors"], (null_event, big_event, bad_utf8), strict=True):
        stored = eventually(lambda e=error: _dead_letter(database_url, e["dead_letter_id"]))
        assert stored[0] == raw
    events = eventually(lambda: (e := _events(stack, key, "prod-logs")) and len(e) == 2 and e)
    assert sorted(json.dumps(e["data"]) for e in events) == ['{"ok": 1}', '{"ok": {"deep": true}}']


def test_every_error_answer_of_the_seed(
    stack: ProcessStack, new_key: Callable[..., str], tenant: tuple[str, str]
) -> None:
    key = new_key(tenant[0])
    ok = b'[{"a": 1}]'
    assert _post(stack, None, "/v1/prod-logs/ns", ok).json() == {"message": "Unauthorised"}
    unknown_key = _post(stack, "abcdefgh." + "A" * 48, "/v1/prod-logs/ns", ok)
    assert (unknown_key.status, unknown_key.json()) == (401, {"message": "Unauthorised"})
    wrong_method = _post(stack, key, "/v1/prod-logs/ns", b"", method="PUT")
    assert (wrong_method.status, wrong_method.json()) == (405, {"message": "Method Not Allowed"})
    for path, body in (
        ("/v1/prod-logs", ok),  # missing namespace
        ("/v1/no-such-dataset/ns", ok),  # the dataset must exist
        ("/v1/prod-logs/ns", b""),  # empty body
        ("/v1/prod-logs/ns", b"[{not json"),  # not JSON
        ("/v1/prod-logs/ns", b'{"a": 1}'),  # not an array
    ):
        answer = _post(stack, key, path, body)
        assert (answer.status, answer.json()) == (400, BAD_REQUEST), path
    too_big = _post(stack, key, "/v1/prod-logs/ns", b"[" + b" " * (6 * 1024 * 1024) + b"]")
    assert (too_big.status, too_big.json()) == (413, {"message": "Request Entity Too Large"})


async def test_an_unexpected_failure_is_an_internal_error() -> None:
    async def broken(_request: web.Request) -> web.StreamResponse:
        raise RuntimeError("bug")

    response = await internal_errors(make_mocked_request("POST", "/baselime/v1/a/b"), broken)
    assert isinstance(response, web.Response) and response.status == 500
    assert response.body == b'{"message": "Internal Error"}'


def test_a_dead_letter_of_a_missing_dataset_replays_only_once_the_dataset_exists(
    stack: ProcessStack, new_key: Callable[..., str], tenant: tuple[str, str], database_url: str
) -> None:
    key, dataset = new_key(tenant[0]), f"later-{uuid.uuid4().hex[:6]}"
    refused = _post(stack, key, f"/v1/{dataset}/ns", b'[{"message": "m"}]')
    assert refused.status == 400

    def stored() -> str | None:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT dead_letter_id FROM dead_letters WHERE tenant = %s"
                " AND route->>'dataset' = %s",
                (tenant[0], dataset),
            ).fetchone()
        return None if row is None else str(row[0])

    dl_id = eventually(stored)
    replay = f"{stack.base_url}/v1/dead-letters/{dl_id}/replay"
    for dry in ("?dry_run=true", ""):
        early = call("POST", replay + dry, headers={"X-API-Key": key})
        assert early.status == 409 and early.json()["error"]["code"] == "not_in_catalog", early.body
    job = call("POST", f"{stack.base_url}/v1/dead-letters/replay",
               json_body={"family": "baselime"}, headers={"X-API-Key": key})  # fmt: skip
    assert job.status == 202, job.body

    def finished() -> dict[str, Any] | None:
        answer = call("GET", f"{stack.base_url}{job.json()['status_url']}",
                      headers={"X-API-Key": key})  # fmt: skip
        return answer.json() if answer.json()["state"] in ("done", "failed") else None

    ended = eventually(finished)
    assert ended["state"] == "done" and ended["counts"]["skipped"] >= 1, ended["error"]
    pending = call("GET", f"{stack.base_url}/v1/dead-letters/{dl_id}", headers={"X-API-Key": key})
    assert pending.json()["status"] == "pending"
    assert create_dataset(Settings(database_url=database_url), tenant[0], dataset)
    later = call("POST", replay, headers={"X-API-Key": key})
    assert later.status == 202 and later.json()["outcome"] == "replayed", later.body
    assert eventually(lambda: _events(stack, key, dataset))[0]["data"] == {"message": "m"}


def test_the_sdk_form_takes_the_namespace_from_its_header(
    stack: ProcessStack, new_key: Callable[..., str], tenant: tuple[str, str]
) -> None:
    """`@baselime/edge-logger` posts to `/v1/<dataset>` with `x-namespace`: the same events
    as the path form, the same refusals."""
    key, dataset = new_key(tenant[0]), tenant[1]
    headers = {"x-api-key": key, "x-namespace": "edge-ns", "Content-Type": "application/json"}
    body = json.dumps([{"message": "from the edge", "requestId": f"r-{uuid.uuid4().hex}"}])
    sent = call("POST", f"{stack.base_url}/baselime/v1/{dataset}", body=body.encode(),
                headers=headers)  # fmt: skip
    assert (sent.status, sent.json()) == (202, {"message": "Request Accepted"})
    stored = eventually(lambda: [e for e in _events(stack, key, dataset)
                                 if e["data"].get("message") == "from the edge"])  # fmt: skip
    assert stored[0]["data"]["requestId"] == json.loads(body)[0]["requestId"]
    assert "edge-ns" in json.dumps(stored[0])  # the namespace reached the stored event
    bare = {k: v for k, v in headers.items() if k != "x-namespace"}
    no_namespace = call("POST", f"{stack.base_url}/baselime/v1/{dataset}", body=body.encode(),
                        headers=bare)  # fmt: skip
    assert (no_namespace.status, no_namespace.json()) == (400, BAD_REQUEST)
