"""What the worker and the sink report about themselves, and the watchdog that acts on it.

Both consume with a consumer group, so one `LagProbe` measures either one from the
outside: the group's committed offsets against the partitions' high watermarks. That
is the lag that matters (what is not durably handled yet), and it is measured on a
thread of its own with its own client, so a wedged event loop or a stuck consumer
cannot hide it.

`ProgressWatchdog` combines it with "last progress" (a batch handled): when no batch
was handled for `stall_seconds` while work waited the whole time (the lag never fell to
zero), the process is stuck in a way a restart fixes (a consumer that stopped fetching
after a broker restart, an agent that died silently). It then exits with
`STALLED_EXIT_CODE`, so a supervisor (systemd, Kubernetes, Docker's restart policy)
starts it again; offsets are committed only after the writes they cover, so exiting at
any moment loses nothing.

Metric updates happen once per batch or at scrape time, never per event.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, Gauge, start_http_server

log = logging.getLogger(__name__)

STALLED_EXIT_CODE = 70
"""EX_SOFTWARE: the watchdog found the process stuck; a supervisor should restart it."""


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> bool:
    """Serve `registry` at `http://host:port/metrics` on a daemon thread; port 0 = disabled."""
    if port <= 0:
        return False
    start_http_server(port, addr=host, registry=registry)
    log.info("metrics at http://%s:%d/metrics", host, port)
    return True


class LagProbe:
    """Total lag of consumer group `group` over `topics`: high watermark minus committed offset.

    A partition without a committed offset counts from its low watermark (the group
    starts at the earliest offset). Never joins the group: it only reads offsets.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        group: str,
        topics: Sequence[str],
        security: Mapping[str, Any] | None = None,
    ) -> None:
        self._topics = tuple(topics)
        self._config = {
            **(security or {}),
            "bootstrap.servers": bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
            "client.id": f"{group}-lag-probe",
            # Outages are expected and reported by `None`; keep librdkafka off stderr.
            "logger": logging.getLogger(f"{__name__}.client"),
        }
        self._consumer: Consumer | None = None

    def total_lag(self, timeout: float = 5.0) -> int | None:
        """The group's lag now, or None when Kafka cannot tell (an outage)."""
        if self._consumer is None:  # created on first use: building a monitor connects nothing
            self._consumer = Consumer(self._config)
        try:
            metadata = self._consumer.list_topics(timeout=timeout)
            partitions = [
                TopicPartition(topic, p)
                for topic in self._topics
                if topic in metadata.topics
                for p in metadata.topics[topic].partitions
            ]
            committed = self._consumer.committed(partitions, timeout=timeout)
            lag = 0
            for tp in committed:
                low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout)
                lag += max(0, high - (tp.offset if tp.offset >= 0 else low))
        except KafkaException as exc:
            log.debug("lag probe failed: %s", exc)
            return None
        return lag

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


def stalled(
    since_progress: float, waiting_for: float | None, lag_now: int | None, stall_seconds: float
) -> bool:
    """No progress for `stall_seconds` while work was seen waiting all that time
    (`waiting_for`: seconds since the first of an unbroken run of measurements, all with
    Kafka reachable and a lag above zero, since the last progress).

    Both groups commit the offset after the last handled message, so an idle, healthy
    consumer has lag 0 and never counts. An unknown lag (Kafka unreachable) breaks the
    run: restarting would not bring Kafka back, and the consumer gets a full window once
    it returns.
    """
    if lag_now is None or waiting_for is None or not lag_now > 0:
        return False
    return since_progress >= stall_seconds and waiting_for >= stall_seconds


def exit_for_restart(name: str) -> None:
    """Leave at once so a supervisor restarts the process (nothing uncommitted is lost)."""
    log.critical("%s made no progress while work waited; exiting for a restart", name)
    logging.shutdown()
    os._exit(STALLED_EXIT_CODE)


class ProgressWatchdog:
    """Watches one consumer's progress and lag on a daemon thread; exports both as gauges.

    `excused()` true means the consumer stands still on purpose (the DLQ circuit breaker
    holds its partitions): a restart would only undo that, so the watchdog waits.
    """

    def __init__(
        self,
        name: str,
        probe: Callable[[], int | None],
        registry: CollectorRegistry,
        *,
        stall_seconds: float,
        on_stall: Callable[[str], None] = exit_for_restart,
        excused: Callable[[], bool] = lambda: False,
    ) -> None:
        self.name = name
        self.excused = excused
        self._probe = probe
        self._stall_seconds = stall_seconds
        self._on_stall = on_stall
        self._interval = max(0.2, min(5.0, stall_seconds / 4)) if stall_seconds > 0 else 5.0
        self._last_progress = time.monotonic()
        self._waiting_since: float | None = None
        self.last_lag: int | None = None
        """The latest measurement (None: none yet, or Kafka could not tell)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        labels = {"consumer": name}
        self.lag = Gauge(
            "sluice_consumer_lag", "Messages not yet committed by the consumer group",
            ["consumer"], registry=registry,
        ).labels(**labels)  # fmt: skip
        Gauge(
            "sluice_seconds_since_progress", "Seconds since the consumer last handled a batch",
            ["consumer"], registry=registry,
        ).labels(**labels).set_function(self.seconds_since_progress)  # fmt: skip

    def progress(self) -> None:
        """A batch was handled (call once per batch, from any thread)."""
        self._last_progress = time.monotonic()
        self._waiting_since = None

    def seconds_since_progress(self) -> float:
        return time.monotonic() - self._last_progress

    def check(self, lag: int | None) -> bool:
        """Record a lag measurement; True when the consumer counts as stalled."""
        now = time.monotonic()
        self.last_lag = lag
        if lag is None or lag == 0:  # unknown (Kafka unreachable) or idle: nothing waits
            self._waiting_since = None
            return False
        self.lag.set(lag)
        if self._waiting_since is None:
            self._waiting_since = now
        waiting_for = now - self._waiting_since
        return stalled(self.seconds_since_progress(), waiting_for, lag, self._stall_seconds)

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Begin measuring (and acting, unless `stall_seconds` is 0); idempotent."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name=f"{self.name}-watchdog")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            if self.check(self._probe()) and self._stall_seconds > 0 and not self.excused():
                self._on_stall(self.name)
                return
