"""Idempotent batch writes into PostgreSQL: newest version wins, deletes stay deleted.

Redelivery, a sink restarted from an older offset, or a replayed message can
present an older version again; the `WHERE` clauses let it change nothing:

* an upsert replaces the stored row only when its version is higher;
* an upsert is refused when a delete of its identity with a higher version is
  recorded (`event_deletions`), or when a delete by filter recorded for its
  partition is newer and matches it (`filter_deletions`);
* a delete by filter removes, in its partition, the matching rows older than
  itself, records a per-identity deletion for each, and reports the identities
  so the sink can tombstone them on the compacted topic.

Each function here runs its statements inside the caller's transaction; the
sink's transaction itself, and the order in which a batch's parts are applied,
are `sinks.batch.write_batch`'s. A stretch of a batch without deletes by filter
is applied as deletes by id, then versions (`write_events`); the deletes by
filter that end it come after (`apply_filters`), so an event that precedes a
filter in the same batch is stored first and then removed, and gets its
tombstone.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.errors import UniqueViolation

from sinks.bulk import copy_event_rows
from sinks.deletions import Step, id_unit, partition_unit, record_steps
from sinks.rows import EventRow, FilterRow, TombstoneRow, Version, decoded, newest_wins
from sinks.unstorable import RECONSTRUCTED, EnvelopeReader, unstorable_dead_letters

log = logging.getLogger(__name__)

_FILTER_MATCHES = """
    (cardinality(f.types) = 0 OR e.type = ANY(f.types))
    AND (cardinality(f.sources) = 0 OR e.source = ANY(f.sources))
    AND e.time >= coalesce(f.time_from, '-infinity'::timestamptz)
    AND e.time < coalesce(f.time_to, 'infinity'::timestamptz)"""
"""Whether event `e` is covered by filter deletion `f`. The open time bounds are written as
infinities, not `IS NULL OR …`, so PostgreSQL can use `events_by_time` for a filter's range
(`time` is never null, so the rows matched are the same): a retention step is a filter with
only `time_to`, and with the `OR` every partition's copy of every step read all of the
tenant's rows (103 against 16 ms a step at 300k rows)."""

STAGE = "sink_stage_events"
"""A session's temporary table: a batch's versions are COPYed here, then upserted in one
statement. COPY costs the sink ~0.7 µs of CPU per row against ~2.4 µs for array
parameters, and PostgreSQL applies the batch ~20 % faster."""

_CREATE_STAGE = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} (
    tenant text, family text, event_id text, type text, source text, subject text,
    time timestamptz, data jsonb, received_at timestamptz, version bigint, attributes jsonb,
    schema_id int, kafka_partition int)
"""

_UPSERT_HEAD = f"""
INSERT INTO events AS e
    (tenant, family, event_id, type, source, subject, time, data, received_at, version,
     attributes, schema_id, kafka_partition)
SELECT e.tenant, e.family, e.event_id, e.type, e.source, e.subject, e.time, e.data,
       e.received_at, e.version, e.attributes, e.schema_id, e.kafka_partition
FROM {STAGE} AS e
WHERE NOT EXISTS (
    SELECT 1 FROM event_deletions d
    WHERE d.tenant = e.tenant AND d.family = e.family AND d.event_id = e.event_id
      AND d.version > e.version)
"""

_UPSERT_FILTER_CHECK = f"""
  AND NOT EXISTS (
    SELECT 1 FROM filter_deletions f
    WHERE f.tenant = e.tenant AND f.family = e.family
      AND f.kafka_partition = e.kafka_partition AND f.version > e.version
      AND {_FILTER_MATCHES})
"""

_UPSERT_TAIL = """
ON CONFLICT (tenant, family, event_id) DO UPDATE SET
    type = EXCLUDED.type, source = EXCLUDED.source, subject = EXCLUDED.subject,
    time = EXCLUDED.time, data = EXCLUDED.data, received_at = EXCLUDED.received_at,
    version = EXCLUDED.version, attributes = EXCLUDED.attributes,
    schema_id = EXCLUDED.schema_id,
    kafka_partition = EXCLUDED.kafka_partition, stored_at = now()
