"""Kafka clients shared by the door, the stream processor and the sinks.

`AsyncProducer` wraps confluent-kafka's producer for asyncio: delivery reports
are served by a background thread, or by the event loop itself (the door), and
callers await one `DeliveryBatch` per request (or per processed envelope), never
one future per event.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from runtime.settings import Settings

log = logging.getLogger(__name__)


class ProduceFailed(Exception):
    """Kafka did not acknowledge every message of a batch (outage, timeout, full queue)."""


def client_security_config(settings: Settings) -> dict[str, Any]:
    """librdkafka TLS/SASL options from `KAFKA_SECURITY_PROTOCOL` and friends (unset: none).

    Every Kafka client Sluice builds with confluent-kafka adds these, so one set of
    variables reaches a real cluster's listeners (e.g. `SASL_SSL` with `SCRAM-SHA-512`).
    """
    options = {
        "security.protocol": settings.kafka_security_protocol,
        "sasl.mechanism": settings.kafka_sasl_mechanism,
        "sasl.username": settings.kafka_sasl_username,
        "sasl.password": settings.kafka_sasl_password,
        "ssl.ca.location": settings.kafka_ssl_ca_location,
        "ssl.certificate.location": settings.kafka_ssl_certificate_location,
        "ssl.key.location": settings.kafka_ssl_key_location,
    }
    return {name: value for name, value in options.items() if value}


def client_config(settings: Settings) -> dict[str, Any]:
    """Where the cluster is and how to reach it: the base of any confluent-kafka client."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        **client_security_config(settings),
    }


def producer_config(settings: Settings, *, linger_ms: int = 5) -> dict[str, Any]:
    """Producer settings for durability: idempotent, acks=all, compressed, batched.

    `linger_ms` is how long messages gather into one produce request: the door passes
    `SLUICE_DOOR_LINGER_MS`; the stream keeps 5 ms, since each of its batches waits for
    Kafka's acknowledgement before the next, and a longer linger is added to every one.
    """
    return {
        **client_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": linger_ms,
        "batch.size": 1_000_000,
        "message.max.bytes": 20_000_000,
        "message.timeout.ms": settings.produce_timeout_ms,
        "queue.buffering.max.kbytes": 262_144,
        "queue.buffering.max.messages": 500_000,
        "client.id": "sluice",
    }


class DeliveryBatch:
    """Completes when Kafka has acknowledged all `expected` messages, or fails on the first error.

    Delivery callbacks run where the producer is polled, the only writer of the
    counters: on the poll thread, which hands the result to the event loop
    thread-safely, or on the event loop itself (`in_loop`), which settles it at once.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        expected: int,
        *,
        record_offsets: bool = False,
        in_loop: bool = False,
    ) -> None:
        self._loop = loop
        self._in_loop = in_loop
        self._future: asyncio.Future[None] = loop.create_future()
        self._remaining = expected
        self._failed = False
        self._record_offsets = record_offsets
        self.offsets: dict[tuple[str, int], int] = {}
        """With `record_offsets`: the offset Kafka gave each acknowledged message, by (topic,
        partition) (the last one where a partition got several)."""
        if expected == 0:
            self._future.set_result(None)

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if self._failed:
            return
        if err is not None:
            self._failed = True
            self._hand_over(ProduceFailed(str(err)))
            return
        if self._record_offsets:
            self.offsets[(msg.topic() or "", msg.partition() or 0)] = msg.offset() or 0
        self._remaining -= 1
        if self._remaining == 0:
            self._hand_over(None)

    def _hand_over(self, exc: ProduceFailed | None) -> None:
        if self._in_loop:
            self._settle(exc)
        else:
            self._loop.call_soon_threadsafe(self._settle, exc)

    def fail_now(self, exc: ProduceFailed) -> None:
        """Fail from the event-loop thread (e.g. the local queue is full)."""
        self._failed = True
        self._settle(exc)

    def _settle(self, exc: ProduceFailed | None) -> None:
        if self._future.done():
            return
        if exc is None:
            self._future.set_result(None)
        else:
            self._future.set_exception(exc)

    async def wait(self) -> None:
        """Return once every message is acknowledged; raise `ProduceFailed` otherwise."""
        await self._future


OutgoingMessage = tuple[str, int, bytes | None, bytes | None, Sequence[tuple[str, bytes]] | None]
"""(topic, partition, key, value, headers); partition -1 lets the client choose."""


SERVE_INTERVAL_SECONDS = 0.001
"""How often an event loop serving delivery reports polls while messages are in flight."""


class AsyncProducer:
    """An idempotent confluent-kafka producer usable from asyncio.

    Delivery reports are served by a thread of their own, or, with `served_in_loop`, by the
    event loop that sends: it polls every `SERVE_INTERVAL_SECONDS` while messages are in
    flight. The door serves them in its loop. A poll thread takes the GIL for each report,
    and so takes it whenever the loop lets go of it for a system call (a socket read or
    write, `epoll`, a PostgreSQL send), and the loop then waits for it to come back: py-spy
    showed the door's main thread ~16-19 % waiting in `select` while requests queued.
    """

    def __init__(self, config: dict[str, Any], *, served_in_loop: bool = False) -> None:
        self._producer = Producer(config)
        self._served_in_loop = served_in_loop
        self._tick: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not served_in_loop:
            self._thread = threading.Thread(target=self._serve, name="kafka-delivery", daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _serve_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        self._tick = loop.call_later(SERVE_INTERVAL_SECONDS, self._serve_once, loop)

    def _serve_once(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve the reports that arrived; poll again soon while any message is in flight."""
        self._tick = None
        self._producer.poll(0)
        if len(self._producer):
            self._serve_soon(loop)

    def send_batch(
        self, messages: Sequence[OutgoingMessage], *, record_offsets: bool = False
    ) -> DeliveryBatch:
        """Queue all `messages`; the returned batch completes when Kafka acknowledged them.

        `record_offsets` keeps each acknowledged message's offset (`DeliveryBatch.offsets`).
        """
        loop = asyncio.get_running_loop()
        batch = DeliveryBatch(
            loop, len(messages), record_offsets=record_offsets, in_loop=self._served_in_loop
        )
        # Positional arguments and bound locals: the stream processor queues one message
        # per event here, and keyword parsing was a quarter of the cost of each call.
        produce, acknowledged = self._producer.produce, batch.on_delivery
        for topic, partition, key, value, headers in messages:
            try:
                if headers:
                    produce(topic, value, key, partition, acknowledged, headers=list(headers))
                else:
                    produce(topic, value, key, partition, acknowledged)
            except BufferError as exc:
                batch.fail_now(ProduceFailed(f"producer queue full: {exc}"))
                break
            except KafkaException as exc:
                batch.fail_now(ProduceFailed(str(exc)))
                break
        if self._served_in_loop and self._tick is None:
            self._serve_soon(loop)
        return batch

    def queue_length(self) -> int:
        """Messages waiting in the client for delivery (a back-pressure signal)."""
        return len(self._producer)

    def cluster_reachable(self, timeout: float = 2.0) -> bool:
        """True when a broker answers a metadata request (writes nothing)."""
        try:
            self._producer.list_topics(timeout=timeout)
        except KafkaException:
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to `timeout`), then stop the delivery thread."""
        remaining = self._producer.flush(timeout)
        if remaining:
            log.warning("closing producer with %d undelivered messages", remaining)
        if self._tick is not None:
            self._tick.cancel()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
