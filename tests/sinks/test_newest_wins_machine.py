"""Invariants 3 and 4 under reordering and redelivery: a state machine against real PostgreSQL.

The machine plays the pipeline around the sink. Each partition has a log of
what the stream wrote to `events` (versions, tombstones, deletes by filter) and
of dead letters, in the order Kafka would hold them; what the sink writes back
(tombstones after a delete by filter, repairs) is appended to the same log, as
Kafka would. Rules accept upserts (some duplicated inside one request), rejects,
deletes by id and by filter, retention's expiry steps (deletes by filter up to a
time); let the sink consume a few records per partition in one transaction;
restart it from an earlier offset; or present one old record again alone. Retention
moves a partition's earliest offset past records the sink has read (nothing below it can
be presented again), and pruning (`ingest.pruning`, the real SQL) removes the deletion
records older than everything that can still arrive. After
every step PostgreSQL must equal a model that folds the records the sink has seen in
version order; once the sink has caught up, the
last record per key in each log (what compaction keeps) must agree with it too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ingest.pruning import Horizon, prune_calls
from schemas.codec import encode
from schemas.deletes import DeleteFilter, filter_key
from schemas.identity import Identity
from schemas.versions import INDEX_BITS, envelope_floor, version_of
from sinks.batch import SinkBatch, write_batch
from sinks.records import event_record
from sinks.republish import WriteBack
from sinks.rows import FilterRow, TombstoneRow
from sinks.writer import FirstWrites
from streams.outputs import tombstone_headers
from streams.process import TombstoneOut

pytestmark = pytest.mark.integration

PARTITIONS = 2
IDS = {"a": 0, "b": 1, "c": 0, "d": 1}
TYPES = ("t1", "t2")
SOURCES = ("s1", "s2")
TIMES = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
REQUESTED = datetime(2024, 6, 1, tzinfo=UTC)
FAMILY = "native"


@dataclass
class Record:
    """One record on a partition's log: what Kafka would hand the sink."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int
    from_stream: bool = True
    dead_letter: dict[str, Any] | None = None


class Msg:
    """A stand-in for a confluent-kafka Message built from a `Record`."""

    def __init__(self, rec: Record) -> None:
        self._rec = rec

    def key(self) -> bytes | None:
        return self._rec.key

    def value(self) -> bytes | None:
        return self._rec.value

    def partition(self) -> int:
        return self._rec.partition

    def headers(self) -> list[tuple[str, bytes]]:
        return self._rec.headers


@dataclass
class Fact:
    """A stream-written fact, for the model: kind, version and its data."""

    kind: str  # upsert | delete | filter | dead
    version: int
    event_id: str = ""
    fields: tuple[str, str, datetime] | None = None
    flt: DeleteFilter | None = None
    dead_letter_id: str = ""


@dataclass
class Partition:
    log: list[Record] = field(default_factory=list)
    facts: list[Fact | None] = field(default_factory=list)
    pos: int = 0
    seen: int = 0
    next_offset: int = 0
    earliest: int = 0
    """Records below this index are gone from Kafka (retention): never presented again."""


CONN: psycopg.Connection[Any] | None = None


