"""Text no route can use answers 400, never 500: NUL and lone surrogates in paths, query
strings and cursors, timestamps PostgreSQL cannot hold (issue 15's list)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest

from producer_api.families.dakkio_query import MAX_OFFSET
from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration


EDGES = [
    ("GET", "/v1/events/a%00b"),
    ("GET", "/v1/events/%ED%A0%80"),
    ("DELETE", "/v1/events/a%00b"),
    ("GET", "/v1/events?type=a%00"),
    ("GET", "/v1/events?source=%ED%A0%80"),
    ("GET", "/v1/events?q=%00"),
    ("GET", "/v1/events?cursor=%00"),
    ("GET", "/v1/dead-letters/a%00b"),
    ("GET", "/v1/dead-letters/%ED%A0%80"),
    ("GET", "/v1/dead-letters?reason=%00"),
    ("GET", "/v1/dead-letters?family=%ED%A0%80"),
    ("GET", "/v1/deletions/a%00b"),
    ("GET", "/v1/replay-jobs/a%00b"),
    ("GET", f"/dakkio/api/data?bucketId={'5' * 24}&startTime=0001-01-01T00:00:00%2B23:59"),
]


@pytest.mark.parametrize(("method", "path"), EDGES)
def test_edge_text_answers_4xx_not_500(
    stack: ProcessStack, new_key: Callable[..., str], method: str, path: str
) -> None:
    key = new_key("edges")
    answer = call(method, stack.base_url + path, headers={"X-API-Key": key})
    assert answer.status < 500, (answer.status, answer.body[:300])


def test_flags_are_strict_raw_downloads_are_not_sniffed_and_405_says_allow(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("edges")
    headers = {"X-API-Key": key}
    bad = {"id": f"edge-{uuid.uuid4().hex}", "type": "t", "source": "s", "time": "nope",
           "data": {"html": "<script>alert(1)</script>"}}  # fmt: skip
    sent = call("POST", f"{stack.base_url}/v1/events", json_body=[bad], headers=headers)
    assert sent.status == 400, sent.body
    dl_id = sent.json()["rejected"][0]["dead_letter_id"]

    def raw() -> Answer | None:
        answer = call("GET", f"{stack.base_url}/v1/dead-letters/{dl_id}",
                      headers={**headers, "Accept": "application/octet-stream"})  # fmt: skip
        return answer if answer.status == 200 else None

    download = eventually(raw)
    assert json.loads(download.body) == bad
    assert download.headers["X-Content-Type-Options"] == "nosniff"

    one = call("POST", f"{stack.base_url}/v1/dead-letters/{dl_id}/replay?dry_run=ture",
               headers=headers)  # fmt: skip
    assert one.status == 400 and "dry_run" in one.json()["error"]["message"]
    job = call("POST", f"{stack.base_url}/v1/dead-letters/replay",
               json_body={"dry_run": "false"}, headers=headers)  # fmt: skip
    assert job.status == 400 and "dry_run" in job.json()["error"]["message"]
    assert _stored_status(stack, key, dl_id) == "pending"  # neither replayed it

    wrong = call("PUT", f"{stack.base_url}/v1/events", body=b"{}", headers=headers)
    assert wrong.status == 405
    assert {"GET", "POST"} <= {m.strip() for m in wrong.headers["Allow"].split(",")}


def _stored_status(stack: ProcessStack, key: str, dl_id: str) -> str:
    answer = call("GET", f"{stack.base_url}/v1/dead-letters/{dl_id}", headers={"X-API-Key": key})
    return str(answer.json()["status"])


def test_a_dakkio_offset_past_the_cap_is_refused(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key, base = new_key("edges"), f"{stack.base_url}/dakkio/api/data?bucketId={'5' * 24}"
    at_cap = call("GET", f"{base}&offset={MAX_OFFSET}", headers={"X-API-Key": key})
    assert at_cap.status == 404  # accepted; the bucket is not in the catalog
    refused = call("GET", f"{base}&offset={10**9}", headers={"X-API-Key": key})
    assert refused.status == 400 and "offset" in refused.body.decode()


def test_a_retry_with_the_same_idempotency_key_names_the_same_events(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key, url = new_key("edges"), f"{stack.base_url}/v1/events"
    body = [{"type": "t", "source": "s", "time": "2024-01-01T00:00:00Z", "data": {"n": n}}
            for n in range(2)]  # fmt: skip
    retry = {"X-API-Key": key, "Idempotency-Key": f"batch-{uuid.uuid4()}"}
    first = call("POST", url, json_body=body, headers=retry)
    again = call("POST", url, json_body=body, headers=retry)
    assert first.status == again.status == 202
    assert first.json()["ids"] == again.json()["ids"]
    other = call("POST", url, json_body=body, headers={"X-API-Key": key})
    assert set(other.json()["ids"]).isdisjoint(first.json()["ids"])
    long = call("POST", url, json_body=body, headers={**retry, "Idempotency-Key": "k" * 256})
    assert long.status == 400 and "Idempotency-Key" in long.body.decode()
