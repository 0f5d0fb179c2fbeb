"""Dashdive's and DataHub's error formats for every failure the core can raise, and DataHub's
body splitting (trailing commas included) keeping each event's exact bytes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from ingest.publish import Overloaded
from ingest.split import Unsplittable
from producer_api.auth import Forbidden, Unauthenticated
from producer_api.errors import ErrorFormatter, error_middleware_for
from producer_api.families.dashdive import dashdive_error
from producer_api.families.datahub import datahub_error, split_events
from producer_api.ratelimit import RateLimited
from runtime.kafka import ProduceFailed

FAILURES: list[tuple[Callable[[], Exception], int]] = [
    (lambda: Unauthenticated("missing API key"), 401),
    (lambda: Forbidden("this key lacks the events:write scope"), 403),
    (lambda: web.HTTPRequestEntityTooLarge(10, 20), 413),
    (lambda: RateLimited("requests", 3), 429),
    (lambda: Overloaded("too much waits for Kafka"), 503),
    (lambda: ProduceFailed("broker down"), 503),
]


async def _answer(fmt: ErrorFormatter, failure: Exception) -> web.Response:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise failure

    middleware = error_middleware_for(fmt)
    response = await middleware(make_mocked_request("POST", "/"), handler)
    assert isinstance(response, web.Response)
    return response


def _body(response: web.Response) -> Any:
    assert response.content_type == "application/json" and isinstance(response.body, bytes)
    return json.loads(response.body)


@pytest.mark.parametrize(("failure", "status"), FAILURES)
async def test_dashdive_errors(failure: Callable[[], Exception], status: int) -> None:
    response = await _answer(dashdive_error, failure())
    body = _body(response)
    assert response.status == status
    assert set(body) == {"error", "message"} and body["message"]
    if status in (429, 503):
        assert response.headers["Retry-After"].isdigit()


@pytest.mark.parametrize(("failure", "status"), FAILURES)
async def test_datahub_errors(failure: Callable[[], Exception], status: int) -> None:
    response = await _answer(datahub_error, failure())
    assert response.status == status
    assert list(_body(response)) == ["error"]


def test_datahub_split_keeps_exact_bytes_even_with_trailing_commas() -> None:
    body = b'{"x": {"a": 1}, "events": [ {"a": 1} , {"b": [2,],\n "c": 3,} ,],}'
    assert split_events(body) == [b'{"a": 1}', b'{"b": [2,],\n "c": 3,}']
    assert split_events(b'{"events": [{"a":1}, 2]}') == [b'{"a":1}', b"2"]


@pytest.mark.parametrize("body", [b"[]", b'{"events": 1}', b'{"other": []}', b'{"events": ['])
def test_datahub_bodies_that_cannot_be_split(body: bytes) -> None:
    with pytest.raises(Unsplittable):
        split_events(body)
