"""The Faust app, built by a factory so tests and `sluice worker` each build their own.

The agent takes envelopes from `ingest.raw` in small batches, runs the pure
`process_envelope` on each (or, for a plainly valid native envelope, the compiled
path that writes the same messages: `streams.compiled`), produces the results with
one delivery wait per batch, and only then lets Faust acknowledge (and later
commit) the batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from typing import Any

import faust
from psycopg_pool import AsyncConnectionPool

from ingest.contracts import ContractCache
from runtime.kafka import AsyncProducer, OutgoingMessage, ProduceFailed, producer_config
from runtime.settings import Settings
from schemas.codec import CodecError, decode
from schemas.contracts import NO_CONTRACTS, Contracts
from schemas.topics import TopicNames
from streams.breaker import (
    BreakerGate,
    BreakerKey,
    BreakerLimits,
    open_rows,
    resume_path,
    status_file_writer,
    status_path,
    take_resume_request,
)
from streams.compiled import forward_compiled
from streams.outputs import to_messages
from streams.process import Position, process_envelope, undecodable_envelope
from streams.watchdog import WorkerMonitor

log = logging.getLogger(__name__)

BATCH_WINDOW_SECONDS = 0.01
"""How long the validating agent gathers envelopes for a batch that is not full. Under
load batches fill before it (`SLUICE_WORKER_BATCH_ENVELOPES`); at half `make bench`'s
sustainable rate 50 ms was most of the time an event spent in the worker (acceptance →
`events` p50 41-48 ms, 14-26 ms with 10 ms, 2026-12-07)."""


def create_app(settings: Settings) -> faust.App:
    """A Faust app with the validating agent, wired to `settings`' Kafka and topics."""
    brokers = [f"kafka://{hp}" for hp in settings.kafka_bootstrap_servers.split(",")]
    faust_dir = settings.state_dir / "faust"
    faust_dir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level itself
    app = faust.App(
        settings.worker_id,
        broker=brokers,
        store="memory://",
        # Faust makes this directory even with in-memory tables; the default is
        # `<worker id>-data` in the working directory.
        datadir=faust_dir / settings.worker_id,
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # A crashed worker's partitions are reassigned after this, not faust's default 60 s.
        broker_session_timeout=10.0,
        producer_acks=-1,
        broker_credentials=broker_credentials(settings),
    )
    topics = TopicNames.for_prefix(settings.topic_prefix)
    ingest = app.topic(
        topics.ingest_raw, key_type=bytes, value_type=bytes,
        key_serializer="raw", value_serializer="raw", internal=False,
    )  # fmt: skip
    monitor = WorkerMonitor(settings)
    forwarder = Forwarder(settings, topics, monitor)
    monitor.watch_breaker(forwarder.breaker_status)
    monitor.report_breakers(forwarder.open_breakers)
    forwarder.attach(app)

    async def start_monitor() -> None:
        monitor.start()

    app.task(start_monitor)
    app.task(forwarder.follow_contracts)

    @app.agent(ingest, name="validate")
    async def validate(stream: Any) -> None:
        batch = settings.worker_batch_envelopes
        async for events in stream.take_events(batch, within=BATCH_WINDOW_SECONDS):
            await forwarder.handle(list(events))

    return app


def broker_credentials(settings: Settings) -> Any:
    """faust's credentials for `KAFKA_SECURITY_PROTOCOL` and friends; None for PLAINTEXT.

    The same variables configure the confluent-kafka clients (`runtime/kafka.py`).
    """
    protocol = settings.kafka_security_protocol.upper()
    if protocol in ("", "PLAINTEXT"):
        return None
    context = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_location or None)
        if settings.kafka_ssl_certificate_location:
            context.load_cert_chain(
                settings.kafka_ssl_certificate_location, settings.kafka_ssl_key_location or None
            )
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


