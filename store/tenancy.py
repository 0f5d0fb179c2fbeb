"""Tenant-scoped database access: row-level security's half of invariant 5 (docs/design.md).

Every tenant-owned table has a row-level-security policy that admits only the rows
whose `tenant` equals the transaction-local setting `sluice.tenant`
(migration 0004). The API's pool connects as (or `SET ROLE`s to) a role that does
not bypass row-level security, so a query that forgets its `WHERE tenant = …`
still sees only the caller's rows, and a query run outside `tenant_connection`
sees none.

Use it for every query the API runs on behalf of a caller::

    async with tenant_connection(door.pool, principal.tenant) as conn:
        row = await get_event(conn, principal.tenant, family, event_id)

Keep the explicit `WHERE tenant = %s` in the queries as well: the policy is the
second wall, not the first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

TENANT_SETTING = "sluice.tenant"


@asynccontextmanager
async def tenant_connection(
    pool: AsyncConnectionPool, tenant: str
) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection inside one transaction whose `sluice.tenant` is `tenant`.

    The setting is transaction-local (`set_config(…, true)`), so it disappears at
    commit or rollback and can never leak to the next user of the connection.
    The transaction commits when the block exits normally, rolls back otherwise.
    """
    if not tenant:
        raise ValueError("a tenant is required")
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT set_config(%s, %s, true)", (TENANT_SETTING, tenant))
        yield conn


def assume_role(role: str) -> Callable[[AsyncConnection[Any]], Awaitable[None]] | None:
    """A pool `configure` callback that `SET ROLE`s each new connection to `role`.

    The API's pool uses it with `sluice_api` (migration 0004), which does not bypass
    row-level security, so one superuser `DATABASE_URL` is enough for `make dev` and
    the tests while the API still runs under the policies. Empty `role`: no callback
    (the login role of the API's URL is used as it is).
    """
    if not role:
        return None
    statement = sql.SQL("SET ROLE {}").format(sql.Identifier(role))

    async def configure(conn: AsyncConnection[Any]) -> None:
        await conn.execute(statement)
        await conn.commit()

    return configure
