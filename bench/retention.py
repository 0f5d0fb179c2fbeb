"""What an expiry costs the pipeline: `make bench-retention` (`python -m bench.retention`).

It finds or starts Kafka and PostgreSQL as `make bench` does, migrates, and stores
`--expiring` events of one tenant straight into PostgreSQL (30 days old, spread over the
partitions, version 0: older than anything `ingest.raw` holds, as a stored event is older
than a delete published after it; one `INSERT … SELECT generate_series`). With the whole
pipeline running (API, worker, sink), it then sends bursts of `--burst` fresh events of
another tenant through the door and times each from its first request until the sink
has stored all of it:

1. **alone**: the burst with nothing else running (the baseline);
2. **during expiry**: the same burst sent right after a retention run of the first tenant
   started (`POST /v1/admin/retention/run`, keep 7 days: every stored event expires), in
   steps of `SLUICE_RETENTION_STEP_ROWS`;
3. the expiry's own rate: expired rows over the run's duration.

The ratio stored/s during expiry ÷ alone is the figure (retention issue: ≥ 0.8). The
burst goes through the door and the worker, so the rate is the pipeline's; the sink is
what an expiry competes with (its deletes run in the sink's transactions, and PostgreSQL
is shared). Results go to `bench-results/retention-<time>.{json,md}`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import psycopg

from bench.report import write_named
from bench.run import free_port
from runtime.settings import Settings, load_settings
from runtime.topic_admin import ensure_topics
from sinks.migrate import migrate
from sluice.keys_cli import create_key
from sluice.launchers.services import kafka_service, postgres_service
from sluice.stack import ProcessStack

_EXPIRING = """
INSERT INTO events (tenant, family, event_id, type, source, subject, time, data, received_at,
                    version, kafka_partition, stored_at)
SELECT %(tenant)s, 'native', 'old-' || i, 'usage.api_call', '/bench', NULL,
       now() - interval '30 days' + make_interval(secs => i / 1000.0),
       jsonb_build_object('units', i %% 7), now() - interval '30 days',
       0, i %% %(partitions)s, now() - interval '30 days'
