"""Fixtures that find real Kafka and PostgreSQL (env vars → Docker → local launchers) and
run Sluice's own processes against them. Unit tests cannot reach the network by accident."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from runtime.settings import Settings
from runtime.topic_admin import ensure_topics
from sinks.migrate import migrate
from sluice.keys_cli import create_key
from sluice.launchers.services import kafka_service, postgres_service
from sluice.stack import ProcessStack

T = TypeVar("T")

TEST_SECRET = "test-secret-not-for-production"


@pytest.fixture(autouse=True)
def _no_network_for_unit_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if request.node.get_closest_marker("integration") or request.node.get_closest_marker("faults"):
        return

    def refuse(self: socket.socket, address: object) -> None:
        raise RuntimeError(f"unit test tried to connect to {address!r}; mark it integration")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def eventually(check: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def kafka_bootstrap(services_dir: Path) -> Iterator[str]:
    with kafka_service(services_dir / "kafka") as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def database_url(services_dir: Path) -> Iterator[str]:
    with postgres_service(services_dir / "postgres") as url:
        migrate(url)
        yield url


def make_settings(kafka: str, database: str, **overrides: object) -> Settings:
    base = Settings(
        kafka_bootstrap_servers=kafka,
        database_url=database,
        topic_prefix=f"test-{uuid.uuid4().hex[:8]}.",
        http_port=free_port(),
        key_secret=TEST_SECRET,
        key_cache_seconds=1.0,
        produce_timeout_ms=5000,
        worker_id=f"sluice-test-{uuid.uuid4().hex[:8]}",
        sink_group=f"sluice-sink-test-{uuid.uuid4().hex[:8]}",
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def stack(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProcessStack]:
    """api + worker + sink on their own topic prefix, for the whole session."""
    settings = make_settings(kafka_bootstrap, database_url)
    ensure_topics(settings)
    processes = ProcessStack(settings, tmp_path_factory.mktemp("stack-logs"))
    processes.start()
    try:
        processes.wait_ready(timeout=120)
        yield processes
    finally:
        processes.stop()


@pytest.fixture(scope="session")
def new_key(database_url: str) -> Callable[..., str]:
    """Make an API key for a tenant (all non-admin scopes unless given)."""

    def make(tenant: str, scopes: list[str] | None = None) -> str:
        settings = Settings(database_url=database_url, key_secret=TEST_SECRET)
        chosen = scopes or ["events:write", "events:read", "events:delete",
                            "deadletters:read", "deadletters:replay"]  # fmt: skip
        return create_key(settings, tenant, chosen)

    return make
