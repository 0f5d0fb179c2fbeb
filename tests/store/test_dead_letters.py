"""Dead-letter SQL on real PostgreSQL: filters, paging, claims that never overlap, tenants."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection

from sinks.writer import write_dead_letters
from store import dead_letters as store
from store.dead_letters import DeadLetterFilter

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _record(tenant: str, i: int, raw: bytes, code: str = "missing_field") -> dict[str, Any]:
    return {
        "dead_letter_id": str(uuid.uuid4()), "tenant": tenant, "family": "native", "route": {},
        "content_type": "application/json", "raw": raw, "stage": "door" if i % 2 else "stream",
        "reasons": [{"code": code, "path": "$", "message": "m"}],
        "received_at": T0 + timedelta(seconds=i), "event_id": f"e{i}", "attempt": 1,
        "replay_of": None, "source_topic": None, "source_partition": None, "source_offset": None,
    }  # fmt: skip


def _store(database_url: str, records: list[dict[str, Any]]) -> list[str]:
    with psycopg.connect(database_url) as conn, conn.transaction():
        write_dead_letters(conn, records)
    return [r["dead_letter_id"] for r in records]


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[AsyncConnection[Any]]:
    async with await AsyncConnection.connect(database_url, autocommit=True) as c:
        yield c


def _tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def test_filters_text_search_and_cursor_paging(
    database_url: str, conn: AsyncConnection[Any]
) -> None:
    tenant = _tenant()
    raws = [b"\xff\xfeneedle\x00" if i == 3 else f"plain {i}".encode() for i in range(7)]
    ids = _store(database_url, [_record(tenant, i, raws[i], "odd" if i % 2 else "even")
                                for i in range(7)])  # fmt: skip
    page, cursor = await store.find_dead_letters(conn, tenant, DeadLetterFilter(), limit=3)
    seen = [d.id for d in page]
    while cursor:
        page, cursor = await store.find_dead_letters(
            conn, tenant, DeadLetterFilter(), limit=3, cursor=cursor
        )
        seen += [d.id for d in page]
    assert seen == ids
    found, _ = await store.find_dead_letters(conn, tenant, DeadLetterFilter(text="needle"), limit=9)
    assert [d.raw for d in found] == [raws[3]]
    odd, _ = await store.find_dead_letters(conn, tenant, DeadLetterFilter(reason="odd"), limit=9)
    assert [d.id for d in odd] == ids[1::2]
    window = DeadLetterFilter(stage="stream", time_from=T0 + timedelta(seconds=2),
                              time_to=T0 + timedelta(seconds=6))  # fmt: skip
    assert await store.count_dead_letters(conn, tenant, window) == 2


async def test_another_tenants_id_is_not_found(
    database_url: str, conn: AsyncConnection[Any]
) -> None:
    (dl_id,) = _store(database_url, [_record(_tenant(), 0, b"x")])
    other = _tenant()
    assert await store.get_dead_letter(conn, other, dl_id) is None
    assert await store.claim_one(conn, other, dl_id, "me", 60) is None
    assert await store.discard(conn, other, dl_id) is None
    assert await store.get_dead_letter(conn, other, "not-a-uuid") is None


async def test_a_claim_is_exclusive_until_released_or_marked(
    database_url: str, conn: AsyncConnection[Any]
) -> None:
    tenant = _tenant()
    (dl_id,) = _store(database_url, [_record(tenant, 0, b"x")])
    claimed = await store.claim_one(conn, tenant, dl_id, "a", 60)
    assert claimed is not None and claimed.raw == b"x"
    assert await store.claim_one(conn, tenant, dl_id, "b", 60) is None
    assert await store.discard(conn, tenant, dl_id) == "replaying"
    await store.release(conn, tenant, "a", [claimed.dead_letter_id])
    again = await store.claim_one(conn, tenant, dl_id, "b", 60)
    assert again is not None
    assert await store.mark_replayed(conn, tenant, "a", [(again.dead_letter_id, {})]) == 0
    assert await store.mark_replayed(conn, tenant, "b", [(again.dead_letter_id, {"o": 1})]) == 1
    stored = await store.get_dead_letter(conn, tenant, dl_id)
    assert stored is not None and stored.status == "replayed" and stored.outcome == {"o": 1}
    assert await store.claim_one(conn, tenant, dl_id, "c", 60) is None
    assert await store.discard(conn, tenant, dl_id) == "replayed"


async def test_an_expired_claim_can_be_taken_over(
    database_url: str, conn: AsyncConnection[Any]
) -> None:
    tenant = _tenant()
    (dl_id,) = _store(database_url, [_record(tenant, 0, b"x")])
    assert await store.claim_one(conn, tenant, dl_id, "crashed", 0.001) is not None
    await asyncio.sleep(0.05)
    assert await store.claim_one(conn, tenant, dl_id, "next", 60) is not None


async def test_concurrent_batch_claims_never_overlap(database_url: str) -> None:
    tenant = _tenant()
    ids = set(_store(database_url, [_record(tenant, i, b"x") for i in range(60)]))

    async def claimer(owner: str) -> list[str]:
        taken: list[str] = []
        async with await AsyncConnection.connect(database_url, autocommit=True) as c:
            while rows := await store.claim_batch(c, tenant, DeadLetterFilter(), owner, 60, 7):
                taken += [r.id for r in rows]
        return taken

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(3)))
    flat = [i for r in results for i in r]
    assert len(flat) == len(set(flat)) == 60 and set(flat) == ids


async def test_jobs_keep_counts(database_url: str, conn: AsyncConnection[Any]) -> None:
    tenant = _tenant()
    flt = DeadLetterFilter(reason="r", time_from=T0)
    job_id = await store.create_job(conn, tenant, flt, False, 5)
    await store.update_job(conn, tenant, job_id, state="running")
    await store.update_job(conn, tenant, job_id, add={"replayed": 3, "skipped": 1})
    await store.update_job(conn, tenant, job_id, add={"replayed": 1}, state="done")
    job = await store.get_job(conn, tenant, job_id)
    assert job is not None and job["state"] == "done" and job["replayed"] == 4
    assert DeadLetterFilter.from_json(job["filter"]) == flt
    assert await store.get_job(conn, _tenant(), job_id) is None


async def test_only_a_stale_job_is_adopted_and_only_once(
    database_url: str, conn: AsyncConnection[Any]
) -> None:
    tenant = _tenant()
    job_id = await store.create_job(conn, tenant, DeadLetterFilter(), False, 0)
    await store.update_job(conn, tenant, job_id, state="running")
    assert await store.adopt_stale_job(conn, tenant, job_id, 60) is None  # it just beat
    await conn.execute(
        "UPDATE replay_jobs SET heartbeat_at = now() - interval '5 minutes' WHERE job_id = %s",
        (job_id,),
    )
    adopted = await asyncio.gather(*(store.adopt_stale_job(conn, tenant, job_id, 60)
                                     for _ in range(3)))  # fmt: skip
    assert sum(job is not None for job in adopted) == 1
    assert await store.adopt_stale_job(conn, _tenant(), job_id, 0) is None
