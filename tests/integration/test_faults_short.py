"""Short versions of the fault suite (`tests/faults/`) for the default run.

Each drives bounded HTTP load, injects a fault, and checks every acknowledged id
against PostgreSQL: no acknowledged event lost, none stored twice.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
import pytest

from sluice.launchers.kafka import KafkaLauncher
from sluice.metrics import STALLED_EXIT_CODE
from sluice.stack import ProcessStack
from tests.conftest import eventually, free_port
from tests.faults.check import (
    committed_but_not_stored,
    figure,
    stored,
    topic_copies,
    wait_for_dead_letters,
    wait_until_landed,
)
from tests.faults.cluster import leader_of, wait_fully_in_sync
from tests.faults.load import LoadGenerator
from tests.faults.pipeline import Pipeline, own_postgres, pipeline
from tests.faults.poison import produce_poison
from tests.httpclient import call
from tests.producer_api.test_metrics import _sample

pytestmark = pytest.mark.integration


def _offsets_behind(p: Pipeline) -> tuple[int, int]:
    s = p.settings
    prefix = s.topic_prefix
    return committed_but_not_stored(
        s.kafka_bootstrap_servers, s.sink_group, f"{prefix}events", f"{prefix}events.dlq",
        s.database_url,
    )  # fmt: skip


def _rows(database_url: str, tenant: str) -> int:
    return len(stored(database_url, tenant).rows)


def _wait_for_more_rows(database_url: str, tenant: str, more: int) -> None:
    before = _rows(database_url, tenant)
    eventually(lambda: _rows(database_url, tenant) >= before + more, timeout=90)


def test_postgres_crash_and_sink_sigkill_lose_nothing(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Invariants 1-3 through PostgreSQL `immediate` stops and SIGKILLs of the sink mid-batch:
    rows are exactly the acknowledged valid ids, and the committed offset is never ahead of
    what the database holds."""
    with (
        own_postgres() as pg,
        pipeline(
            kafka_bootstrap, pg.url, tmp_path / "logs", sink_batch_size=50, key_cache_seconds=600.0
        ) as p,
    ):
        load = LoadGenerator(
            p.base_url, p.key, requests=60, batch=20, invalid_every=17, concurrency=2,
            pause_seconds=0.15,
        ).start()  # fmt: skip
        eventually(lambda: _rows(pg.url, p.tenant) >= 100, timeout=60)
        pg.stop("immediate")
        time.sleep(2.0)  # the sink meets the outage mid-batch and retries
        p.stack.stop_role("sink", signal.SIGKILL)
        pg.start()
        crash_missing, crash_checked = _offsets_behind(p)
        p.stack.start_role("sink")

        _wait_for_more_rows(pg.url, p.tenant, 100)
        p.stack.stop_role("sink", signal.SIGKILL)
        kill_missing, kill_checked = _offsets_behind(p)
        p.stack.start_role("sink")

        result = load.join()
        landing = wait_until_landed(pg.url, p.tenant, result.acked, result.dead_letter_ids)
        copies = topic_copies(
            p.settings.kafka_bootstrap_servers, f"{p.settings.topic_prefix}events", p.tenant
        )
    figure(
        f"short-5 postgres immediate stop + 2 sink SIGKILLs: acknowledged lost: "
        f"{len(landing.lost)} of {len(result.acked)}; dead letters lost: "
        f"{len(landing.lost_dead_letters)} of {len(result.dead_letter_ids)}; duplicates: "
        f"{landing.duplicates}; committed-but-not-stored: {crash_missing} of {crash_checked} "
        f"(after the crash), {kill_missing} of {kill_checked} (after the kill); "
        f"redelivered copies on events topic: {sum(n - 1 for n in copies.values())}; "
        f"landed in {landing.seconds:.1f}s"
    )
    assert result.requests_unacknowledged == 0, result.summary()
    assert crash_missing == 0 and kill_missing == 0
    assert not landing.lost and not landing.lost_dead_letters
    assert landing.rows == result.acked  # exactly the valid acknowledged ids, nothing else
    assert landing.duplicates == 0


