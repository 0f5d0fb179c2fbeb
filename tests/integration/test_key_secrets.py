"""Rotating SLUICE_KEY_SECRET: keys hashed with a retired secret keep working and move on.

A key made under secret `1` is verified by an API whose current secret is `2` with `1`
retired, and is hashed again under `2` on that first use; an API that no longer knows
`1` at all still accepts it then, and refuses a key that was never used meanwhile.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from runtime.settings import Settings
from runtime.topic_admin import ensure_topics
from sluice.cli import main
from sluice.keys_cli import create_key
from sluice.stack import ProcessStack
from tests.conftest import make_settings
from tests.httpclient import call

pytestmark = pytest.mark.integration

OLD, NEW = "the-secret-being-retired", "the-secret-taking-over"


def _api(settings: Settings, logs: Path) -> Iterator[ProcessStack]:
    stack = ProcessStack(settings, logs)
    stack.start(("api",))
    try:
        stack.wait_ready(timeout=60)
        yield stack
    finally:
        stack.stop()


def _stored_secret(database_url: str, key: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT secret_id FROM api_keys WHERE prefix = %s", (key.split(".")[0],)
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_keys_outlive_a_secret_rotation(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    tenant = f"rotation-{uuid.uuid4().hex[:6]}"
    before = Settings(database_url=database_url, key_secret=OLD)
    used, idle = (
        create_key(before, tenant, ["events:read"]),
        create_key(before, tenant, ["events:read"]),
    )
    assert _stored_secret(database_url, used) == "1"

    rotating = make_settings(kafka_bootstrap, database_url, key_secret=NEW, key_secret_id="2",
                             key_secrets_retired=f"1={OLD}")  # fmt: skip
    ensure_topics(rotating)
    for stack in _api(rotating, tmp_path / "rotating"):
        answer = call("GET", f"{stack.base_url}/v1/events", headers={"X-API-Key": used})
        assert answer.status == 200, answer.body
        assert _stored_secret(database_url, used) == "2"  # hashed again on its first use
        logs = (tmp_path / "rotating").glob("*.log")
        assert not any(OLD in p.read_text() or NEW in p.read_text() for p in logs)

    retired = make_settings(kafka_bootstrap, database_url, key_secret=NEW, key_secret_id="2")
    for stack in _api(retired, tmp_path / "retired"):
        url = f"{stack.base_url}/v1/events"
        assert call("GET", url, headers={"X-API-Key": used}).status == 200
        refused = call("GET", url, headers={"X-API-Key": idle})
        assert refused.status == 401  # its secret is gone, and it never moved
    assert _stored_secret(database_url, idle) == "1"
    listed = CliRunner().invoke(main, ["keys", "list", "--tenant", tenant, "--json"],
                                env={"DATABASE_URL": database_url})  # fmt: skip
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    shown = {row["prefix"]: row["secret_id"] for row in rows}
    assert shown == {used.split(".")[0]: "2", idle.split(".")[0]: "1"}  # which still need `1`
