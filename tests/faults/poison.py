"""Poison on `ingest.raw`: messages that are not envelopes, written the way a broken
Kafka-native producer would. The stream must turn each into exactly one dead letter
(its id is a function of the message's position) and go on with the rest."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message, Producer

from schemas.deadletter import stream_dead_letter_id


def produce_poison(bootstrap: str, topic: str, count: int, partitions: int) -> set[str]:
    """Write `count` undecodable messages round-robin over partitions; return the ids of
    the dead letters the stream must make of them."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    expected: set[str] = set()
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
            return
        expected.add(stream_dead_letter_id(topic, msg.partition() or 0, msg.offset() or 0, 0))

    for n in range(count):
        producer.produce(topic, value=b"not an envelope %d" % n, partition=n % partitions,
                         on_delivery=delivered)  # fmt: skip
    producer.flush(30)
    if errors or len(expected) != count:
        raise AssertionError(f"poison not acknowledged: {errors}")
    return expected
