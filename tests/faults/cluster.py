"""Looking at a local Kafka cluster during a fault: who leads a partition, who is in sync."""

from __future__ import annotations

import logging
import signal
import time

from confluent_kafka.admin import AdminClient

from sluice.launchers.kafka import KafkaLauncher


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap,
                        "logger": logging.getLogger("tests.faults.admin")})  # fmt: skip


def leader_of(bootstrap: str, topic: str, partition: int) -> int:
    """The broker id leading `topic`/`partition` now (-1 while there is none)."""
    metadata = _admin(bootstrap).list_topics(topic, timeout=10)
    return int(metadata.topics[topic].partitions[partition].leader)


def in_sync(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """The number of in-sync replicas of every partition of `topics`."""
    metadata = _admin(bootstrap).list_topics(timeout=10)
    return {
        (topic, p): len(info.isrs)
        for topic in topics
        for p, info in metadata.topics[topic].partitions.items()
    }


def wait_fully_in_sync(
    bootstrap: str, topics: list[str], replicas: int, timeout: float = 90
) -> float:
    """Wait until every partition has `replicas` in-sync replicas; return the seconds it took."""
    begun = time.monotonic()
    while True:
        try:
            if all(n >= replicas for n in in_sync(bootstrap, topics).values()):
                return time.monotonic() - begun
        except Exception:  # metadata unavailable for a moment while brokers come back
            pass
        if time.monotonic() - begun > timeout:
            raise AssertionError(f"replicas not back in sync within {timeout}s")
        time.sleep(0.5)


def signal_node(kafka: KafkaLauncher, node_id: int, sig: int) -> None:
    """Send `sig` to broker `node_id` (-1, no leader right now: node 1). SIGKILL and SIGTERM
    wait for the process to end, so `kafka.start()` brings it back afterwards."""
    node_id = node_id if node_id > 0 else 1
    if sig == signal.SIGKILL:
        kafka.kill(node_id)
        return
    node = next(n for n in kafka.nodes if n.node_id == node_id)
    assert node.process is not None
    node.process.send_signal(sig)
    if sig == signal.SIGTERM:
        node.process.wait(60)
        node.process = None
