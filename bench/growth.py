"""The sink as fast at 10M stored rows as at zero, and how queries grow: `make bench-growth`
(`python -m bench.growth`).

It finds or starts Kafka and PostgreSQL as `make bench` does, migrates, and for each size
in `--sizes` (default 0, 1M, 10M) fills `events` with that many rows of one tenant straight
in PostgreSQL (one `INSERT … SELECT generate_series` per million, then `ANALYZE`), starts
the whole pipeline, and measures:

1. a burst of `--burst` fresh events of another tenant through the door (the table and
   its indexes are shared, so it lands on all the rows), timed from its first
   request until the sink stored all of it (the pipeline's stored/s with that many rows
   already there; the ratio to size 0 is the figure: the pipeline-speed issue asks ≥ 0.8);
2. `GET /v1/events` with filters: a fixed set of queries (by type, by source, by time
   window, by several at once, first page and a later cursor page), each `--runs` times:
   p50 and p99 in ms.

The rows grow from one size to the next (the database is kept), so the burst at each size
lands on a table already that large. Results go to `bench-results/growth-<time>.{json,md}`.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import psycopg

from bench.report import write_named
from bench.retention import burst
from bench.run import free_port
from runtime.settings import Settings, load_settings
from runtime.topic_admin import ensure_topics
from sinks.migrate import migrate
from sluice.keys_cli import create_key
from sluice.launchers.services import kafka_service, postgres_service
from sluice.stack import ProcessStack

_FILL = """
INSERT INTO events (tenant, family, event_id, type, source, subject, time, data, received_at,
                    version, kafka_partition, stored_at)
SELECT %(tenant)s, 'native', 'stored-' || i, 'usage.' || (i %% 20), '/svc/' || (i %% 100),
       NULL, now() - make_interval(secs => i / 100.0),
       jsonb_build_object('units', i %% 7, 'region', 'eu-' || (i %% 3)),
       now() - make_interval(secs => i / 100.0), 0, i %% %(partitions)s, now()
