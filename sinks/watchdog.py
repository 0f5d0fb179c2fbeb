"""What the sink reports (Prometheus) and the watchdog that restarts it when it is stuck.

The watchdog is a thread beside the sink's lanes (see `runtime.metrics`): it measures the
sink group's lag from Kafka and exits the process when no batch was committed for
`SLUICE_WATCHDOG_STALL_SECONDS` while work waited all along (lag above zero). A lane whose
write has taken longer than that holds the others' commits back from counting as progress,
so one stuck lane restarts the sink too. Exiting is safe: the offsets committed never cover
rows not yet in PostgreSQL.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram

from runtime.kafka import client_security_config
from runtime.metrics import LagProbe, ProgressWatchdog, serve_metrics
from runtime.settings import Settings
from schemas.topics import TopicNames
from store.figures import FigureReporter, record_lag

ROW_KINDS = ("event", "tombstone", "dead_letter", "undecodable")


class SinkMonitor:
    """The sink's metrics and watchdog; `batch_done` once per committed batch."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self._settings = settings
        self.registry = registry or CollectorRegistry()
        rows = Counter(
            "sluice_sink_rows", "Messages written to PostgreSQL, by kind",
            ["kind"], registry=self.registry,
        )  # fmt: skip
        self._rows = {kind: rows.labels(kind=kind) for kind in ROW_KINDS}
        self._latency = Histogram(
            "sluice_sink_batch_seconds",
            "From a batch's consumption to its offsets' commit (database write included)",
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, float("inf")),
        )
        unstorable = Counter(
            "sluice_sink_unstorable",
            "Versions PostgreSQL refused, stored as dead letters (stage sink), by whether their"
            " raw holds the bytes first received (original) or a re-serialised event"
            " (reconstructed)",
            ["raw"], registry=self.registry,
        )  # fmt: skip
        self._original = unstorable.labels(raw="original")
        self._reconstructed = unstorable.labels(raw="reconstructed")
        self._retries = Counter(
            "sluice_sink_write_retries", "Batch writes retried through a database outage",
            registry=self.registry,
        )  # fmt: skip
        topics = TopicNames.for_prefix(settings.topic_prefix)
        self._probe = LagProbe(
            settings.kafka_bootstrap_servers, settings.sink_group, (topics.events, topics.dlq),
            client_security_config(settings),
        )  # fmt: skip
        self.watchdog = ProgressWatchdog(
            "sink", self._probe.total_lag, self.registry,
            stall_seconds=settings.watchdog_stall_seconds,
        )  # fmt: skip
        self.figures = FigureReporter(
            "sink", settings.database_url, settings.figures_report_seconds, self._report_lag
        )

    def _report_lag(self, conn: psycopg.Connection[Any]) -> None:
        """The overview's lag of the sink group (the watchdog's latest measurement)."""
        lag = self.watchdog.last_lag
        if lag is not None:
            record_lag(conn, "sink", lag, time.time())

    def start(self) -> None:
        """Serve `/metrics` (if a port is set), start the watchdog and the figures."""
        serve_metrics(self.registry, self._settings.http_host, self._settings.sink_metrics_port)
        self.watchdog.start()
        self.figures.start()

    def stop(self) -> None:
        self.watchdog.stop()
        self.figures.stop()

    def batch_done(
        self, *, events: int, tombstones: int, dead_letters: int, undecodable: int, seconds: float,
        refused: int = 0, reconstructed: int = 0, progress: bool = True,
    ) -> None:  # fmt: skip
        """A batch is in PostgreSQL and its offsets are committed; `refused` of its versions
        were dead-lettered instead, `reconstructed` of them without their original bytes.
        `progress` False: counted, but not as the sink's progress (another lane is stuck)."""
        for kind, count in zip(
            ROW_KINDS, (events, tombstones, dead_letters, undecodable), strict=True
        ):
            if count:
                self._rows[kind].inc(count)
        if refused:
            self._original.inc(refused - reconstructed)
            self._reconstructed.inc(reconstructed)
        self._latency.observe(seconds)
        if progress:
            self.watchdog.progress()

    def write_retried(self) -> None:
        self._retries.inc()
