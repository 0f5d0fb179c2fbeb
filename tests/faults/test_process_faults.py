"""Fault suite, Sluice's own processes and PostgreSQL: cases 4, 5 and 6 of issue 8."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults.check import figure, wait_until_landed
from tests.faults.load import LoadGenerator
from tests.faults.pipeline import own_postgres, pipeline
from tests.faults.scenarios import (
    assert_exact,
    postgres_and_sink_crashes,
    redelivered,
    worker_restarts,
)

pytestmark = pytest.mark.faults


def test_4_api_sigkill_mid_request_client_retries_same_ids(
    tmp_path: Path, kafka_bootstrap: str, database_url: str
) -> None:
    """SIGKILL the API while requests are in flight, three times; the client retries each
    unanswered request with the same ids. Nothing acknowledged is lost; a retried id is one
    row (its later version), never two."""
    kills = 3
    with pipeline(kafka_bootstrap, database_url, tmp_path / "logs") as p:
        load = LoadGenerator(
            p.base_url, p.key, requests=2000, batch=20, invalid_every=31, concurrency=4,
            deadline_seconds=300,
        ).start()  # fmt: skip
        for n in range(kills):
            while load.done_requests < 20 * (n + 1):
                time.sleep(0.05)
            p.stack.stop_role("api", signal.SIGKILL)
            time.sleep(0.5)
            p.stack.start_role("api")
            p.stack.wait_ready(timeout=60)
        time.sleep(2.0)
        load.stop()
        result = load.join()
        landing = wait_until_landed(database_url, p.tenant, result.acked, result.dead_letter_ids)
        copies = redelivered(p)
    figure(
        f"case-4 {kills} API SIGKILLs mid-request: acknowledged lost: {len(landing.lost)} of "
        f"{len(result.acked)}; duplicates: {landing.duplicates}; answers lost to the kill "
        f"(connection errors, retried with the same ids): {result.statuses[0]}; redelivered "
        f"copies on events topic: {copies}; repeated dead letters from retries: "
        f"{landing.repeated_dead_letters}"
    )
    assert result.statuses[0] > 0, "no request was cut by the kill; the test proved nothing"
    assert_exact(result, landing)


def test_5_postgres_immediate_stop_and_sink_sigkill(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Three PostgreSQL `immediate` stops and six sink SIGKILLs mid-batch: rows equal the
    valid acknowledged ids exactly; the committed offset was never ahead of the database."""
    with own_postgres() as pg:
        postgres_and_sink_crashes(
            "case-5", kafka_bootstrap, pg, tmp_path / "logs", cycles=3, requests=3000
        )


def test_6_worker_restarts_with_poison(
    tmp_path: Path, kafka_bootstrap: str, database_url: str
) -> None:
    """Eight restarts of two Faust workers (half SIGKILL), poison mixed in: every accepted
    event is a row, every rejected one a dead letter."""
    worker_restarts(
        "case-6", kafka_bootstrap, database_url, tmp_path / "logs", restarts=8, requests=3000
    )
