"""Dynatrace OpenPipeline generic events on the real pipeline: the seed's request model,
`event.id` as the identity, refusal of a whole request, and each error envelope."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from producer_api.errors import error_middleware_for
from producer_api.families.dynatrace import dynatrace_error, internal_errors
from producer_api.ratelimit import RateLimited
from runtime.kafka import ProduceFailed
from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

PATH = "/dynatrace/platform/ingest/v1/events"
SEED_BODY = [
    {"event.id": 1, "additionalProp1": "bar", "additionalProp2": "foo",
     "additionalProp3": [{"prop1": "string", "prop2": 1}]},
    {"event.id": 2, "additionalProp1": 123.45, "additionalProp2": "lorem",
     "additionalProp3": [{"prop1": "string", "prop2": 1}]},
]  # fmt: skip


def _tenant() -> str:
    return f"dt-{uuid.uuid4().hex[:10]}"


def _post(stack: ProcessStack, auth: str | None, body: bytes, path: str = PATH) -> Answer:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    return call("POST", f"{stack.base_url}{path}", body=body, headers=headers)


def _event(stack: ProcessStack, key: str, event_id: str) -> dict[str, Any] | None:
    url = f"{stack.base_url}/v1/events/{event_id}?family=dynatrace"
    answer = call("GET", url, headers={"X-API-Key": key})
    return answer.json() if answer.status == 200 else None


def _error(answer: Answer, code: int) -> dict[str, Any]:
    assert answer.status == code, answer.body
    body: dict[str, Any] = answer.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def test_the_seed_request_model_is_accepted_with_no_body_and_queryable(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(_tenant())
    answer = _post(stack, f"Api-Token {key}", json.dumps(SEED_BODY).encode())
    assert (answer.status, answer.body) == (202, b"")

    first = eventually(lambda: _event(stack, key, "1"))
    second = eventually(lambda: _event(stack, key, "2"))
    assert first["data"] == SEED_BODY[0] and second["data"] == SEED_BODY[1]
    assert first["type"] == "generic" and first["source"] == "openpipeline"


def test_a_single_event_with_a_bearer_token_and_a_newer_version(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(_tenant())
    for version in (1, 2):
        event = {"event.id": "deploy-7", "event.type": "deployment", "v": version}
        assert _post(stack, f"Bearer {key}", json.dumps(event).encode()).status == 202

    def newest() -> dict[str, Any] | None:
        found = _event(stack, key, "deploy-7")
        return found if found and found["data"]["v"] == 2 else None

    assert eventually(newest)["type"] == "deployment"


def test_a_request_with_an_invalid_event_is_refused_whole(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    tenant = _tenant()
    key = new_key(tenant)
    body = b'[{"event.id": "fine-1", "a": 1}, {"event.id": {"nested": true}}, 7]'
    error = _error(_post(stack, f"Api-Token {key}", body), 400)
    assert error["message"] == "The input is invalid."
    details = error["details"]
    assert details["type"] == "constraintViolation"
    assert [v["path"] for v in details["constraintViolations"]] == ["[1]['event.id']", "[2]"]

    def dead_letters() -> list[bytes] | None:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT raw FROM dead_letters WHERE tenant = %s ORDER BY raw", (tenant,)
            ).fetchall()
        return [bytes(r[0]) for r in rows] if len(rows) == 3 else None

    stored = eventually(dead_letters)
    assert sorted(stored) == sorted([b'{"event.id": "fine-1", "a": 1}',
                                     b'{"event.id": {"nested": true}}', b"7"])  # fmt: skip
    assert _event(stack, key, "fine-1") is None


def test_every_error_envelope_of_the_seed(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    key = new_key(_tenant())
    assert _error(_post(stack, f"Api-Token {key}", b"{not json"), 400)["details"]
    _error(_post(stack, f"Api-Token {key}", b"[]", path="/dynatrace/platform/nope"), 404)
    too_many = json.dumps([{}] * 10_001).encode()
    _error(_post(stack, f"Api-Token {key}", too_many), 413)
    _error(_post(stack, None, b"{}"), 401)
    reader = new_key(_tenant(), ["events:read"])
    _error(_post(stack, f"Api-Token {reader}", b"{}"), 403)


@pytest.mark.parametrize(
    ("raised", "status"),
    [(RateLimited("requests", 3), 429), (ProduceFailed("down"), 503), (RuntimeError("bug"), 500)],
)
async def test_rate_limits_and_server_errors_use_the_envelope(
    raised: Exception, status: int
) -> None:
    async def failing(_request: web.Request) -> web.StreamResponse:
        raise raised

    async def inner(request: web.Request) -> web.StreamResponse:
        return await error_middleware_for(dynatrace_error)(request, failing)

    response = await internal_errors(make_mocked_request("POST", PATH), inner)
    assert isinstance(response, web.Response) and response.status == status
    assert response.body is not None
    assert json.loads(bytes(response.body))["error"]["code"] == status  # type: ignore[arg-type]


def test_a_body_that_does_not_decompress_is_one_dead_letter_of_the_bytes_sent(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    """Invariant 2 for every family's door (shared `read_events_body`), shown on Dynatrace."""
    import gzip

    tenant = _tenant()
    key = new_key(tenant)
    sent = gzip.compress(json.dumps(SEED_BODY).encode())[:-12]
    answer = call(
        "POST", f"{stack.base_url}{PATH}", body=sent,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip",
                 "Authorization": f"Api-Token {key}"},
    )  # fmt: skip
    _error(answer, 400)

    def stored() -> list[tuple[Any, ...]]:
        with psycopg.connect(database_url) as conn:
            return conn.execute(
                "SELECT raw, family FROM dead_letters WHERE tenant = %s", (tenant,)
            ).fetchall()

    ((raw, family),) = eventually(stored)
    assert bytes(raw) == sent and family == "dynatrace"
