"""A delete by filter is pruned only by a newer one of its partition that covers it
(`sinks.writer._PRUNE_COVERED_FILTERS`), on real PostgreSQL: what the pruned one kept out,
the newer one keeps out; one that covers less leaves it, and it keeps its older versions out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from schemas.codec import encode
from schemas.deletes import DeleteFilter, filter_key
from schemas.identity import Identity
from schemas.versions import version_of
from sinks.batch import SinkBatch, write_batch
from sinks.records import event_record
from tests.sinks.test_newest_wins_machine import Msg, Record

pytestmark = pytest.mark.integration

OLD, CUT = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def _filter(tenant: str, flt: DeleteFilter, offset: int) -> Any:
    deletion_id = f"f-{uuid.uuid4()}"
    record = {"deletion_id": deletion_id, "tenant": tenant, "family": "native",
              "filter": flt.to_record(), "version": version_of(offset, 0),
              "requested_at": datetime(2024, 7, 1, tzinfo=UTC)}  # fmt: skip
    msg = Msg(Record(filter_key(deletion_id), encode("FilterDeletion", record), [], 0))
    return event_record(msg)  # type: ignore[arg-type]


def _version(
    tenant: str, event_id: str, offset: int, time: datetime, type_: str = "t", source: str = "s"
) -> Any:
    record = {"tenant": tenant, "family": "native", "event_id": event_id, "type": type_,
              "source": source, "subject": None, "time": time, "data_json": "{}",
              "received_at": time, "version": version_of(offset, 0)}  # fmt: skip
    key = Identity(tenant, "native", event_id).key()
    return event_record(Msg(Record(key, encode("CanonicalEvent", record), [], 0)))  # type: ignore[arg-type]


def _apply(conn: psycopg.Connection[Any], *rows: Any) -> None:
    batch = SinkBatch()
    for row in rows:
        batch.add(row)
    write_batch(conn, batch, lambda _backs: None)


def _filters(conn: psycopg.Connection[Any], tenant: str) -> int:
    row = conn.execute("SELECT count(*) FROM filter_deletions WHERE tenant = %s", (tenant,))
    found = row.fetchone()
    return int(found[0]) if found else 0


def _stored(conn: psycopg.Connection[Any], tenant: str) -> set[str]:
    rows = conn.execute("SELECT event_id FROM events WHERE tenant = %s", (tenant,)).fetchall()
    return {str(r[0]) for r in rows}


def test_a_retention_step_prunes_the_step_before(conn: psycopg.Connection[Any]) -> None:
    tenant = f"fp-{uuid.uuid4().hex[:8]}"
    _apply(conn, _filter(tenant, DeleteFilter(time_to=OLD), 10))
    _apply(conn, _filter(tenant, DeleteFilter(time_to=CUT), 20))
    assert _filters(conn, tenant) == 1
    _apply(conn, _version(tenant, "late", 5, OLD))  # older than both, before the cut
    assert _stored(conn, tenant) == set()


LATE = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("older", "newer", "late"),
    [  # `late`: (type, source, time) of a version only the older filter matches
        (DeleteFilter(), DeleteFilter(time_to=CUT), ("t", "s", LATE)),
        (DeleteFilter(), DeleteFilter(types=("t",)), ("u", "s", LATE)),
        (DeleteFilter(), DeleteFilter(sources=("s",)), ("t", "z", LATE)),
        (DeleteFilter(), DeleteFilter(time_from=CUT), ("t", "s", OLD)),
        (DeleteFilter(types=("t", "u")), DeleteFilter(types=("t",)), ("u", "s", LATE)),
    ],
)
def test_a_newer_filter_that_covers_less_leaves_the_older(
    conn: psycopg.Connection[Any], older: DeleteFilter, newer: DeleteFilter,
    late: tuple[str, str, datetime],
) -> None:  # fmt: skip
    tenant = f"fp-{uuid.uuid4().hex[:8]}"
    _apply(conn, _filter(tenant, older, 10))
    _apply(conn, _filter(tenant, newer, 20))
    assert _filters(conn, tenant) == 2
    assert older.matches(*late) and not newer.matches(*late)
    _apply(conn, _version(tenant, "late", 5, late[2], late[0], late[1]))
    assert _stored(conn, tenant) == set()  # kept out by the older filter, still there
