"""History on real PostgreSQL: a version finds its request by its envelope's position.

Only an envelope's first version carries the request's header (`streams.outputs`), so an
envelope whose versions the sink stored in two batches has two `ingest_envelopes` rows,
and only the first names the request. The history of every version, and of the request,
must still be whole.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection

from sinks.batch import SinkBatch, write_batch
from sinks.rows import EventRow
from store.history import event_history, request_history

pytestmark = pytest.mark.integration

T0 = datetime(2024, 6, 1, tzinfo=UTC)
REPLAYED = "0b7c4c36-0b5e-4b5d-9a7f-1f4a1d9e2c11"


def _version(tenant: str, event_id: str, index: int, request: str | None,
             replay_of: str | None = None) -> EventRow:  # fmt: skip
    return EventRow(tenant, "native", event_id, "t", "s", None, T0, '{"v": 1}', T0,
                    (77 << 20) | index, 3, False, request, replay_of)  # fmt: skip


def _store(database_url: str, *batches: list[EventRow]) -> None:
    """Each list of versions stored as one sink batch, with the sink's own writer."""
    for rows in batches:
        batch = SinkBatch()
        for row in rows:
            batch.add(row)
        with psycopg.connect(database_url, autocommit=True) as conn:
            write_batch(conn, batch, lambda _back: None)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[AsyncConnection[Any]]:
    async with await AsyncConnection.connect(database_url, autocommit=True) as c:
        yield c


async def test_an_envelope_stored_in_two_batches_keeps_its_request(
    database_url: str, conn: AsyncConnection[Any]
) -> None:
    tenant = f"hist-{uuid.uuid4().hex[:8]}"
    first = [_version(tenant, "a", 0, "req-split"), _version(tenant, "b", 1, None)]
    second = [_version(tenant, "c", 2, None), _version(tenant, "d", 3, None, REPLAYED)]
    _store(database_url, first, second)

    for event_id in "abcd":
        history = await event_history(conn, tenant, "native", event_id, detail=True)
        assert history is not None
        accepted = [s for s in history["steps"] if s["step"] in ("accepted", "replayed")]
        assert accepted and accepted[0]["request_id"] == "req-split", (event_id, history)
    replayed = await event_history(conn, tenant, "native", "d", detail=True)
    assert replayed is not None
    assert any(s.get("dead_letter_id") == REPLAYED for s in replayed["steps"]), replayed
    plain = await event_history(conn, tenant, "native", "c", detail=True)
    assert plain is not None and not any(s["step"] == "replayed" for s in plain["steps"])

    request = await request_history(conn, tenant, "req-split", detail=True)
    assert request is not None
    assert sorted(e["event_id"] for e in request["events"]) == ["a", "b", "c", "d"]
    assert await request_history(conn, "another-tenant", "req-split", detail=True) is None