class Forwarder:
    """Processes a batch of envelopes and waits until Kafka holds every result."""

    def __init__(
        self, settings: Settings, topics: TopicNames, monitor: WorkerMonitor | None = None
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._producer: AsyncProducer | None = None
        self._monitor = monitor
        self._app: faust.App | None = None
        self._gate = BreakerGate(
            breaker_limits(settings), topics.dlq,
            generation=lambda: self._app.consumer_generation_id if self._app else None,
            report=status_file_writer(status_path(settings.state_dir, settings.worker_id)),
        )  # fmt: skip
        self._resume_requests = resume_path(settings.state_dir, settings.worker_id)
        self._contracts_pool = AsyncConnectionPool(
            settings.database_url, min_size=1, max_size=1, open=False
        )
        self.contracts: ContractCache | None = None
        """The tenants' data contracts; None without a database (`DATABASE_URL` unset):
        then none is enforced."""
        if settings.database_url:
            self.contracts = ContractCache(
                self._contracts_pool.connection, settings.contracts_poll_seconds
            )

    async def follow_contracts(self) -> None:
        """Keep the data contracts current for as long as the worker runs
        (`ingest.contracts`): envelopes are checked against the latest versions in memory."""
        if self.contracts is None:
            return
        await self._contracts_pool.open(wait=False)
        try:
            await self.contracts.run()
        finally:
            await self._contracts_pool.close()

    def _current_contracts(self) -> Contracts:
        return NO_CONTRACTS if self.contracts is None else self.contracts.current

    def attach(self, app: faust.App) -> None:
        """Let the DLQ circuit breaker release tripped keys on a timer."""
        self._app = app

        async def release_tripped_keys(*_app: Any) -> None:
            asked, labels = take_resume_request(self._resume_requests)
            if asked:
                found = self._gate.resume(labels) or "none open"
                log.warning("breaker resume asked for %s: %s", labels or "all keys", found)
            await self._gate.release_due(self._released, self._send_until_acknowledged)

        app.timer(interval=1.0, name="breaker-release")(release_tripped_keys)

    def open_breakers(self) -> list[dict[str, Any]]:
        """The tripped keys of tenants, for the overview (`streams.breaker.open_rows`)."""
        return open_rows(self._gate.breaker, time.monotonic(), time.time())

    def breaker_status(self) -> dict[str, Any]:
        """Tripped keys and limits, for metrics and health reports."""
        return self._gate.breaker.status(time.monotonic())

    def _get_producer(self) -> AsyncProducer:
        if self._producer is None:
            self._producer = AsyncProducer(producer_config(self._settings))
        return self._producer

    async def handle(self, events: list[Any]) -> None:
        if self.contracts is not None:  # never an envelope before the contracts are known
            await self.contracts.loaded.wait()
        began = time.monotonic()
        messages: list[OutgoingMessage] = []
        for event in events:
            fast = self._forward_compiled(event)
            if fast is not None:
                key, outputs = fast
                if not self._gate.holding(key, event) and self._gate.admit(key, event, outputs):
                    messages += outputs
                continue
            envelope = self._decode(event)
            key = _breaker_key(event, envelope)
            if self._gate.holding(key, event):  # its key is tripped: not processed, not acked
                continue
            outputs, rejected, refused = self._outputs(event, envelope)
            if refused and await self._contracts_moved(envelope):  # judge it by the latest
                outputs, rejected, refused = self._outputs(event, envelope)
            if self._gate.admit(key, event, outputs):
                messages += outputs
                self._note_rejected(event, envelope, rejected)
        await self._send_until_acknowledged(messages)
        if self._monitor is not None:
            dead_count = sum(1 for m in messages if m[0] == self._topics.dlq)
            self._monitor.batch_done(
                envelopes=len(events), dead_letters=dead_count, seconds=time.monotonic() - began
            )

    def _forward_compiled(self, event: Any) -> tuple[BreakerKey, list[OutgoingMessage]] | None:
        """The breaker key and outputs of a plainly valid native envelope, from the compiled
        stream path (`streams.compiled`); None when the Python path must decide."""
        msg = event.message
        contracts = self._current_contracts()
        found = forward_compiled(msg.value, msg.offset, msg.partition, self._topics, contracts)
        if found is None:
            return None
        tenant, family, outputs = found
        return BreakerKey(msg.tp, tenant, family), outputs

    @staticmethod
    def _decode(event: Any) -> dict[str, Any] | CodecError:
        try:
            _, envelope = decode(event.message.value, "IngestEnvelope")
        except CodecError as exc:
            return exc
        return envelope

    def _released(self, event: Any) -> list[OutgoingMessage]:
        """What a held envelope becomes, when the breaker releases it to be sent."""
        envelope = self._decode(event)
        outputs, rejected, _refused = self._outputs(event, envelope)
        self._note_rejected(event, envelope, rejected)
        return outputs

    async def _contracts_moved(self, envelope: dict[str, Any] | CodecError) -> bool:
        """Whether the contracts were reloaded because they were older than `envelope`
        (`ingest.contracts.ContractCache.refresh_if_older`)."""
        if self.contracts is None or isinstance(envelope, CodecError):
            return False
        return await self.contracts.refresh_if_older(envelope["received_at"].timestamp())

    def _outputs(
        self, event: Any, envelope: dict[str, Any] | CodecError
    ) -> tuple[list[OutgoingMessage], list[tuple[str, tuple[str, ...]]], int]:
        """What one envelope becomes (events, tombstones, dead letters; not yet sent), the
        upserts its family's validator rejected, and how many a data contract refused."""
        msg = event.message
        at = Position(msg.topic, msg.partition, msg.offset)
        if isinstance(envelope, CodecError):
            dead = undecodable_envelope(msg.value or b"", at, str(envelope))
            dead_letter = (self._topics.dlq, at.partition, dead.key, dead.value, dead.headers)
            return [dead_letter], [], 0
        processed = process_envelope(envelope, at, self._current_contracts())
        messages = to_messages(processed, at.partition, self._topics)
        return messages, processed.rejected, processed.refused_by_contract

    def _note_rejected(
        self, event: Any, envelope: dict[str, Any] | CodecError,
        rejected: list[tuple[str, tuple[str, ...]]],
    ) -> None:  # fmt: skip
        """Each rejected upsert is one the door accepted: a door bug, logged and counted."""
        if not rejected or isinstance(envelope, CodecError):
            return
        msg = event.message
        log.error("door bug? the stream rejected %d %s/%s event(s) of %s/%d@%d that the door "
                  "accepted, first %r (%s)", len(rejected), envelope["tenant"],
                  envelope["family"], msg.topic, msg.partition, msg.offset, rejected[0][0],
                  ",".join(rejected[0][1]))  # fmt: skip
        if self._monitor is not None:
            for _, codes in rejected:
                self._monitor.door_disagreed(envelope["family"], codes[0] if codes else "")

    async def _send_until_acknowledged(self, messages: list[OutgoingMessage]) -> None:
        """Produce `messages`; through an outage, retry the whole batch (writes are idempotent).

        Faust acknowledges the batch's offsets as soon as this returns or raises,
        so it must not return before delivery; if the worker is cancelled while
        results are undelivered, the process exits at once so no offset past
        them is committed.
        """
        delay = 0.5
        while True:
            try:
                await self._get_producer().send_batch(messages).wait()
                return
            except ProduceFailed as exc:
                log.warning("could not produce %d results (%s); retrying", len(messages), exc)
                if self._monitor is not None:
                    self._monitor.produce_retried()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except asyncio.CancelledError:
                log.critical("stopped with undelivered results; exiting before any commit")
                os._exit(75)


def breaker_limits(settings: Settings) -> BreakerLimits:
    """The DLQ circuit breaker's limits from `settings`."""
    return BreakerLimits(
        max_invalid_ratio=settings.breaker_max_invalid_ratio,
        min_events=settings.breaker_min_events,
        window_events=settings.breaker_window_events,
        max_consecutive_invalid=settings.breaker_max_consecutive_invalid,
        cooldown_seconds=settings.breaker_cooldown_seconds,
        max_held_envelopes=settings.breaker_max_held_envelopes,
    )


def _breaker_key(event: Any, envelope: dict[str, Any] | CodecError) -> BreakerKey:
    """The breaker's key of an envelope: its partition, tenant and family."""
    if isinstance(envelope, CodecError):
        return BreakerKey(event.message.tp, "_undecodable", "")
    return BreakerKey(event.message.tp, envelope["tenant"], envelope["family"])