class NewestWinsMachine(RuleBasedStateMachine):
    """Drives the sink's write functions like the pipeline would, and checks PostgreSQL."""

    @initialize()
    def start(self) -> None:
        self.tenant = f"m{uuid.uuid4().hex[:12]}"
        self.parts = [Partition() for _ in range(PARTITIONS)]
        self.dlq: list[tuple[Record, Fact]] = []

    # -- what the stream writes ------------------------------------------------------

    def _append(self, p: int, rec: Record, fact: Fact | None) -> None:
        self.parts[p].log.append(rec)
        self.parts[p].facts.append(fact)

    def _offset(self, p: int) -> int:
        offset = self.parts[p].next_offset
        self.parts[p].next_offset += 1
        return offset

    def _event(self, event_id: str, version: int, kind: tuple[str, str, datetime]) -> Record:
        record = {
            "tenant": self.tenant, "family": FAMILY, "event_id": event_id, "type": kind[0],
            "source": kind[1], "subject": None, "time": kind[2], "data_json": "{}",
            "received_at": REQUESTED, "version": version,
        }  # fmt: skip
        key = Identity(self.tenant, FAMILY, event_id).key()
        return Record(key, encode("CanonicalEvent", record), [], IDS[event_id])

    @rule(
        event_id=st.sampled_from(sorted(IDS)),
        kinds=st.lists(
            st.tuples(st.sampled_from(TYPES), st.sampled_from(SOURCES), st.sampled_from(TIMES)),
            min_size=1, max_size=3,
        ),
    )  # fmt: skip
    def upsert(self, event_id: str, kinds: list[tuple[str, str, datetime]]) -> None:
        """One request with one or more versions of the same id (later element newer)."""
        p = IDS[event_id]
        offset = self._offset(p)
        for index, kind in enumerate(kinds):
            version = version_of(offset, index)
            self._append(p, self._event(event_id, version, kind),
                         Fact("upsert", version, event_id, kind))  # fmt: skip

    @rule(event_id=st.sampled_from(sorted(IDS)))
    def reject(self, event_id: str) -> None:
        """The stream dead-letters a version; `events.dlq` may deliver it much later."""
        p = IDS[event_id]
        offset = self._offset(p)
        dl_id = str(uuid.uuid4())
        record = {
            "dead_letter_id": dl_id, "tenant": self.tenant, "family": FAMILY, "route": {},
            "content_type": "application/json", "raw": b"{}", "stage": "stream",
            "reasons": [], "received_at": REQUESTED, "event_id": event_id, "attempt": 1,
            "replay_of": None, "source_topic": "ingest.raw", "source_partition": p,
            "source_offset": offset,
        }  # fmt: skip
        rec = Record(None, None, [], p, dead_letter=record)
        self.dlq.append((rec, Fact("dead", version_of(offset, 0), event_id, dead_letter_id=dl_id)))

    @precondition(lambda self: bool(self.dlq))
    @rule(data=st.data())
    def dead_letter_arrives(self, data: st.DataObject) -> None:
        """The dead-letter topic is read independently: one dead letter reaches the sink's log."""
        rec, fact = self.dlq.pop(data.draw(st.integers(0, len(self.dlq) - 1)))
        self._append(rec.partition, rec, fact)

    @rule(event_id=st.sampled_from(sorted(IDS)))
    def delete_by_id(self, event_id: str) -> None:
        p = IDS[event_id]
        version = version_of(self._offset(p), 0)
        key = Identity(self.tenant, FAMILY, event_id).key()
        tomb = TombstoneOut(key, version, f"r-{uuid.uuid4()}", REQUESTED)
        self._append(p, Record(key, None, tombstone_headers(tomb), p),
                     Fact("delete", version, event_id))  # fmt: skip

    @rule(
        types=st.sets(st.sampled_from(TYPES), max_size=1),
        sources=st.sets(st.sampled_from(SOURCES), max_size=1),
        time_from=st.sampled_from((None, TIMES[1])),
    )
    def delete_by_filter(
        self, types: set[str], sources: set[str], time_from: datetime | None
    ) -> None:
        """Written to every partition, each copy at that partition's next position."""
        self._write_filter(DeleteFilter(tuple(sorted(types)), tuple(sorted(sources)), time_from))

    @rule(types=st.sets(st.sampled_from(TYPES), max_size=1))
    def expire(self, types: set[str]) -> None:
        """A retention step (`ingest.retention`): the events older than the later time
        (of one type, or all) expire, as a delete by filter ending at that time."""
        self._write_filter(DeleteFilter(tuple(sorted(types)), time_to=TIMES[1]))

    def _write_filter(self, flt: DeleteFilter) -> None:
        deletion_id = f"f-{uuid.uuid4()}"
        for p in range(PARTITIONS):
            version = version_of(self._offset(p), 0)
            record = {
                "deletion_id": deletion_id, "tenant": self.tenant, "family": FAMILY,
                "filter": flt.to_record(), "version": version, "requested_at": REQUESTED,
            }  # fmt: skip
            rec = Record(filter_key(deletion_id), encode("FilterDeletion", record), [], p)
            self._append(p, rec, Fact("filter", version, flt=flt))

    # -- the sink ----------------------------------------------------------------------

    def _apply(self, records: list[Record], plain_first: bool = True) -> None:
        """One sink batch in one transaction; write-backs appended to the log like Kafka.

        `plain_first`: versions are tried as a plain insert first (`FirstWrites`, which
        undoes it when an identity is stored), else upserted at once, as the sink does for
        a while after such a conflict. Both must give the same result."""
        batch = SinkBatch()
        for rec in records:
            row = rec.dead_letter or event_record(Msg(rec))  # type: ignore[arg-type]
            if row is not None:
                batch.add(row)
        assert CONN is not None
        backs: list[WriteBack] = []
        first_writes = FirstWrites(patience=0) if plain_first else None
        write_batch(CONN, batch, backs.extend, first_writes=first_writes)
        for partition, key, value, headers in backs:
            self._append(partition, Record(key, value, headers, partition, False), None)

    @rule(
        counts=st.lists(st.integers(0, 4), min_size=PARTITIONS, max_size=PARTITIONS),
        plain_first=st.booleans(),
    )
    def consume(self, counts: list[int], plain_first: bool = True) -> None:
        """The sink takes the next few records of every partition as one batch."""
        batch: list[Record] = []
        for part, n in zip(self.parts, counts, strict=True):
            batch += part.log[part.pos : part.pos + n]
            part.pos = min(len(part.log), part.pos + n)
            part.seen = max(part.seen, part.pos)
        self._apply(batch, plain_first)

    @rule()
    def catch_up(self) -> None:
        """The sink reads to the end of every log, its own write-backs included."""
        for _ in range(10):
            if all(part.pos == len(part.log) for part in self.parts):
                return
            self.consume([len(part.log) - part.pos for part in self.parts])
        raise AssertionError("the sink's write-backs did not settle")

    @rule(p=st.integers(0, PARTITIONS - 1), back=st.integers(1, 6))
    def restart_from_earlier_offset(self, p: int, back: int) -> None:
        self.parts[p].pos = max(self.parts[p].earliest, self.parts[p].pos - back)

    @precondition(lambda self: any(part.seen > part.earliest for part in self.parts))
    @rule(data=st.data())
    def present_old_record_again(self, data: st.DataObject) -> None:
        """A redelivery of one record the sink already applied, alone in its batch."""
        part = data.draw(st.sampled_from([p for p in self.parts if p.seen > p.earliest]))
        index = data.draw(st.integers(part.earliest, part.seen - 1))
        self._apply([part.log[index]])

    # -- retention of the topics, and pruning ----------------------------------------------

    @rule(p=st.integers(0, PARTITIONS - 1), n=st.integers(1, 6))
    def retention_deletes_old_records(self, p: int, n: int) -> None:
        """Kafka's retention deletes the oldest records of a partition the sink has read."""
        part = self.parts[p]
        part.earliest = min(part.pos, part.earliest + n)

    @rule()
    def prune_deletion_records(self) -> None:
        """Pruning at the horizon: the earliest offset per partition that can still present
        a version to the sink (`Horizon.earliest`), with every record old enough in time."""
        found = Horizon(datetime.now(UTC) + timedelta(days=1),
                        {p: self._floor(p) for p in range(PARTITIONS)})  # fmt: skip
        assert CONN is not None
        for _table, statement, params in prune_calls(found):
            CONN.execute(statement, params)

    def _floor(self, p: int) -> int:
        """The oldest `ingest.raw` offset partition `p` can still present: of a record left
        on its log (read again after a restart or a redelivery), of a dead letter still on
        its way, else the next offset."""
        part = self.parts[p]
        offsets = [_offset_of(rec) for rec in part.log[part.earliest :]]
        offsets += [fact.version >> INDEX_BITS for rec, fact in self.dlq if rec.partition == p]
        return min([*offsets, part.next_offset])

    # -- the model ---------------------------------------------------------------------

    def _expected(self) -> tuple[dict[str, int], set[str], dict[str, int]]:
        """(live id → version, live dead-letter ids, filter id → partitions applied).

        Records of one partition are folded in log order, which is version order
        for what the stream wrote; a dead letter arriving late is checked against
        every delete already folded (`deleted`: newest delete per id, `wiped`:
        newest delete-all per partition).
        """
        live: dict[str, tuple[int, tuple[str, str, datetime]]] = {}
        letters: dict[str, tuple[str, int]] = {}
        applied: dict[str, int] = {}
        deleted: dict[str, int] = {}
        wiped: dict[int, int] = {}
        for p, part in enumerate(self.parts):
            for fact, rec in zip(part.facts[: part.seen], part.log[: part.seen], strict=True):
                if fact is None:
                    continue
                if fact.kind == "upsert" and fact.fields is not None:
                    live[fact.event_id] = (fact.version, fact.fields)
                elif fact.kind == "dead":
                    covered = max(deleted.get(fact.event_id, -1), wiped.get(p, -1))
                    if fact.version >= covered:
                        letters[fact.dead_letter_id] = (fact.event_id, fact.version)
                elif fact.kind == "delete":
                    live.pop(fact.event_id, None)
                    _forget(letters, deleted, fact.event_id, fact.version)
                elif fact.kind == "filter" and fact.flt is not None:
                    deletion = rec.key.decode() if rec.key else ""
                    applied[deletion] = applied.get(deletion, 0) + 1
                    _model_filter(fact, p, live, letters, deleted, wiped)
        return {k: v[0] for k, v in live.items()}, set(letters), applied

    @invariant()
    def postgres_matches_the_model(self) -> None:
        if not hasattr(self, "tenant"):
            return
        live, letters, applied = self._expected()
        assert CONN is not None
        stored = dict(CONN.execute(
            "SELECT event_id, version FROM events WHERE tenant = %s", (self.tenant,)
        ).fetchall())  # fmt: skip
        assert stored == live
        kept = {str(r[0]) for r in CONN.execute(
            "SELECT dead_letter_id FROM dead_letters WHERE tenant = %s", (self.tenant,)
        ).fetchall()}  # fmt: skip
        assert kept == letters
        steps = dict(CONN.execute(
            "SELECT deletion_id, count(*) FROM deletion_steps WHERE tenant = %s"
            " AND unit LIKE 'partition:%%' GROUP BY deletion_id", (self.tenant,)
        ).fetchall())  # fmt: skip
        assert steps == {k.removeprefix("~deletion|"): v for k, v in applied.items()}

    @invariant()
    def compaction_keeps_what_postgres_holds(self) -> None:
        """Caught up: the last record per identity key is the stored version, or a delete."""
        if not hasattr(self, "tenant") or any(p.pos < len(p.log) for p in self.parts):
            return
        assert CONN is not None
        stored = dict(CONN.execute(
            "SELECT event_id, version FROM events WHERE tenant = %s", (self.tenant,)
        ).fetchall())  # fmt: skip
        last: dict[str, int | None] = {}
        for part in self.parts:
            for rec in part.log:
                if rec.key is None or rec.key.startswith(b"~"):
                    continue
                row = event_record(Msg(rec))  # type: ignore[arg-type]
                alive = row is not None and not isinstance(row, TombstoneRow | FilterRow)
                last[Identity.from_key(rec.key).event_id] = row.version if alive else None  # type: ignore[union-attr]
        assert {k: v for k, v in last.items() if v is not None} == stored


