"""The API's PostgreSQL connections carry the statement timeout (real PostgreSQL)."""

from __future__ import annotations

import psycopg
import pytest

from producer_api.resources import api_connection_kwargs
from runtime.settings import Settings

pytestmark = pytest.mark.integration


def test_an_api_connection_cancels_a_statement_past_the_timeout(database_url: str) -> None:
    kwargs = api_connection_kwargs(Settings(api_statement_timeout_ms=200))
    with psycopg.connect(database_url, **kwargs) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("200ms",)
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(5)")