def test_worker_restarts_with_poison_lose_nothing(
    tmp_path: Path, kafka_bootstrap: str, database_url: str
) -> None:
    """Invariant 2 while two Faust workers are restarted in turn (rebalancing each time),
    one of them SIGKILLed, with invalid events and undecodable messages mixed in: every
    accepted event is a row, every rejected one a dead letter."""
    with pipeline(kafka_bootstrap, database_url, tmp_path / "logs") as p:
        second = ProcessStack(p.settings, tmp_path / "logs-2")
        second.start(("worker",))
        try:
            load = LoadGenerator(
                p.base_url, p.key, requests=60, batch=20, invalid_every=13, concurrency=2,
                pause_seconds=0.2,
            ).start()  # fmt: skip
            topic, parts = f"{p.settings.topic_prefix}ingest.raw", p.settings.partitions
            poison: set[str] = set()
            kills = ((p.stack, signal.SIGTERM), (second, signal.SIGKILL), (p.stack, signal.SIGTERM))
            for stack, sig in kills:
                _wait_for_more_rows(database_url, p.tenant, 40)  # work flows again first
                poison |= produce_poison(kafka_bootstrap, topic, 2, parts)
                stack.stop_role("worker", sig)
                stack.start_role("worker")
            result = load.join()
            landing = wait_until_landed(
                database_url, p.tenant, result.acked, result.dead_letter_ids
            )
            poison_missing = wait_for_dead_letters(database_url, poison)
            copies = topic_copies(kafka_bootstrap, f"{p.settings.topic_prefix}events", p.tenant)
        finally:
            second.stop()
    figure(
        f"short-6 3 worker restarts (1 SIGKILL), 2 workers: acknowledged lost: "
        f"{len(landing.lost)} of {len(result.acked)}; door dead letters lost: "
        f"{len(landing.lost_dead_letters)} of {len(result.dead_letter_ids)}; poison dead letters "
        f"lost: {len(poison_missing)} of {len(poison)}; duplicates: {landing.duplicates}; "
        f"redelivered copies on events topic: {sum(n - 1 for n in copies.values())}; "
        f"landed in {landing.seconds:.1f}s"
    )
    assert result.requests_unacknowledged == 0, result.summary()
    assert not landing.lost and not landing.lost_dead_letters and not poison_missing
    assert landing.rows == result.acked
    assert landing.duplicates == 0


def _scrape(port: int, name: str) -> str | None:
    """The metrics text at `port` once it holds `name` (None until it is served)."""
    try:
        text = call("GET", f"http://127.0.0.1:{port}/metrics", timeout=5).body.decode()
    except OSError:
        return None
    return text if name in text else None


