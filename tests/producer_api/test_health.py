"""`/readyz` follows PostgreSQL: an API whose database stops says so (503, "postgres":
"unreachable", Kafka still "ok") instead of answering ready, and is ready again once the
database is back, without a restart. `/healthz` (liveness) stays 200 throughout, so a
supervisor does not restart a process that only waits for its database.

The API runs against a PostgreSQL of this test's own (the session's is shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.topic_admin import ensure_topics
from sinks.migrate import migrate
from sluice.launchers.postgres import PostgresLauncher
from sluice.stack import ProcessStack
from tests.conftest import eventually, make_settings
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration


def test_readyz_is_503_while_postgres_is_down_and_ready_again_after(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with PostgresLauncher(tmp_path / "postgres") as postgres:
        migrate(postgres.url)
        settings = make_settings(kafka_bootstrap, postgres.url)
        ensure_topics(settings)
        stack = ProcessStack(settings, tmp_path / "logs")
        stack.start(("api",))
        try:
            stack.wait_ready(timeout=90)
            ready = call("GET", f"{stack.base_url}/readyz").json()
            assert ready["postgres"] == "ok" and ready["kafka"] == "ok"

            postgres.stop()
            down = call("GET", f"{stack.base_url}/readyz", timeout=30)
            assert down.status == 503, down.body
            assert down.json()["status"] == "not_ready"
            assert down.json()["postgres"] == "unreachable"
            assert down.json()["kafka"] == "ok"
            assert call("GET", f"{stack.base_url}/healthz").status == 200

            postgres.start()

            def ready_again() -> Answer | None:
                answer = call("GET", f"{stack.base_url}/readyz", timeout=30)
                return answer if answer.status == 200 else None

            assert eventually(ready_again, timeout=90).json()["postgres"] == "ok"
        finally:
            stack.stop()