def _offset_of(rec: Record) -> int:
    """The `ingest.raw` offset of what a record carries (0 when it carries no version)."""
    if rec.dead_letter is not None:
        return int(rec.dead_letter["source_offset"])
    row = event_record(Msg(rec))  # type: ignore[arg-type]
    return int(getattr(row, "version", 0)) >> INDEX_BITS


def _forget(
    letters: dict[str, tuple[str, int]], deleted: dict[str, int], event_id: str, version: int
) -> None:
    """A delete of `event_id` at `version` removes its dead letters from envelopes before it."""
    deleted[event_id] = max(deleted.get(event_id, -1), version)
    for dl_id, (owner, dl_version) in list(letters.items()):
        if owner == event_id and envelope_floor(dl_version >> 20) < version:
            del letters[dl_id]


def _model_filter(
    fact: Fact,
    p: int,
    live: dict[str, tuple[int, tuple[str, str, datetime]]],
    letters: dict[str, tuple[str, int]],
    deleted: dict[str, int],
    wiped: dict[int, int],
) -> None:
    """A delete by filter in partition `p`: the matching live ids there go, with their letters."""
    assert fact.flt is not None
    for event_id, (_, kind) in list(live.items()):
        if IDS[event_id] == p and fact.flt.matches(*kind):
            del live[event_id]
            _forget(letters, deleted, event_id, fact.version)
    if fact.flt.is_all:
        wiped[p] = max(wiped.get(p, -1), fact.version)
        for dl_id, (event_id, version) in list(letters.items()):
            if IDS[event_id] == p and version < fact.version:
                del letters[dl_id]


