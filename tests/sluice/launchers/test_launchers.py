"""The local launchers start real servers that real clients can use, and stop them again."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from sluice.launchers.kafka import KafkaLauncher, new_cluster_id
from sluice.launchers.postgres import PostgresLauncher
from sluice.launchers.services import Service, open_service


def _round_trip(bootstrap: str, topic: str, value: bytes) -> bytes | None:
    """Produce `value` to `topic` and read the topic from the start; return what came back."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce(topic, key=b"key", value=value)
    assert producer.flush(30) == 0, "message not delivered"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"launcher-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                received: bytes | None = message.value()
                return received
        return None
    finally:
        consumer.close()


def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    futures[topic].result(timeout=30)


@pytest.mark.integration
def test_kafka_launcher_serves_a_topic_and_stops(tmp_path: Path) -> None:
    launcher = KafkaLauncher(tmp_path / "kafka")
    with launcher:
        bootstrap = launcher.bootstrap_servers
        assert bootstrap.startswith("127.0.0.1:")
        _create_topic(bootstrap, "launcher-smoke")
        assert _round_trip(bootstrap, "launcher-smoke", b"hello") == b"hello"
    assert not any(node.running() for node in launcher.nodes)


@pytest.mark.integration
@pytest.mark.slow
def test_kafka_keeps_data_across_a_crash(tmp_path: Path) -> None:
    with KafkaLauncher(tmp_path / "kafka") as launcher:
        bootstrap = launcher.bootstrap_servers
        _create_topic(bootstrap, "launcher-crash")
        assert _round_trip(bootstrap, "launcher-crash", b"before") == b"before"
        launcher.kill()
        assert launcher.restart() == bootstrap
        assert _round_trip(bootstrap, "launcher-crash", b"after") == b"before"


@pytest.mark.integration
def test_postgres_launcher_answers_queries_and_stops(tmp_path: Path) -> None:
    launcher = PostgresLauncher(tmp_path / "postgres")
    with launcher:
        url = launcher.url
        assert url.startswith("postgresql://") and "@127.0.0.1:" in url
        assert url.endswith("/sluice")
        with psycopg.connect(url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


@pytest.mark.integration
def test_postgres_comes_back_after_a_crash_with_its_data(tmp_path: Path) -> None:
    with PostgresLauncher(tmp_path / "postgres") as launcher:
        with psycopg.connect(launcher.url, autocommit=True) as conn:
            conn.execute("create table kept (n int); insert into kept values (7)")
        launcher.kill()
        assert launcher.start() == launcher.url
        with psycopg.connect(launcher.url) as conn:
            assert conn.execute("select n from kept").fetchone() == (7,)
        launcher.stop(mode="immediate")
        launcher.restart()
        with psycopg.connect(launcher.url) as conn:
            assert conn.execute("select count(*) from kept").fetchone() == (1,)


def test_cluster_ids_are_16_byte_base64_that_kafka_accepts() -> None:
    for _ in range(200):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_services_named_by_the_environment_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-1:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql://sluice:secret@db:5432/sluice")
    with open_service("kafka", tmp_path) as kafka, open_service("postgres", tmp_path) as pg:
        assert kafka == Service("kafka", "environment", "broker-1:9092")
        assert pg.source == "environment" and pg.launcher is None
        assert "secret" not in pg.describe() and "***" in pg.describe()
    assert list(tmp_path.iterdir()) == []


def test_a_cluster_s_ports_are_all_different(tmp_path: Path) -> None:
    """Each node's listener and controller get ports no other gets: taken one at a time, the
    kernel once handed the same port out twice, and Kafka refused to format that node."""
    launcher = KafkaLauncher(tmp_path / "kafka", nodes=3)
    ports = [p for n in launcher.nodes for p in (n.broker_port, n.controller_port)]
    assert len(set(ports)) == 6