def test_a_stuck_sink_exits_for_a_restart_and_metrics_are_served(
    tmp_path: Path, kafka_bootstrap: str, database_url: str
) -> None:
    """The sink serves its metrics; blocked by a table lock while its lag grows, its
    watchdog exits it (code 70) so a supervisor restarts it; restarted, it catches up."""
    sink_port, worker_port = free_port(), free_port()
    with pipeline(
        kafka_bootstrap, database_url, tmp_path / "logs", watchdog_stall_seconds=4.0,
        sink_metrics_port=sink_port, worker_metrics_port=worker_port,
    ) as p:  # fmt: skip
        first = LoadGenerator(p.base_url, p.key, requests=5, batch=10, run_id="before").run()
        wait_until_landed(database_url, p.tenant, first.acked)
        sink_text = eventually(lambda: _scrape(sink_port, "sluice_sink_rows_total"), timeout=30)
        assert (_sample(sink_text, "sluice_sink_rows_total", kind="event") or 0) >= 50
        assert _sample(sink_text, "sluice_sink_batch_seconds_count") is not None
        worker_text = eventually(lambda: _scrape(worker_port, "sluice_stream_envelopes_total"))
        assert (_sample(worker_text, "sluice_stream_envelopes_total") or 0) >= 1
        topic, parts = f"{p.settings.topic_prefix}ingest.raw", p.settings.partitions
        poison: set[str] = set()
        sink = p.stack.procs["sink"]
        with psycopg.connect(database_url) as blocker:
            # Dead letters only (poison on ingest.raw), so nothing but the sink needs the table.
            blocker.execute("LOCK TABLE dead_letters IN ACCESS EXCLUSIVE MODE")  # until commit
            began = time.monotonic()
            while sink.poll() is None and time.monotonic() - began < 90:
                poison |= produce_poison(kafka_bootstrap, topic, 2, parts)  # the lag grows
                time.sleep(0.5)
            exited_after = time.monotonic() - began
        code = sink.wait(timeout=10)
        p.stack.procs.pop("sink")
        p.stack.start_role("sink")
        missing = wait_for_dead_letters(database_url, poison)
        landing = wait_until_landed(database_url, p.tenant, first.acked)
    figure(
        f"stuck sink (table locked, stall limit 4 s): exited with {code} after "
        f"{exited_after:.1f}s; after restart lost: {len(missing)} of {len(poison)} dead letters, "
        f"{len(landing.lost)} of {len(first.acked)} events"
    )
    assert code == STALLED_EXIT_CODE
    assert not missing and not landing.lost


def test_partition_leader_sigkills_on_three_brokers_lose_nothing(
    tmp_path: Path, database_url: str
) -> None:
    """Invariant 1 on a 3-node cluster (RF 3, min ISR 2): SIGKILL the leader of a partition
    of `ingest.raw` during a burst; every acknowledged id lands, once."""
    with KafkaLauncher(tmp_path / "kafka", nodes=3) as kafka:
        bootstrap = kafka.bootstrap_servers
        with pipeline(bootstrap, database_url, tmp_path / "logs", replication_factor=3) as p:
            prefix = p.settings.topic_prefix
            topics = [f"{prefix}ingest.raw", f"{prefix}events", f"{prefix}events.dlq"]
            load = LoadGenerator(
                p.base_url, p.key, requests=45, batch=20, invalid_every=29, concurrency=2,
                pause_seconds=0.2,
            ).start()  # fmt: skip
            eventually(lambda: load.done_requests >= 15, timeout=90)
            leader = leader_of(bootstrap, topics[0], 0)
            killed_at = time.monotonic()
            kafka.kill(leader)
            time.sleep(2.0)
            kafka.start()
            in_sync_after = wait_fully_in_sync(bootstrap, topics, 3) + 2.0
            recovery = result_after(load, killed_at)
            result = load.join()
            landing = wait_until_landed(
                database_url, p.tenant, result.acked, result.dead_letter_ids
            )
            copies = topic_copies(bootstrap, topics[1], p.tenant)
        kafka.kill()  # the data is checked; no need for a graceful shutdown
    figure(
        f"short-1 leader SIGKILL, 3 brokers RF 3 min ISR 2: acknowledged lost: "
        f"{len(landing.lost)} of {len(result.acked)}; dead letters lost: "
        f"{len(landing.lost_dead_letters)}; duplicates: {landing.duplicates}; redelivered copies "
        f"on events topic: {sum(n - 1 for n in copies.values())}; non-2xx answers: "
        f"{sum(v for k, v in result.statuses.items() if not 200 <= k < 300)}; first 2xx after "
        f"the kill: {recovery:.1f}s; replicas back in sync after {in_sync_after:.1f}s"
    )
    assert result.requests_unacknowledged == 0, result.summary()
    assert not landing.lost and not landing.lost_dead_letters
    assert landing.rows == result.acked
    assert landing.duplicates == 0


def result_after(load: LoadGenerator, moment: float) -> float:
    """Seconds from `moment` to the first acknowledged request after it (-1 if none yet)."""
    found = load.result.first_ack_after(moment)
    return -1.0 if found is None else found