FROM generate_series(1, %(n)s) AS i
"""
BATCH = 5_000


def _post(base_url: str, key: str, body: bytes) -> None:
    request = urllib.request.Request(
        f"{base_url}/v1/events", data=body, method="POST",
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=120) as answer:
        if answer.status != 202:
            raise RuntimeError(f"the door answered {answer.status}")


def _bodies(tag: str, events: int) -> list[bytes]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [
        json.dumps([
            {"id": f"{tag}-{i}", "type": "usage.api_call", "source": "/bench", "time": now,
             "data": {"units": i % 7}}
            for i in range(start, min(start + BATCH, events))
        ]).encode()
        for start in range(0, events, BATCH)
    ]  # fmt: skip


def _count(database_url: str, tenant: str, prefix: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM events WHERE tenant = %s AND event_id LIKE %s",
            (tenant, f"{prefix}-%"),
        ).fetchone()
    return int(row[0]) if row else 0


def burst(base_url: str, key: str, database_url: str, tenant: str, events: int) -> float:
    """Send `events` fresh events (two senders); stored per second, first request to last row."""
    tag = f"b{uuid.uuid4().hex[:6]}"
    bodies = _bodies(tag, events)
    began = time.monotonic()

    def send(part: list[bytes]) -> None:
        for body in part:
            _post(base_url, key, body)

    senders = [threading.Thread(target=send, args=(bodies[i::2],)) for i in range(2)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    deadline = began + 900
    while _count(database_url, tenant, tag) < events:
        if time.monotonic() > deadline:
            raise RuntimeError("the burst was not stored within 15 minutes")
        time.sleep(0.1)
    return events / (time.monotonic() - began)


def _admin(base_url: str, key: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    request = urllib.request.Request(f"{base_url}{path}", data=data, method=method,
                                     headers=headers)  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def markdown(result: dict[str, Any]) -> str:
    return "\n".join([
        f"Retention: a burst of {result['burst']:,} events through the running pipeline, alone "
        f"and while {result['expiring']:,} stored events expire (steps of "
        f"{result['step_rows']:,}, pause factor {result['pause_factor']:g})", "",
        "| figure | value |", "|---|---:|",
        f"| burst stored/s, alone (best of {len(result['alone'])}) | {result['alone_best']:,.0f} |",
        f"| burst stored/s, during expiry | {result['during']:,.0f} |",
        f"| ratio during ÷ alone | {result['ratio']:.2f} |",
        f"| expiry rows/s | {result['expiry_rows_per_second']:,.0f} |",
        f"| expiry run seconds | {result['expiry_seconds']:.1f} |",
    ])  # fmt: skip


@click.command()
@click.option("--expiring", default=500_000, show_default=True, help="stored events to expire")
@click.option("--burst", "burst_events", default=200_000, show_default=True)
@click.option("--step-rows", default=10_000, show_default=True)
@click.option(
    "--pause-factor",
    default=Settings.retention_pause_factor,
    show_default=True,
    help="SLUICE_RETENTION_PAUSE_FACTOR: rest this many times a step's duration",
)
@click.option("--results-dir", default="bench-results", show_default=True, type=Path)
def main(
    expiring: int, burst_events: int, step_rows: int, pause_factor: float, results_dir: Path
) -> None:
    """Store, run the pipeline, time a burst alone and during an expiry, write the figures."""
    state = Path(load_settings().state_dir).resolve() / "bench-retention"
    tag = uuid.uuid4().hex[:8]
    old, fresh = f"expiring-{tag}", f"fresh-{tag}"
    with contextlib.ExitStack() as stack:
        kafka = stack.enter_context(kafka_service(state / "kafka"))
        database = stack.enter_context(postgres_service(state / "postgres"))
        migrate(database)
        settings = replace(
            Settings(), kafka_bootstrap_servers=kafka, database_url=database,
            topic_prefix=f"retention-{tag}.", http_port=free_port(), rate_events_per_second=0,
            rate_tenant_events_per_second=0, retention_step_rows=step_rows,
            retention_pause_factor=pause_factor,
            rate_requests_per_second=0, rate_tenant_requests_per_second=0,
        )  # fmt: skip
        ensure_topics(settings)
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(_EXPIRING, {"tenant": old, "n": expiring,
                                     "partitions": settings.partitions})  # fmt: skip
            conn.execute("ANALYZE events")
        key = create_key(settings, fresh, ["events:write"])
        admin = create_key(settings, old, ["admin"])
        pipeline = ProcessStack(settings, state / "logs")
        pipeline.start()
        stack.callback(pipeline.stop)
        pipeline.wait_ready(timeout=120)
        base = pipeline.base_url
        burst(base, key, database, fresh, burst_events // 4)  # warm up every process
        alone = [burst(base, key, database, fresh, burst_events) for _ in range(2)]
        _admin(base, admin, "PUT", "/v1/admin/retention",
               {"kind": "events", "family": "native", "keep_days": 7})  # fmt: skip
        began = time.monotonic()
        run = _admin(base, admin, "POST", "/v1/admin/retention/run")
        during = burst(base, key, database, fresh, burst_events)
        while (done := _admin(base, admin, "GET", run["status_url"]))["state"] == "running":
            time.sleep(0.2)
        took = time.monotonic() - began
        if done["state"] != "done" or done["events_removed"] != expiring:
            raise RuntimeError(f"the expiry did not remove every event: {done}")
    alone_best = max(alone)  # the stricter baseline
    result = {
        "expiring": expiring, "burst": burst_events, "step_rows": step_rows, "alone": alone,
        "pause_factor": pause_factor,
        "alone_best": alone_best, "during": during, "ratio": during / alone_best,
        "expiry_seconds": took, "expiry_rows_per_second": expiring / took,
        "expiry_steps": len(done["receipts"]),
    }  # fmt: skip
    write_named(results_dir, "retention", result, markdown(result))


if __name__ == "__main__":
    main()
