"""Invariant 5's second wall, through the API's own pools: `door_context` builds them, and a
query without any tenant filter still sees only the tenant the connection set.

The row-level-security tests in tests/integration/test_tenants.py take the role
themselves; this one runs on the connections the handlers get, so it fails if the pools
stop taking `sluice_api` (`make mutants`: api-set-role).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from producer_api.resources import DOOR, SETTINGS, door_context
from runtime.settings import Settings
from sluice.catalog_cli import create_dataset
from store.tenancy import tenant_connection
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

SEEN = "SELECT current_user, array_agg(DISTINCT tenant) FILTER (WHERE tenant IS NOT NULL)" \
    " FROM baselime_datasets"  # fmt: skip


async def _seen(pool: AsyncConnectionPool, tenant: str | None) -> tuple[Any, ...]:
    if tenant is None:
        async with pool.connection() as conn:
            row = await (await conn.execute(SEEN)).fetchone()
    else:
        async with tenant_connection(pool, tenant) as conn:
            row = await (await conn.execute(SEEN)).fetchone()
    assert row is not None
    return tuple(row)


async def test_the_api_pools_see_only_the_tenant_they_set(
    kafka_bootstrap: str, database_url: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    a, b = f"pool-a-{suffix}", f"pool-b-{suffix}"
    catalog = Settings(database_url=database_url)
    assert create_dataset(catalog, a, "a-logs") and create_dataset(catalog, b, "b-logs")
    app = web.Application()
    app[SETTINGS] = make_settings(kafka_bootstrap, database_url)
    lifetime = door_context(app)
    await lifetime.__anext__()
    try:
        door = app[DOOR]
        for pool in (door.pool, door.stored.pool):
            assert await _seen(pool, a) == ("sluice_api", [a])
            assert await _seen(pool, b) == ("sluice_api", [b])
            assert await _seen(pool, None) == ("sluice_api", None)  # no tenant set: no rows
    finally:
        await lifetime.aclose()