FROM generate_series(%(start)s, %(stop)s) AS i
"""
MILLION = 1_000_000

QUERIES = (
    "type=usage.7&limit=100",
    "source=/svc/42&limit=100",
    "from={hour_ago}&to={now}&limit=100",
    "type=usage.3&source=/svc/23&from={day_ago}&limit=100",
    "limit=1000",
)
"""Filters a dashboard asks for (times filled in at each size)."""


def fill(database_url: str, tenant: str, start: int, stop: int, partitions: int) -> float:
    """Rows `start`..`stop` of `tenant`, a million per statement; seconds it took."""
    began = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        for low in range(start, stop, MILLION):
            upto = min(low + MILLION, stop)
            params = {"tenant": tenant, "start": low + 1, "stop": upto, "partitions": partitions}
            conn.execute(_FILL, params)
        conn.execute("ANALYZE events")
    return time.monotonic() - began


def _get(base_url: str, key: str, path: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{base_url}{path}", headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            body: dict[str, Any] = json.loads(answer.read())
            return body
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{path}: {exc.code} {exc.read()[:300]!r}") from exc


def query_latency(base_url: str, key: str, runs: int) -> dict[str, dict[str, float]]:
    """p50 and p99 ms of each query (and of its next page, through the cursor)."""
    now = datetime.now(UTC)

    def iso(moment: datetime) -> str:
        return urllib.parse.quote(moment.isoformat().replace("+00:00", "Z"))

    times = {"now": iso(now), "hour_ago": iso(now - timedelta(hours=1)),
             "day_ago": iso(now - timedelta(days=1))}  # fmt: skip
    found: dict[str, dict[str, float]] = {}
    for template in QUERIES:
        query = template.format(**times)
        samples: list[float] = []
        paged: list[float] = []
        for _ in range(runs):
            began = time.perf_counter()
            page = _get(base_url, key, f"/v1/events?{query}")
            samples.append((time.perf_counter() - began) * 1000)
            cursor = page.get("next_cursor")
            if cursor:
                began = time.perf_counter()
                _get(base_url, key, f"/v1/events?{query}&cursor={urllib.parse.quote(cursor)}")
                paged.append((time.perf_counter() - began) * 1000)
        found[template] = _percentiles(samples)  # by the template: times differ per size
        if paged:
            found[f"{template} (next page)"] = _percentiles(paged)
    return found


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 1), "p99": round(p99, 1)}


def markdown(result: dict[str, Any]) -> str:
    sizes = result["sizes"]
    lines = [f"Growth: a burst of {result['burst']:,} events, and `GET /v1/events`, with "
             "rows already stored", "",
             "| rows stored | burst stored/s | ratio to 0 |", "|---:|---:|---:|"]  # fmt: skip
    base = sizes[0]["stored_per_second"]
    for size in sizes:
        rate = size["stored_per_second"]
        lines.append(f"| {size['rows']:,} | {rate:,.0f} | {rate / base:.2f} |")
    lines += ["", "| query | " + " | ".join(f"{s['rows']:,} p50 / p99 ms" for s in sizes) + " |",
              "|---|" + "---:|" * len(sizes)]  # fmt: skip
    for query in sizes[0]["queries"]:
        cells = [f"{s['queries'][query]['p50']} / {s['queries'][query]['p99']}"
                 if query in s["queries"] else "" for s in sizes]  # fmt: skip
        lines.append(f"| `{query}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@click.command()
@click.option("--sizes", default="0,1000000,10000000", show_default=True)
@click.option("--burst", "burst_events", default=200_000, show_default=True)
@click.option("--runs", default=50, show_default=True)
@click.option("--results-dir", default="bench-results", show_default=True, type=Path)
def main(sizes: str, burst_events: int, runs: int, results_dir: Path) -> None:
    """Fill, run the pipeline, time a burst and the queries at each size, write the figures."""
    wanted = sorted(int(s) for s in sizes.split(","))
    state = Path(load_settings().state_dir).resolve() / "bench-growth"
    tag = uuid.uuid4().hex[:8]
    tenant = f"growth-{tag}"
    measured: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        kafka = stack.enter_context(kafka_service(state / "kafka"))
        database = stack.enter_context(postgres_service(state / "postgres"))
        migrate(database)
        settings = replace(
            Settings(), kafka_bootstrap_servers=kafka, database_url=database,
            topic_prefix=f"growth-{tag}.", http_port=free_port(), rate_events_per_second=0,
            rate_tenant_events_per_second=0, rate_requests_per_second=0,
            rate_tenant_requests_per_second=0, retention_interval_seconds=0,
        )  # fmt: skip
        ensure_topics(settings)
        key = create_key(settings, tenant, ["events:read"])
        writer = create_key(settings, f"burst-{tag}", ["events:write"])
        pipeline = ProcessStack(settings, state / "logs")
        pipeline.start()
        stack.callback(pipeline.stop)
        pipeline.wait_ready(timeout=120)
        base = pipeline.base_url
        # bursts go to a tenant of their own (so counting them is cheap); the indexes they
        # grow are the whole table's
        burst(base, writer, database, f"burst-{tag}", burst_events // 4)  # warm up
        held = 0
        for rows in wanted:
            took = fill(database, tenant, held, rows, settings.partitions) if rows > held else 0
            held = max(held, rows)
            print(f"{rows:,} rows stored (filled in {took:.0f} s)", flush=True)
            rate = burst(base, writer, database, f"burst-{tag}", burst_events)
            measured.append({"rows": rows, "fill_seconds": took, "stored_per_second": rate,
                             "queries": query_latency(base, key, runs)})  # fmt: skip
    result = {"burst": burst_events, "runs": runs, "sizes": measured}
    write_named(results_dir, "growth", result, markdown(result))


if __name__ == "__main__":
    main()
