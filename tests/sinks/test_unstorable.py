"""A version PostgreSQL refuses becomes a dead letter; the sink's batch is stored without it.

Validation keeps such versions out of `events`, but the topic is a contract other
producers (or older Sluice releases) may write to: one refused row must not fail every
transaction holding it, which would stop the sink for every tenant.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from sinks.rows import EventRow, TombstoneRow
from sinks.writer import write_dead_letters, write_events

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _row(tenant: str, event_id: str, version: int, data_json: str = '{"n": 1}',
         type_: str = "t") -> EventRow:  # fmt: skip
    return EventRow(tenant, "native", event_id, type_, "s", None, T0, data_json, T0, version, 2)


def test_refused_versions_become_dead_letters_once_and_the_rest_is_stored(
    database_url: str,
) -> None:
    tenant = f"uns-{uuid.uuid4().hex[:8]}"
    rows = [
        _row(tenant, "good", 1 << 20),
        _row(tenant, "huge", 2 << 20, '{"n": 1e1000000}'),  # numeric overflow in jsonb
        _row(tenant, "nul", 3 << 20, type_="t\x00"),  # NUL in a text column
        _row(tenant, "also-good", (3 << 20) + 1),
    ]
    with psycopg.connect(database_url) as conn:
        for _ in range(2):  # the second time is a redelivery of the same batch
            with conn.transaction():
                write_events(conn, rows, [])
        stored = conn.execute(
            "SELECT event_id FROM events WHERE tenant = %s ORDER BY event_id", (tenant,)
        ).fetchall()
        letters = conn.execute(
            "SELECT event_id, stage, reasons, raw, source_partition, source_offset"
            " FROM dead_letters WHERE tenant = %s ORDER BY event_id",
            (tenant,),
        ).fetchall()
    assert [r[0] for r in stored] == ["also-good", "good"]
    assert [(r[0], r[1], r[2][0]["code"]) for r in letters] == [
        ("huge", "sink", "unstorable"),
        ("nul", "sink", "unstorable"),
    ]
    huge = json.loads(letters[0][3].replace(b"1e1000000", b"0"))
    assert huge["id"] == "huge" and huge["type"] == "t"
    assert b"1e1000000" in letters[0][3]  # the refused value is kept as it was
    assert (letters[0][4], letters[0][5]) == (2, 2)  # position: partition, ingest.raw offset


def test_a_dead_letter_whose_id_or_route_holds_nul_is_stored(database_url: str) -> None:
    """An event refused for a NUL in its id is dead-lettered with that id: the dead letter
    itself must still be storable (its raw bytes keep the NUL exactly)."""
    tenant = f"uns-{uuid.uuid4().hex[:8]}"
    raw = b'{"id": "a\\u0000b", "type": "t"}'
    record = {
        "dead_letter_id": str(uuid.uuid4()), "tenant": tenant, "family": "dashdive",
        "route": {"service": "s\x00"}, "content_type": "application/json", "raw": raw,
        "stage": "door", "received_at": T0, "event_id": "a\x00b", "attempt": 1,
        "reasons": [{"code": "unsupported_character", "path": "$", "message": "x\x00"}],
        "replay_of": None, "source_topic": None, "source_partition": None, "source_offset": None,
    }  # fmt: skip
    with psycopg.connect(database_url) as conn, conn.transaction():
        write_dead_letters(conn, [record])
        row = conn.execute(
            "SELECT event_id, route, reasons, raw FROM dead_letters WHERE tenant = %s", (tenant,)
        ).fetchone()
    assert row is not None
    assert row[0] == "a\ufffdb" and row[1] == {"service": "s\ufffd"}
    assert row[2][0]["message"] == "x\ufffd" and row[3] == raw


def test_a_later_delete_removes_a_sink_dead_letter_and_an_earlier_one_does_not(
    database_url: str,
) -> None:
    """Invariant 4 for stage `sink`: its dead letters carry the version's position, so a
    delete accepted after the refused version removes it and one accepted before does not."""
    tenant = f"uns-{uuid.uuid4().hex[:8]}"
    refused = [
        _row(tenant, "late", 5 << 20, '{"n": 1e1000000}'),
        _row(tenant, "early", 5 << 20, '{"n": 1e1000000}'),
    ]
    with psycopg.connect(database_url) as conn:
        with conn.transaction():
            write_events(conn, refused, [])
        with conn.transaction():
            write_events(conn, [], [
                TombstoneRow(tenant, "native", "late", 6 << 20, 2),  # after the version
                TombstoneRow(tenant, "native", "early", 4 << 20, 2),  # before it
            ])  # fmt: skip
        left = conn.execute(
            "SELECT event_id FROM dead_letters WHERE tenant = %s AND stage = 'sink'", (tenant,)
        ).fetchall()
    assert [r[0] for r in left] == ["early"]
