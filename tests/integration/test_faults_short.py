"""Short versions of the fault suite (`tests/faults/`) for the default run.

Each drives bounded HTTP load, injects a fault, and checks every acknowledged id
against PostgreSQL: no acknowledged event lost, none stored twice.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from sinks.migrate import migrate
from sluice.launchers.postgres import PostgresLauncher
from tests.conftest import eventually
from tests.faults.check import (
    committed_but_not_stored,
    figure,
    stored,
    topic_copies,
    wait_until_landed,
)
from tests.faults.load import LoadGenerator
from tests.faults.pipeline import Pipeline, pipeline

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


def test_postgres_crash_and_sink_sigkill_lose_nothing(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Invariants 1-3 through PostgreSQL `immediate` stops and SIGKILLs of the sink mid-batch:
    rows are exactly the acknowledged valid ids, and the committed offset is never ahead of
    what the database holds."""
    with PostgresLauncher(tmp_path / "pg") as pg:
        migrate(pg.url)
        with pipeline(
            kafka_bootstrap, pg.url, tmp_path / "logs", sink_batch_size=50, key_cache_seconds=600.0
        ) as p:
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

            before = _rows(pg.url, p.tenant)
            eventually(lambda: _rows(pg.url, p.tenant) >= before + 100, timeout=60)
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
