"""The stream judges an event by a contract no older than the event (issue 17 parts 2-3).

The worker's contracts are a copy refreshed by a poll; between a version's registration
and the next poll it still holds the previous one. An event accepted after the
registration (a heal replays exactly such events) that the stale copy would refuse must
be judged by the new version: the worker reloads on that path before dead-lettering.
Deterministic: the poll never runs here (an hour's interval); only `handle` can reload.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from ingest import registry
from ingest.contracts import ContractCache
from runtime.settings import Settings
from schemas.codec import decode, encode
from schemas.compatibility import parse
from streams.app import Forwarder
from tests.streams.test_forwarder import TOPICS, Event, HeldProducer, Message

pytestmark = pytest.mark.integration

SUBJECT = "native.metered"


def _schema(maximum: int) -> str:
    return json.dumps({"type": "object", "properties": {"units": {"maximum": maximum}}})


def _event(tenant: str, units: int, received_at: datetime) -> Event:
    raw = json.dumps(
        {
            "id": "e1",
            "type": "metered",
            "source": "s",
            "time": "2024-01-01T00:00:00Z",
            "data": {"units": units},
        }
    ).encode()
    envelope = {
        "request_id": "r", "tenant": tenant, "family": "native", "route": {},
        "content_type": "application/json", "received_at": received_at,
        "items": [{"op": "upsert", "event_id": "e1", "raw": raw, "attempt": 1,
                   "replay_of": None, "receipt_id": None}],
    }  # fmt: skip
    return Event(Message(TOPICS.ingest_raw, 0, 5, encode("IngestEnvelope", envelope)))


async def _outcome(forwarder: Forwarder, held: HeldProducer, event: Event) -> str:
    handling = asyncio.create_task(forwarder.handle([event]))
    messages, batch = await held.next_batch()
    for _ in messages:
        batch.on_delivery(None, None)  # type: ignore[arg-type]
    await asyncio.wait_for(handling, 5)
    (topic,) = [m[0] for m in messages]
    return "stored" if topic == TOPICS.events else "dead-lettered"


async def test_a_stale_copy_is_reloaded_before_an_event_newer_than_it_is_refused(
    tmp_path: Path, database_url: str
) -> None:
    tenant = f"fresh-{uuid.uuid4().hex[:8]}"
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False)
    await pool.open()
    try:
        await registry.register(pool, tenant, SUBJECT, parse("JSON", _schema(10)))
        forwarder = Forwarder(Settings(state_dir=tmp_path), TOPICS)
        held = HeldProducer()
        forwarder._producer = held  # type: ignore[assignment]
        forwarder.contracts = ContractCache(pool.connection, poll_seconds=3600)
        await forwarder.contracts.refresh()  # the worker's copy: version 1 (at most 10)

        assert await _outcome(forwarder, held, _event(tenant, 50, datetime.now(UTC))) == (
            "dead-lettered"
        )
        await registry.register(pool, tenant, SUBJECT, parse("JSON", _schema(100)))  # v2
        older = datetime(2024, 1, 1, tzinfo=UTC)  # accepted before the copy was read: kept
        assert await _outcome(forwarder, held, _event(tenant, 50, older)) == "dead-lettered"
        newer = datetime.now(UTC)  # accepted after version 2 was registered: judged by it
        assert await _outcome(forwarder, held, _event(tenant, 50, newer)) == "stored"
        assert forwarder.contracts.current.by_subject[(tenant, SUBJECT)].version == 2
    finally:
        await pool.close()


def test_the_envelope_codec_gives_received_at_as_an_aware_datetime() -> None:
    """`Forwarder._contracts_moved` compares `received_at.timestamp()` with a wall clock."""
    at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    _, envelope = decode(_event("t", 1, at).message.value, "IngestEnvelope")
    assert envelope["received_at"] == at and envelope["received_at"].tzinfo is not None