WHERE e.version < EXCLUDED.version
"""

_INSERT_EVENTS = _UPSERT_HEAD + _UPSERT_FILTER_CHECK
_INSERT_EVENTS_NO_FILTERS = _UPSERT_HEAD
"""The guarded insert of the staged rows. The second is used when no delete by filter is
recorded for any tenant of the batch: the check would find nothing, and skipping it saves
an index probe per row (~15% of the upsert). Plain, it is for a batch none of whose
identities is stored (see `FirstWrites`), and a stored one fails it with a unique
violation; followed by `_UPSERT_TAIL` it is the upsert."""


class FirstWrites:
    """Whether one writer's next batch is tried as a plain insert before the upsert.

    Most versions a sink sees are the first of their identity, and PostgreSQL inserts
    them ~20 % cheaper without `ON CONFLICT` (its speculative insertion costs a WAL
    record and an index probe more per row; measured 10.4 to 12.0 against 13.1 to 14.3 µs
    per row into a growing table). So a batch is first inserted plainly in a savepoint, with
    the same guards against deletes; if one of its identities is stored already, the
    unique violation undoes it and the batch is upserted. After such a conflict the next
    `patience` batches go straight to the upsert, so a stream of updates or a replay
    pays for a failed insert once in `patience + 1` batches, not every time.

    Cheaper still, when no recorded delete could refuse any version of the batch (one
    query per batch, `_GUARDED`), the plain insert is a binary COPY straight into
    `events` (`_copy_straight`): PostgreSQL stores each row once, as the bench's raw COPY
    does, without the staging table and its `INSERT ... SELECT`. A stored identity fails
    it the same way, and counts as the same conflict.

    Not shared between threads: one per writer connection.
    """

    def __init__(self, patience: int = 16) -> None:
        self._patience = patience
        self._skip = 0

    def worth_trying(self) -> bool:
        if self._skip:
            self._skip -= 1
            return False
        return True

    def conflicted(self) -> None:
        self._skip = self._patience


_GUARDED = """
SELECT EXISTS (
    SELECT 1 FROM unnest(%s::text[], %s::text[], %s::int[], %s::bigint[])
                  AS g(tenant, family, kafka_partition, version)
    WHERE EXISTS (SELECT 1 FROM event_deletions d
                  WHERE d.tenant = g.tenant AND d.family = g.family AND d.version > g.version)
       OR EXISTS (SELECT 1 FROM filter_deletions f
                  WHERE f.tenant = g.tenant AND f.family = g.family
                    AND f.kafka_partition = g.kafka_partition AND f.version > g.version))
"""
"""Whether any recorded delete could refuse a version of a batch, asked per (tenant, family,
partition) of the batch with its lowest version there: a delete by id of that tenant and
family, or a delete by filter of that partition, newer than it. No: none can (a delete
refuses only versions older than itself), and the batch's first writes may go by COPY
straight into `events`. Yes: the rows are checked one by one (`_INSERT_EVENTS`). Both
probes are index lookups (`event_deletions_by_version`, migration 0024, and
`filter_deletions_by_position`), a few per batch."""

_ANY_FILTERS = "SELECT EXISTS (SELECT 1 FROM filter_deletions WHERE tenant = ANY(%s::text[]))"

_RECORD_DELETIONS = """
INSERT INTO event_deletions AS d (tenant, family, event_id, version, requested_at, deletion_id)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::timestamptz[],
                     %s::text[])
ON CONFLICT (tenant, family, event_id) DO UPDATE SET
    version = EXCLUDED.version, requested_at = EXCLUDED.requested_at, deleted_at = now(),
    deletion_id = EXCLUDED.deletion_id
WHERE d.version < EXCLUDED.version
"""
"""`deletion_id` names the receipt, for the event's history (migration 0011)."""

_DELETE_EVENTS = """
DELETE FROM events e
USING unnest(%s::text[], %s::text[], %s::text[], %s::bigint[])
      AS t(tenant, family, event_id, version)
WHERE e.tenant = t.tenant AND e.family = t.family AND e.event_id = t.event_id
  AND e.version < t.version
RETURNING e.tenant, e.family, e.event_id
"""

_DEAD_LETTER_BEFORE = """
    ((dl.source_offset IS NOT NULL AND (dl.source_offset << 20) < {version}
      AND dl.source_partition IS NOT DISTINCT FROM {partition})
     OR (dl.source_offset IS NULL AND dl.received_at <= {requested_at}))"""
"""A dead letter precedes a delete: by position for the stream's, by time for the door's."""

