"""What the Faust worker reports (Prometheus) and the watchdog that restarts it when stuck.

The watchdog is a thread, not a Faust timer: a timer runs on the worker's own event
loop, so the very failures it must catch (a wedged loop, an aiokafka consumer that
stopped fetching after a broker restart, an agent that died while the worker lives
on) could silence it too. The thread measures the worker group's committed lag on
`ingest.raw` from Kafka with its own client, and exits the process when no batch was
handled for `SLUICE_WATCHDOG_STALL_SECONDS` while work waited (lag above zero). Exiting
is safe: the agent lets Faust commit only batches whose results Kafka acknowledged.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime.kafka import client_security_config
from runtime.metrics import LagProbe, ProgressWatchdog, serve_metrics
from runtime.settings import Settings
from schemas.topics import TopicNames
from store.figures import BreakerRow, FigureReporter, record_lag, replace_breakers


class WorkerMonitor:
    """The worker's metrics and watchdog; `batch_done` once per handled batch."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self._settings = settings
        self.registry = registry or CollectorRegistry()
        self._envelopes = Counter(
            "sluice_stream_envelopes", "Ingest envelopes handled (results acknowledged by Kafka)",
            registry=self.registry,
        )  # fmt: skip
        self._dead_letters = Counter(
            "sluice_stream_dead_letters", "Dead letters produced by the stream processor",
            registry=self.registry,
        )  # fmt: skip
        self._produce_retries = Counter(
            "sluice_stream_produce_retries", "Result batches re-sent because Kafka did not ack",
            registry=self.registry,
        )  # fmt: skip
        self._door_disagreements = Counter(
            "sluice_stream_door_disagreements",
            "Events the door accepted that the stream's validators rejected (door bugs)",
            ["family", "reason"], registry=self.registry,
        )  # fmt: skip
        self._latency = Histogram(
            "sluice_stream_batch_seconds", "From a batch's arrival to Kafka's ack of its results",
            registry=self.registry,
        )  # fmt: skip
        topics = TopicNames.for_prefix(settings.topic_prefix)
        self._probe = LagProbe(
            settings.kafka_bootstrap_servers, settings.worker_id, (topics.ingest_raw,),
            client_security_config(settings),
        )  # fmt: skip
        self.watchdog = ProgressWatchdog(
            "worker", self._probe.total_lag, self.registry,
            stall_seconds=settings.watchdog_stall_seconds,
        )  # fmt: skip
        self.member = f"{socket.gethostname()}:{os.getpid()}"
        """This process among the group's workers, in the overview's breaker rows."""
        self._open_breakers: Callable[[], list[dict[str, Any]]] = list
        self.figures = FigureReporter(
            "worker", settings.database_url, settings.figures_report_seconds, self._report
        )

    def report_breakers(self, open_breakers: Callable[[], list[dict[str, Any]]]) -> None:
        """Record `open_breakers()` (`streams.breaker.open_rows`) with each report."""
        self._open_breakers = open_breakers

    def _report(self, conn: psycopg.Connection[Any]) -> None:
        """The overview's figures of this worker: the group's lag, this process's open
        breaker keys (replacing the ones it recorded before)."""
        lag = self.watchdog.last_lag
        if lag is not None:
            record_lag(conn, "worker", lag, time.time())
        rows = [BreakerRow(state="open", **row) for row in self._open_breakers()]
        replace_breakers(conn, self.member, rows)

    def start(self) -> None:
        """Serve `/metrics` (if a port is set), start the watchdog and the figures;
        idempotent."""
        if self.watchdog.started:
            return
        serve_metrics(self.registry, self._settings.http_host, self._settings.worker_metrics_port)
        self.watchdog.start()
        self.figures.start()

    def batch_done(self, *, envelopes: int, dead_letters: int, seconds: float) -> None:
        """A batch's results are acknowledged by Kafka; Faust may commit it."""
        self._envelopes.inc(envelopes)
        if dead_letters:
            self._dead_letters.inc(dead_letters)
        self._latency.observe(seconds)
        self.watchdog.progress()

    def produce_retried(self) -> None:
        self._produce_retries.inc()

    def door_disagreed(self, family: str, reason: str) -> None:
        """The stream rejected an event the door had accepted (`reason`: its first code)."""
        self._door_disagreements.labels(family, reason).inc()

    def watch_breaker(self, status: Callable[[], dict[str, Any]]) -> None:
        """Export the DLQ circuit breaker's state (read at scrape time from `status()`, the
        breaker's own report) and excuse the watchdog while a key is held open."""
        self.registry.register(BreakerCollector(status))
        self.watchdog.excused = lambda: bool(_open_keys(status))


def _open_keys(status: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return dict(status().get("open", {}))
    except RuntimeError:  # the breaker changed while read from this thread; next time
        return {}


class BreakerCollector(Collector):
    """`sluice_stream_breaker_open{partition,tenant,family}` (1 per tripped key) and the
    envelopes each holds, from the breaker's status at scrape time."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterable[Metric]:
        tripped = _open_keys(self._status)
        labels = ["partition", "tenant", "family"]
        opened = GaugeMetricFamily(
            "sluice_stream_breaker_open", "1 while the DLQ circuit breaker holds a key",
            labels=labels,
        )  # fmt: skip
        held = GaugeMetricFamily(
            "sluice_stream_breaker_held_envelopes", "Envelopes held by an open breaker",
            labels=labels,
        )  # fmt: skip
        for label, state in tripped.items():
            values = [str(state.get(name, label)) for name in labels]
            opened.add_metric(values, 1)
            held.add_metric(values, float(state.get("held", 0)))
        count = GaugeMetricFamily(
            "sluice_stream_breaker_open_keys",
            "Keys (partition, tenant, family) the DLQ circuit breaker holds", value=len(tripped),
        )  # fmt: skip
        return [opened, held, count]
