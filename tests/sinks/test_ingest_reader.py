"""Reading messages of `ingest.raw` back by position, on real Kafka: every wanted position in
one read, the reason for each one Kafka no longer (or never) held, and never longer than the
timeout, whatever Kafka does.

No test here reads a clock: where an answer must come without waiting, the reader's timeout
is set far past pytest's own (300 s), so waiting it out fails the test by pytest's timeout
instead of by a duration a loaded machine could miss."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from runtime.settings import Settings
from sinks.ingest_reader import IngestRawReader, reader_config
from sinks.unstorable import Position, Unavailable
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def _reader(bootstrap: str, topic: str, timeout: float = 10.0) -> IngestRawReader:
    return IngestRawReader(reader_config(Settings(kafka_bootstrap_servers=bootstrap)), topic,
                           timeout)  # fmt: skip


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    name = f"raw-reader-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=2)])[name].result(30)
    return name


def _produce(bootstrap: str, topic: str, partition: int, count: int) -> list[Position]:
    """`count` messages `p<partition>m<i>` on `partition`; their positions, in order."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        producer.produce(topic, f"p{partition}m{i}".encode(), partition=partition)
    assert producer.flush(30) == 0
    return [(partition, i) for i in range(count)]


def test_one_read_returns_every_wanted_position_across_partitions_and_gaps(
    kafka_bootstrap: str, topic: str
) -> None:
    _produce(kafka_bootstrap, topic, 0, 8)
    _produce(kafka_bootstrap, topic, 1, 3)
    got = _reader(kafka_bootstrap, topic).read({(0, 1), (0, 2), (0, 6), (1, 2)})
    assert got == {(0, 1): b"p0m1", (0, 2): b"p0m2", (0, 6): b"p0m6", (1, 2): b"p1m2"}


def test_positions_kafka_does_not_hold_are_unavailable_with_the_reason(
    kafka_bootstrap: str, topic: str
) -> None:
    _produce(kafka_bootstrap, topic, 0, 3)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_records([TopicPartition(topic, 0, 2)]).values():
        future.result(30)  # what retention does: the partition now starts at offset 2
    # Known from the watermarks, not by waiting: a wait would outlast pytest's timeout.
    got = _reader(kafka_bootstrap, topic, timeout=3600).read({(0, 0), (0, 2), (0, 7), (1, 0)})
    assert got[(0, 2)] == b"p0m2"
    assert got[(0, 0)] == Unavailable("gone (the partition now starts at 2)")
    assert got[(0, 7)] == Unavailable("not written (the partition ends at 3)")
    assert got[(1, 0)] == Unavailable("not written (the partition ends at 0)")


def test_a_deleted_topic_is_unavailable_not_an_error(kafka_bootstrap: str) -> None:
    got = _reader(kafka_bootstrap, f"gone-{uuid.uuid4().hex[:8]}").read({(0, 5)})
    (answer,) = got.values()
    assert isinstance(answer, Unavailable) and "cannot read the partition" in answer.reason


def test_an_unreachable_kafka_is_unavailable_within_the_timeout() -> None:
    """librdkafka retries an unreachable broker forever; only the reader's own timeout ends
    the read, so a reader that ignored it would hang into pytest's timeout."""
    got = _reader(f"127.0.0.1:{free_port()}", "ingest.raw", timeout=1.0).read({(0, 1), (1, 1)})
    assert set(got) == {(0, 1), (1, 1)}
    assert all(isinstance(v, Unavailable) for v in got.values())