_DELETE_DEAD_LETTERS = f"""
WITH doomed AS (
    SELECT dl.dead_letter_id, dl.tenant, t.family, t.event_id
    FROM dead_letters dl
    JOIN unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::int[], %s::timestamptz[])
         AS t(tenant, family, event_id, version, kafka_partition, requested_at)
      ON dl.tenant = t.tenant AND dl.family = t.family AND dl.event_id = t.event_id
    WHERE {
    _DEAD_LETTER_BEFORE.format(
        version="t.version",
        partition="coalesce(t.kafka_partition, dl.source_partition)",
        requested_at="coalesce(t.requested_at, 'infinity')",
    )
}
    ORDER BY dl.dead_letter_id
    FOR UPDATE OF dl
)
DELETE FROM dead_letters dl USING doomed
WHERE dl.tenant = doomed.tenant AND dl.dead_letter_id = doomed.dead_letter_id
RETURNING doomed.tenant, doomed.family, doomed.event_id
"""
"""Rows are locked in `dead_letter_id` order (`_DELETE_ALL_DEAD_LETTERS` too): the sink's
writers share the door's dead letters, and locking them in any order let two writers'
deletes deadlock (PostgreSQL broke it and the batch was retried)."""

_RECORD_FILTER = """
INSERT INTO filter_deletions (tenant, family, deletion_id, kafka_partition, version, types,
                              sources, time_from, time_to, requested_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant, deletion_id, kafka_partition) DO NOTHING
"""

_PRUNE_COVERED_FILTERS = """
DELETE FROM filter_deletions o
USING filter_deletions n
WHERE n.tenant = %s AND n.deletion_id = %s AND n.kafka_partition = %s
  AND o.tenant = n.tenant AND o.family = n.family AND o.kafka_partition = n.kafka_partition
  AND o.version < n.version AND o.requested_at <= n.requested_at
  AND (cardinality(n.types) = 0 OR (cardinality(o.types) > 0 AND o.types <@ n.types))
  AND (cardinality(n.sources) = 0 OR (cardinality(o.sources) > 0 AND o.sources <@ n.sources))
  AND (n.time_from IS NULL OR (o.time_from IS NOT NULL AND o.time_from >= n.time_from))
  AND (n.time_to IS NULL OR (o.time_to IS NOT NULL AND o.time_to <= n.time_to))
"""
"""Deletes by filter of the same partition that the one just recorded covers: older (a lower
version, requested no later) and matching no event it does not match. Every check that
reads them (an upsert's, a late dead letter's) would find the newer one too, so they go:
retention's steps, each ending later than the last, keep one row per partition and rule
instead of one per step. Replays are refused by `event_deletions`, which this leaves."""

_APPLY_FILTER = f"""
DELETE FROM events e
USING filter_deletions f
WHERE f.tenant = %s AND f.deletion_id = %s AND f.kafka_partition = %s
  AND e.tenant = f.tenant AND e.family = f.family
  AND ((e.kafka_partition = f.kafka_partition AND e.version < f.version)
       OR e.kafka_partition IS NULL)
  AND {_FILTER_MATCHES}
RETURNING e.event_id
"""

_DELETE_ALL_DEAD_LETTERS = f"""
DELETE FROM dead_letters
WHERE (tenant, dead_letter_id) IN (
    SELECT dl.tenant, dl.dead_letter_id FROM dead_letters dl
    WHERE dl.tenant = %(tenant)s AND dl.family = %(family)s
      AND {
    _DEAD_LETTER_BEFORE.format(
        version="%(version)s", partition="%(partition)s", requested_at="%(requested_at)s"
    )
}
    ORDER BY dl.dead_letter_id
    FOR UPDATE
)
"""

_INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (dead_letter_id, tenant, family, route, content_type, raw, stage,
    reasons, received_at, event_id, attempt, replay_of, source_topic, source_partition,
    source_offset, request_id)
VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant, dead_letter_id) DO NOTHING
"""

_DROP_DELETED_DEAD_LETTERS = f"""
DELETE FROM dead_letters dl
WHERE (dl.tenant, dl.dead_letter_id) IN (SELECT * FROM unnest(%s::text[], %s::uuid[]))
  AND (EXISTS (
        SELECT 1 FROM event_deletions d
        WHERE d.tenant = dl.tenant AND d.family = dl.family AND d.event_id = dl.event_id
          AND {
    _DEAD_LETTER_BEFORE.format(
        version="d.version",
        partition="dl.source_partition",
        requested_at="coalesce(d.requested_at, '-infinity')",
    )
})
    OR EXISTS (
        SELECT 1 FROM filter_deletions f
        WHERE f.tenant = dl.tenant AND f.family = dl.family
          AND cardinality(f.types) = 0 AND cardinality(f.sources) = 0
          AND f.time_from IS NULL AND f.time_to IS NULL
          AND {
    _DEAD_LETTER_BEFORE.format(
        version="f.version", partition="f.kafka_partition", requested_at="f.requested_at"
    )
}))
"""
"""Dead letters of this batch that a recorded delete already covers: they arrived late."""


@dataclass(frozen=True)
class Removed:
    """An identity a delete by filter removed from PostgreSQL: the sink tombstones it."""

    tenant: str
    family: str
    event_id: str
    partition: int
    version: int
    requested_at: Any


@dataclass
class WriteResult:
    """What a batch's deletes removed, for receipts and for tombstones on `events`; and how
    many versions PostgreSQL refused (dead-lettered), of which `reconstructed` without the
    bytes first received."""

    removed_by_filters: list[Removed] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    refused: int = 0
    reconstructed: int = 0

    def add(self, other: WriteResult) -> None:
        self.removed_by_filters += other.removed_by_filters
        self.steps += other.steps
        self.refused += other.refused
        self.reconstructed += other.reconstructed


def _columns(rows: Sequence[Any], names: Sequence[str]) -> list[list[Any]]:
    return [[getattr(r, n) for r in rows] for n in names]


def write_events(
    conn: psycopg.Connection[Any],
    upserts: Sequence[Version],
    tombstones: Sequence[TombstoneRow],
    *,
    originals: EnvelopeReader | None = None,
    first_writes: FirstWrites | None = None,
) -> WriteResult:
    """Apply versions and deletes by id inside the caller's transaction (deletes first;
    versions decide, so their order within the call does not matter).

    `originals` reads back from `ingest.raw` the bytes first received of a version
    PostgreSQL refuses, for its dead letter (without it, that `raw` is reconstructed).
    With `first_writes`, versions may be applied by a plain insert when none of their
    identities is stored (see `FirstWrites`); the outcome is the same. The versions are
    written in savepoints (see `_upsert_staged`), undone alone when PostgreSQL refuses a
    row or a plain insert meets a stored identity.
    """
    result = WriteResult()
    _apply_tombstones(conn, tombstones, result)
    latest = newest_wins(upserts)
    if latest:
        tenants = sorted({r.tenant for r in latest})
        checked = conn.execute(_ANY_FILTERS, (tenants,)).fetchone()
        insert = _INSERT_EVENTS if checked and checked[0] else _INSERT_EVENTS_NO_FILTERS
        letters = _upsert_staged(conn, latest, insert, originals, first_writes)
        result.refused = len(letters)
        result.reconstructed = sum(
            any(r["code"] == RECONSTRUCTED for r in letter["reasons"]) for letter in letters
        )
    record_steps(conn, result.steps)
    return result


def apply_filters(conn: psycopg.Connection[Any], filters: Sequence[FilterRow]) -> WriteResult:
    """Apply deletes by filter, in partition and version order, inside the caller's
    transaction; what they removed (the sink tombstones it on `events`)."""
    result = WriteResult()
    for flt in sorted(filters, key=lambda f: (f.partition, f.version)):
        _apply_filter(conn, flt, result)
    record_steps(conn, result.steps)
    return result


def _upsert_staged(
    conn: psycopg.Connection[Any],
    rows: Sequence[Version],
    insert: str,
    originals: EnvelopeReader | None,
    first_writes: FirstWrites | None,
) -> list[dict[str, Any]]:
    """COPY `rows` into the session's staging table, upsert them from it, empty it again;
    return the dead letters of rows PostgreSQL refused (see below). First writes that no
    recorded delete could refuse skip the staging table (`_copy_straight`).

    All inside the caller's transaction, so a failed batch leaves nothing staged; the
    table is emptied after each use because one transaction may upsert several segments.

    A row PostgreSQL refuses (validation keeps them out, but `events` is a contract
    anything may write to) must not stop the sink on this batch for ever: the rows are
    then staged one by one, the refused ones become dead letters (stage `sink`, their
    envelopes read back through `originals` in one go) and the rest is stored.
    """
    plain = first_writes is not None and first_writes.worth_trying()
    if plain:
        straight = _copy_straight(conn, rows)
        if straight is _Straight.STORED:
            return []
        if straight is _Straight.STORED_IDENTITY and first_writes is not None:
            first_writes.conflicted()
            plain = False
    conn.execute(_CREATE_STAGE)
    try:
        with conn.transaction(), conn.cursor() as cur:  # a savepoint: undone alone on failure
            copy_event_rows(cur, STAGE, rows, with_partition=True)
            _apply_stage(conn, cur, insert, first_writes if plain else None)
        return []
    except psycopg.DataError as exc:
        log.error("PostgreSQL refused a row of a batch of %d (%s); isolating it", len(rows), exc)
    refused: list[tuple[EventRow, str]] = []
    for row in rows:  # each row staged in its own savepoint; what PostgreSQL takes stays
        try:
            with conn.transaction(), conn.cursor() as cur:
                copy_event_rows(cur, STAGE, [row], with_partition=True)
        except psycopg.DataError as exc:
            refused.append((decoded(row), str(exc).splitlines()[0]))
    letters = unstorable_dead_letters(refused, originals)
    write_dead_letters(conn, letters)
    with conn.cursor() as cur:
        _apply_stage(conn, cur, insert, first_writes if plain else None)
    for row, reason in refused:
        log.error("dead-lettered %s version %d: PostgreSQL refused it: %s", row.identity,
                  row.version, reason)  # fmt: skip
    return letters


class _Straight(enum.Enum):
    STORED = "stored"
    STORED_IDENTITY = "an identity is stored already"
    DECLINED = "a delete might refuse a row, or PostgreSQL refused one"


def _copy_straight(conn: psycopg.Connection[Any], rows: Sequence[Version]) -> _Straight:
    """COPY `rows` straight into `events`, in a savepoint, if no recorded delete could refuse
    any of them (`_GUARDED`); whether they are stored so, and if not, why.

    PostgreSQL then stores each row once, as the bench's raw COPY does, instead of staging
    it and inserting it again with its probes of the deletion records. A stored identity
    fails the COPY with a unique violation and a value PostgreSQL refuses with a data
    error: either undoes the savepoint alone and the caller stages the batch as before.
    """
    guarded = conn.execute(_GUARDED, _lowest_versions(rows)).fetchone()
    if guarded is None or guarded[0]:
        return _Straight.DECLINED
    try:
        with conn.transaction(), conn.cursor() as cur:  # a savepoint: undone alone
            copy_event_rows(cur, "events", rows, with_partition=True)
        return _Straight.STORED
    except UniqueViolation:
        log.debug("a batch holds a stored identity; upserting it instead")
        return _Straight.STORED_IDENTITY
    except psycopg.DataError as exc:
        log.debug("PostgreSQL refused a row of a batch copied straight (%s); staging it", exc)
        return _Straight.DECLINED


def _lowest_versions(rows: Sequence[Version]) -> list[list[Any]]:
    """`_GUARDED`'s columns: each (tenant, family, partition) of `rows` with its lowest version."""
    lowest: dict[tuple[str, str, int | None], int] = {}
    for r in rows:
        key = (r.tenant, r.family, r.partition)
        held = lowest.get(key)
        if held is None or r.version < held:
            lowest[key] = r.version
    return [[k[0] for k in lowest], [k[1] for k in lowest], [k[2] for k in lowest],
            list(lowest.values())]  # fmt: skip


