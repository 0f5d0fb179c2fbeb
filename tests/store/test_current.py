"""The door's `replaced` lookup on real PostgreSQL: one statement, coalesced, tenant-bound."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from store.current import StoredIdLookups
from store.tenancy import assume_role

pytestmark = pytest.mark.integration


def _store(database_url: str, tenant: str, ids: list[str]) -> None:
    with psycopg.connect(database_url) as conn:
        for version, event_id in enumerate(ids):
            conn.execute(
                "INSERT INTO events (tenant, family, event_id, type, source, time, data,"
                " received_at, version)"
                " VALUES (%s, 'native', %s, 't', 's', now(), '{}', now(), %s)",
                (tenant, event_id, version),
            )


@pytest.fixture
async def lookups(database_url: str) -> AsyncIterator[StoredIdLookups]:
    pool = AsyncConnectionPool(
        database_url, min_size=1, max_size=2, open=False, kwargs={"autocommit": True},
        configure=assume_role("sluice_api"),
    )  # fmt: skip
    await pool.open()
    try:
        yield StoredIdLookups(pool)
    finally:
        await pool.close()


async def test_concurrent_requests_share_queries_and_each_learns_only_its_own_ids(
    database_url: str, lookups: StoredIdLookups
) -> None:
    tenant, other = f"cur-{uuid.uuid4().hex[:8]}", f"cur-{uuid.uuid4().hex[:8]}"
    _store(database_url, tenant, [f"s{i}" for i in range(0, 40, 2)])  # s0, s2, ... s38
    _store(database_url, other, ["s1", "s3"])
    asked = [[f"s{i}", f"s{i + 1}", f"new-{i}"] for i in range(0, 40)]

    answers = await asyncio.gather(*(lookups.stored(tenant, "native", ids) for ids in asked))

    for ids, answer in zip(asked, answers, strict=True):
        expected = {i for i in ids if i.startswith("s") and int(i[1:]) % 2 == 0 and int(i[1:]) < 40}
        # Each stored id comes with its version (s0 was stored at 0, s2 at 1, ...).
        assert answer == {i: int(i[1:]) // 2 for i in expected}, ids
    assert lookups.queries < len(asked)  # coalesced: the requests did not each run one
    # The other tenant's stored ids are not this tenant's, and the reverse.
    assert await lookups.stored(other, "native", ["s0", "s1", "s2", "s3"]) == {"s1": 0, "s3": 1}
    assert await lookups.stored(tenant, "dakkio", ["s0"]) == {}


async def test_a_failed_query_fails_its_waiters_and_the_next_one_runs(
    database_url: str, lookups: StoredIdLookups
) -> None:
    tenant = f"cur-{uuid.uuid4().hex[:8]}"
    _store(database_url, tenant, ["kept"])
    # A NUL in an id cannot be sent as text: the one query of the round fails, and both
    # requests that asked together (before the query began) get the failure.
    results = await asyncio.gather(
        lookups.stored(tenant, "native", ["bad\x00id"]),
        lookups.stored(tenant, "native", ["kept"]),
        return_exceptions=True,
    )
    assert all(isinstance(r, psycopg.Error) for r in results), results
    assert await lookups.stored(tenant, "native", ["kept", "gone"]) == {"kept": 0}


async def test_a_gathering_round_takes_requests_that_arrive_while_it_waits(
    database_url: str, lookups: StoredIdLookups
) -> None:
    tenant = f"cur-{uuid.uuid4().hex[:8]}"
    _store(database_url, tenant, ["s0"])
    lookups.gather_seconds = 0.2

    async def ask(i: int) -> dict[str, int]:
        await asyncio.sleep(0.005 * i)  # one after another, each before the rounds ask
        return await lookups.stored(tenant, "native", ["s0", f"new-{i}"])

    answers = await asyncio.gather(*(ask(i) for i in range(10)))
    assert answers == [{"s0": 0}] * 10
    # Ten requests spread over ~45 ms: the first round's wait took them all in one query
    # (the second round, started by the second request, found nobody left).
    assert lookups.queries == 1
