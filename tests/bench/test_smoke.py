"""The benchmark harness keeps working: a tiny run of every phase against real services.

Speed is never asserted (other tests share the machine); only that every phase
ran, drained what it was given, and wrote its files.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from bench.config import BenchConfig
from bench.report import markdown, write
from bench.run import run_bench

pytestmark = pytest.mark.integration


def test_every_phase_runs_and_is_reported(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    cfg = BenchConfig(
        events=1020, batch=255, large_batch=510, concurrency=4, e2e_seconds=1.5,
        burst_seconds=1.5, burst_multiplier=3.0, phase_timeout=45.0,
        results_dir=tmp_path / "results", plots=False, door_rounds=2,
    )  # fmt: skip
    results = run_bench(cfg, kafka_bootstrap, database_url, tmp_path / "logs")

    for stage in ("door", "door_large", "door_two", "sustained"):
        assert results[stage]["per_second"] > 0, stage
    assert results["door"]["accepted"] == 1020
    # The raw loop produces the door's events, whole passes, for at least as long as the door ran.
    assert results["door_raw"]["units"] % 1020 == 0
    assert results["door_raw"]["seconds"] >= results["door"]["seconds"]
    assert len(results["door_rounds"]) == 2  # the door and the raw loop, alternately
    assert results["door"]["per_second"] in [r["door"] for r in results["door_rounds"]]
    assert results["stream"]["complete"] and results["sink"]["complete"]
    assert results["stream_raw"]["units"] == results["stream"]["events"]
    with_contracts = results["stream_contracts"]  # a copy of the envelopes, a contract on each
    assert with_contracts["complete"] and with_contracts["events"] >= 1020
    assert with_contracts["dead_lettered"] == 0 and with_contracts["enforced"] is True
    without = with_contracts["without"]  # an identical copy, drained with no contract
    assert without["complete"] and without["events"] == with_contracts["events"]
    assert len(with_contracts["rounds"]) == 2 and with_contracts["ratio"] > 0
    assert results["sink_raw"]["units"] == results["sink"]["rows"]
    assert results["e2e"]["missing"] == 0 and results["burst"]["missing"] == 0
    committed = results["e2e"]["committed_ms"]  # the sink's histogram: every event, once
    assert committed["events"] == results["e2e"]["accepted"] and committed["p99"] > 0
    assert results["burst"]["answers"]["other"] == 0
    for name, rss in results["burst"]["rss_mb"].items():  # before, during and after: every sample
        parts = (rss["before"], rss["peak_while_offered"], rss["peak_draining_after"])
        assert rss["peak"] == max(parts) > 0, name
    json_path, md_path = write(results, cfg.results_dir, "smoke")
    assert json.loads(json_path.read_text())["targets"]
    assert "door events/s" in md_path.read_text()
    assert "a data contract on every event" in md_path.read_text()
    assert markdown(results) in md_path.read_text()

    # The run removed what it made: its topics, and every row of its tenants.
    tag = results["meta"]["tag"]
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert not [t for t in topics if t.startswith(f"bench-{tag}.")]
    with psycopg.connect(database_url) as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM events WHERE tenant LIKE %(p)s)"
            " + (SELECT count(*) FROM api_keys WHERE tenant LIKE %(p)s)",
            {"p": f"bench-{tag}-%"},
        ).fetchone()
    assert left == (0,)