def _apply_stage(
    conn: psycopg.Connection[Any],
    cur: psycopg.Cursor[Any],
    insert: str,
    first_writes: FirstWrites | None,
) -> None:
    """Apply the staged rows with the guarded `insert`, then empty the stage: plainly when
    `first_writes` is given (a plain insert is worth trying) and no identity is stored,
    else as the upsert."""
    upsert = True
    if first_writes is not None:
        try:
            with conn.transaction():  # a savepoint: a stored identity undoes the insert alone
                cur.execute(insert)
            upsert = False
        except UniqueViolation:
            log.debug("a staged batch holds a stored identity; upserting it instead")
            first_writes.conflicted()
    if upsert:
        cur.execute(insert + _UPSERT_TAIL)
    cur.execute(f"TRUNCATE {STAGE}")


def _printable(text: str) -> str:
    """`text` without NUL, which the dead letter's own text and jsonb columns would refuse."""
    return text.replace("\x00", "\ufffd")


def _apply_tombstones(
    conn: psycopg.Connection[Any], tombstones: Sequence[TombstoneRow], result: WriteResult
) -> None:
    deletes = newest_wins(tombstones)
    if not deletes:
        return
    conn.execute(
        _RECORD_DELETIONS,
        _columns(
            deletes, ("tenant", "family", "event_id", "version", "requested_at", "deletion_id")
        ),
    )
    gone = conn.execute(
        _DELETE_EVENTS, _columns(deletes, ("tenant", "family", "event_id", "version"))
    ).fetchall()
    names = ("tenant", "family", "event_id", "version", "partition", "requested_at")
    letters = conn.execute(_DELETE_DEAD_LETTERS, _columns(deletes, names)).fetchall()
    events_gone = {tuple(r) for r in gone}
    letters_gone: dict[tuple[str, ...], int] = {}
    for r in letters:
        letters_gone[tuple(r)] = letters_gone.get(tuple(r), 0) + 1
    winners = {(t.identity, t.version) for t in deletes}
    for t in tombstones:
        if t.deletion_id is None or t.from_sink:
            continue
        won = (t.identity, t.version) in winners
        result.steps.append(Step(
            t.deletion_id, id_unit(t.event_id), t.tenant,
            events_removed=int(won and t.identity in events_gone),
            dead_letters_removed=letters_gone.get(t.identity, 0) if won else 0,
        ))  # fmt: skip


