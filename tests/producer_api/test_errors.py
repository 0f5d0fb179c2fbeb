"""The error middleware's mapping of database refusals: never a 500 for a caller's input
or a query cut short by the statement timeout."""

from __future__ import annotations

import asyncio
import json
from typing import NoReturn

import psycopg
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from producer_api.errors import error_middleware


def _answer(exc: Exception) -> web.Response:
    async def handler(request: web.Request) -> NoReturn:
        raise exc

    response = asyncio.run(error_middleware(make_mocked_request("GET", "/v1/events"), handler))
    assert isinstance(response, web.Response)
    return response


def test_a_cancelled_statement_is_a_503_to_retry_not_a_500() -> None:
    response = _answer(psycopg.errors.QueryCanceled("canceling statement due to statement timeout"))
    assert response.status == 503 and response.headers["Retry-After"]
    assert json.loads(response.text or "")["error"]["code"] == "query_timeout"


def test_text_postgresql_refuses_is_a_400() -> None:
    response = _answer(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"))
    assert response.status == 400
    assert json.loads(response.text or "")["error"]["code"] == "bad_request"


def test_method_not_allowed_keeps_its_allow_header() -> None:
    response = _answer(web.HTTPMethodNotAllowed("PUT", ["GET", "POST"]))
    assert response.status == 405 and set(response.headers["Allow"].split(",")) == {"GET", "POST"}
