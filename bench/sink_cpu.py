"""The sink's write path, CPU per row, client and PostgreSQL, beside a plain binary COPY.

`make bench-sink-cpu`: no Kafka, no other process. It finds or starts PostgreSQL as `make
bench` does, migrates, encodes `--events` real `CanonicalEvent` messages (the bench's own
native events, as the stream writes them), and then, in one run:

* **sink**: decodes them as the sink does (`sinks.records.event_record`) into batches of
  `--batch` and stores each with `sinks.batch.write_batch` (its own transaction), under a
  tenant of its own, into `events` as it stands;
* **copy**: a plain binary COPY of the same decoded rows into `events` (the bench's raw
  baseline, `bench.raw.copy_rows`), committed, under another tenant;
* **copy_bare**: the same COPY into a fresh table shaped like `events` without indexes,
  which says what `events`' indexes cost per row.

`--stored N` first fills `events` to N rows of a tenant of its own (kept between runs, as
`make bench-growth` fills it), to measure the same at 10M rows, beside that tenant or, with
`--into-stored`, into it with ids spread over its primary key (the costly case: every
insert lands on another page of a 10M-row index); `--index-costs` adds what
each index costs PostgreSQL per row (`INDEXES`).

For each it reports the client's `process_time` and the PostgreSQL backend's CPU (utime +
stime of `pg_backend_pid()` from `/proc`, so PostgreSQL must run on this machine) per row.
Both are CPU, not wall time: they move little when other work shares the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import psycopg
from confluent_kafka import Message

from bench.events import event_bytes
from bench.growth import fill
from runtime.settings import load_settings
from schemas.codec import encode
from schemas.history import REQUEST_HEADER
from schemas.identity import Identity
from schemas.topics import TopicNames
from schemas.versions import INDEX_BITS
from sinks.batch import SinkBatch, write_batch
from sinks.bulk import binary_array_parameters, copy_event_rows
from sinks.migrate import migrate
from sinks.rows import EventRow, decoded
from sinks.writer import FirstWrites
from sluice.launchers.services import postgres_service

_TICK = os.sysconf("SC_CLK_TCK")
_TOPICS = TopicNames.for_prefix("")
_T0 = 1_732_356_000_000_000


@dataclass(frozen=True)
class Cost:
    """CPU seconds of the client and of its PostgreSQL backend for `rows` rows."""

    rows: int
    client: float
    server: float
    seconds: float

    def as_dict(self) -> dict[str, float]:
        n = max(self.rows, 1)
        return {"rows": self.rows, "client_us_per_row": 1e6 * self.client / n,
                "postgres_us_per_row": 1e6 * self.server / n,
                "rows_per_second": self.rows / self.seconds if self.seconds else 0.0}  # fmt: skip


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) PostgreSQL backend `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def measured(conn: psycopg.Connection[Any], rows: int, work: Callable[[], None]) -> Cost:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    pid = int(row[0]) if row else 0
    server, client, wall = backend_cpu(pid), time.process_time(), time.perf_counter()
    work()
    return Cost(rows, time.process_time() - client, backend_cpu(pid) - server,
                time.perf_counter() - wall)  # fmt: skip


def messages(
    tenant: str, count: int, partitions: int, per_envelope: int, spread: int = 0
) -> list[Message]:
    """`count` CanonicalEvent messages as the stream writes them: envelopes (one request's
    events for one partition) of `per_envelope` events, spread over `partitions`, the
    first of each with its request header. With `spread`, ids are `stored-<random below
    spread>-<i>`: they fall all over the primary key of `--stored`'s tenant, not after it."""
    out = []
    rng = random.Random(count)
    written = [0] * partitions
    for i in range(count):
        body = json.loads(event_bytes("cpu", i))
        if spread:
            body["id"] = f"stored-{rng.randrange(spread)}-{i}"
        envelope, index = divmod(i, per_envelope)
        partition = envelope % partitions
        record = {
            "tenant": tenant, "family": "native", "event_id": body["id"], "type": body["type"],
            "source": body["source"], "subject": body["subject"], "time": _T0,
            "data_json": json.dumps(body["data"], separators=(",", ":")),
            "received_at": _T0 + 250_000,
            "version": ((envelope // partitions) << INDEX_BITS) | index, "attributes_json": None,
        }  # fmt: skip
        key = Identity(tenant, "native", body["id"]).key()
        value = encode("CanonicalEvent", _with_datetimes(record))
        headers: list[tuple[str, str | bytes | None]] | None = (
            [(REQUEST_HEADER, uuid.uuid4().hex.encode())] if index == 0 else None
        )
        out.append(Message(topic=_TOPICS.events, partition=partition, offset=written[partition],
                           key=key, value=value, headers=headers))  # fmt: skip
        written[partition] += 1
    return out


def _with_datetimes(record: dict[str, Any]) -> dict[str, Any]:
    for name in ("time", "received_at"):
        record[name] = datetime.fromtimestamp(record[name] / 1e6, UTC)
    return record


def sink_writes(conn: psycopg.Connection[Any], msgs: Sequence[Message], batch: int) -> Cost:
    first_writes = FirstWrites()

    def work() -> None:
        for start in range(0, len(msgs), batch):
            taken = SinkBatch.of(msgs[start : start + batch], _TOPICS)
            write_batch(conn, taken, lambda _: None, first_writes=first_writes)

    return measured(conn, len(msgs), work)


def _decode(msgs: Sequence[Message]) -> None:
    SinkBatch.of(msgs, _TOPICS)


def plain_copy(conn: psycopg.Connection[Any], rows: Sequence[EventRow], table: str,
               tenant: str) -> Cost:  # fmt: skip
    def work() -> None:
        with conn.transaction(), conn.cursor() as cur:
            copy_event_rows(cur, table, rows, tenant=tenant)

    return measured(conn, len(rows), work)


INDEXES = {
    "primary key (tenant, family, event_id)": "PRIMARY KEY (tenant, family, event_id)",
    "events_by_time (tenant, family, time, event_id)": "(tenant, family, time, event_id)",
    "(not kept) by type (tenant, family, type, time)": "(tenant, family, type, time)",
    "(not kept) by source (tenant, family, source, time)": "(tenant, family, source, time)",
}
"""The indexes `events` has, and two it does not (what `GET /v1/events?type=` or `?source=`
of a rare value would want), each measured alone on a bare copy of the table."""


def index_costs_of(database: str, rows: Sequence[EventRow]) -> dict[str, float]:
    """PostgreSQL CPU µs per row that each of `INDEXES` adds to a binary COPY of `rows`."""
    costs: dict[str, float] = {}
    with psycopg.connect(database, autocommit=True) as conn:
        for name, definition in (("none", None), *INDEXES.items()):
            table = f"bench_index_{uuid.uuid4().hex[:8]}"
            conn.execute(f"CREATE TABLE {table} (LIKE events INCLUDING DEFAULTS)")
            if definition is not None and definition.startswith("PRIMARY"):
                conn.execute(f"ALTER TABLE {table} ADD {definition}")
            elif definition is not None:
                conn.execute(f"CREATE INDEX ON {table} {definition}")
            conn.execute("CHECKPOINT")
            costs[name] = plain_copy(conn, rows, table, "cpu-index").as_dict()[
                "postgres_us_per_row"
            ]
            conn.execute(f"DROP TABLE {table}")
    bare = costs.pop("none")
    return {"bare table": bare, **{name: cost - bare for name, cost in costs.items()}}


STORED = "cpu-stored"


def _stored_rows(database: str) -> int:
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE tenant = %s", (STORED,)).fetchone()
    return int(row[0]) if row else 0


def _forget(conn: psycopg.Connection[Any], rows: Sequence[EventRow]) -> None:
    """Remove `rows` (and their envelopes) from the stored tenant, keeping what was filled."""
    conn.execute("DELETE FROM events WHERE tenant = %s AND event_id = ANY(%s::text[])",
                 (STORED, [r.event_id for r in rows]))  # fmt: skip
    conn.execute("DELETE FROM ingest_envelopes WHERE tenant = %s", (STORED,))


def run(
    database: str, events: int, batch: int, partitions: int, per_envelope: int, spread: int = 0
) -> dict[str, Any]:
    """One measure of each; with `spread`, the sink and the COPY write into the stored tenant
    (`STORED`), ids spread over its primary key (the sink's rows go again before the COPY)."""
    tag = uuid.uuid4().hex[:8]
    sink_tenant, copy_tenant = f"cpu-sink-{tag}", f"cpu-copy-{tag}"
    if spread:
        sink_tenant = copy_tenant = STORED
    msgs = messages(sink_tenant, events, partitions, per_envelope, spread)
    versions = [decoded(v) for v in SinkBatch.of(msgs, _TOPICS).upserts()]  # as COPY takes them
    bare = f"bench_bare_{tag}"
    with psycopg.connect(database, autocommit=True) as conn:
        binary_array_parameters(conn)
        conn.execute("CHECKPOINT")
        sink = sink_writes(conn, msgs, batch)
        if spread:
            _forget(conn, versions)
        conn.execute("CHECKPOINT")
        copy = plain_copy(conn, versions, "events", copy_tenant)
        conn.execute(f"CREATE TABLE {bare} (LIKE events INCLUDING DEFAULTS)")
        conn.execute("CHECKPOINT")
        copy_bare = plain_copy(conn, versions, bare, copy_tenant)
        decode = measured(conn, len(msgs), lambda: _decode(msgs))
        conn.execute(f"DROP TABLE {bare}")
        if spread:
            _forget(conn, versions)
        for tenant in {sink_tenant, copy_tenant} - {STORED}:
            for table in ("events", "ingest_envelopes"):
                conn.execute(f"DELETE FROM {table} WHERE tenant = %s", (tenant,))
        conn.execute("VACUUM events")
    result = {"events": events, "batch": batch, "stored": _stored_rows(database),
              "sink": sink.as_dict(), "copy": copy.as_dict(),
              "copy_bare": copy_bare.as_dict(), "decode": decode.as_dict()}  # fmt: skip
    result["ratios"] = {
        "sink_rows_per_second_over_copy": sink.as_dict()["rows_per_second"]
        / max(copy.as_dict()["rows_per_second"], 1e-9),
        "sink_postgres_cpu_over_copy": sink.server / max(copy.server, 1e-9),
    }
    return result


@click.command()
@click.option("--events", default=100_000, show_default=True)
@click.option("--batch", default=20_000, show_default=True, help="rows per sink transaction")
@click.option("--partitions", default=4, show_default=True, help="as SLUICE_PARTITIONS")
@click.option(
    "--per-envelope",
    default=64,
    show_default=True,
    help="events per envelope (the bench's 255-event requests over 4 partitions)",
)
@click.option("--runs", default=1, show_default=True)
@click.option("--index-costs", is_flag=True, help="also what each index costs per row")
@click.option(
    "--stored",
    default=0,
    show_default=True,
    help="first fill events to this many rows of a tenant of its own (kept)",
)
@click.option("--into-stored", is_flag=True,
              help="write into --stored's tenant, ids spread over its primary key")  # fmt: skip
def main(
    events: int,
    batch: int,
    partitions: int,
    per_envelope: int,
    runs: int,
    index_costs: bool,
    stored: int,
    into_stored: bool,
) -> None:
    """Measure the sink's write path and a plain COPY of the same rows; print JSON."""
    state = Path(load_settings().state_dir).resolve() / "bench-sink-cpu"
    with contextlib.ExitStack() as stack:
        database = os.environ.get("DATABASE_URL") or stack.enter_context(
            postgres_service(state / "postgres")
        )
        migrate(database)
        held = _stored_rows(database)
        if stored > held:  # as `make bench-growth` fills: a million per statement, then ANALYZE
            took = fill(database, STORED, held, stored, partitions)
            print(f"events filled to {stored:,} rows in {took:.0f} s", flush=True)
        for _ in range(runs):
            spread = max(stored, 1) if into_stored else 0
            figures = run(database, events, batch, partitions, per_envelope, spread)
            print(json.dumps(figures, indent=1), flush=True)
        if index_costs:
            taken = SinkBatch.of(messages("cpu-index", events, partitions, per_envelope), _TOPICS)
            rows = [decoded(v) for v in taken.upserts()]
            print(json.dumps({"index_postgres_us_per_row": index_costs_of(database, rows)},
                             indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