def _apply_filter(conn: psycopg.Connection[Any], flt: FilterRow, result: WriteResult) -> None:
    f = flt.filter
    conn.execute(_RECORD_FILTER, (
        flt.tenant, flt.family, flt.deletion_id, flt.partition, flt.version, list(f.types),
        list(f.sources), f.time_from, f.time_to, flt.requested_at,
    ))  # fmt: skip
    ids = [r[0] for r in conn.execute(
        _APPLY_FILTER, (flt.tenant, flt.deletion_id, flt.partition)).fetchall()]  # fmt: skip
    conn.execute(_PRUNE_COVERED_FILTERS, (flt.tenant, flt.deletion_id, flt.partition))
    removed = [Removed(flt.tenant, flt.family, i, flt.partition, flt.version, flt.requested_at)
               for i in ids]  # fmt: skip
    letters = 0
    if removed:
        cols = _columns(removed, ("tenant", "family", "event_id", "version", "requested_at"))
        conn.execute(_RECORD_DELETIONS, [*cols, [flt.deletion_id] * len(removed)])
        names = ("tenant", "family", "event_id", "version", "partition", "requested_at")
        letters = len(conn.execute(_DELETE_DEAD_LETTERS, _columns(removed, names)).fetchall())
    if f.is_all:
        params = {"tenant": flt.tenant, "family": flt.family, "version": flt.version,
                  "partition": flt.partition, "requested_at": flt.requested_at}  # fmt: skip
        letters += conn.execute(_DELETE_ALL_DEAD_LETTERS, params).rowcount
    result.removed_by_filters += removed
    result.steps.append(Step(
        flt.deletion_id, partition_unit(flt.partition), flt.tenant, len(removed), letters
    ))  # fmt: skip


def write_dead_letters(conn: psycopg.Connection[Any], records: Sequence[dict[str, Any]]) -> None:
    """Store dead letters raw; a redelivered one (same id) changes nothing.

    A dead letter that a recorded delete covers (it arrived after the delete was
    applied, though it was rejected before the delete) is removed again at once.
    """
    if not records:
        return
    with conn.cursor() as cur:
        cur.executemany(_INSERT_DEAD_LETTER, [_dead_letter_params(r) for r in records])
    conn.execute(
        _DROP_DELETED_DEAD_LETTERS,
        ([r["tenant"] for r in records], [r["dead_letter_id"] for r in records]),
    )


def _dead_letter_params(r: dict[str, Any]) -> tuple[Any, ...]:
    """The row of a dead letter. Its texts lose any NUL (as U+FFFD): an event rejected *for*
    a NUL in its id still needs a storable dead letter (`raw`, bytea, keeps it exactly)."""
    return (
        r["dead_letter_id"], r["tenant"], r["family"], json.dumps(_printable_json(r["route"])),
        r["content_type"], r["raw"], r["stage"], json.dumps(_printable_json(r["reasons"])),
        r["received_at"], _optional_printable(r["event_id"]), r["attempt"],
        _optional_printable(r["replay_of"]), r["source_topic"], r["source_partition"],
        r["source_offset"], _optional_printable(r.get("request_id")),
    )  # fmt: skip


def _optional_printable(text: str | None) -> str | None:
    return None if text is None else _printable(text)


def _printable_json(value: Any) -> Any:
    """`value` (JSON-ready) with NUL replaced in every string, keys included."""
    if isinstance(value, str):
        return _printable(value)
    if isinstance(value, dict):
        return {_printable(str(k)): _printable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable_json(v) for v in value]
    return value