@pytest.fixture
def sink_connection(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    global CONN
    with psycopg.connect(database_url, autocommit=True) as conn:
        CONN = conn
        try:
            yield conn
        finally:
            CONN = None


def _run(examples: int, steps: int) -> None:
    run_state_machine_as_test(
        NewestWinsMachine,
        settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )  # fmt: skip


def test_newest_wins_and_deletes_hold_under_redelivery(
    sink_connection: psycopg.Connection[Any],
) -> None:
    _run(examples=300, steps=25)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_newest_wins_and_deletes_hold_under_redelivery_at_length(
    sink_connection: psycopg.Connection[Any],
) -> None:
    _run(examples=2000, steps=40)


def test_a_version_written_between_a_filter_and_its_tombstone_survives_compaction(
    sink_connection: psycopg.Connection[Any],
) -> None:
    """The race the sink's repair exists for, played deterministically."""
    m = NewestWinsMachine()
    m.start()
    m.upsert("a", [("t1", "s1", TIMES[0])])
    m.catch_up()
    m.delete_by_filter({"t1"}, set(), None)
    m.upsert("a", [("t2", "s1", TIMES[0])])
    m.consume([1, 0])  # the filter only: its tombstone for "a" lands after the new version
    m.catch_up()
    m.postgres_matches_the_model()
    m.compaction_keeps_what_postgres_holds()
