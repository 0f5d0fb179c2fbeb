"""The PostHog, OpenTelemetry, Segment and RudderStack SDKs keep their promise through a
Kafka outage: the door answers 503 with `Retry-After` while Kafka is down, each SDK retries
on its own schedule, and once Kafka is back every event they were told was sent is stored
(invariant 1)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from posthog import Posthog
from prometheus_client.parser import text_string_to_metric_families
from rudderstack import analytics as rudderstack_analytics
from segment import analytics as segment_analytics

from runtime.topic_admin import ensure_topics
from sluice.launchers.kafka import KafkaLauncher
from sluice.stack import ProcessStack
from tests.conftest import eventually, make_settings
from tests.httpclient import call

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNT = 200


def _count(stack: ProcessStack, key: str, family: str) -> int:
    total, cursor = 0, ""
    while True:
        url = f"{stack.base_url}/v1/events?family={family}&limit=1000{cursor}"
        page: dict[str, Any] = call("GET", url, headers={"X-API-Key": key}).json()
        total += len(page["events"])
        if not page.get("next_cursor"):
            return total
        cursor = f"&cursor={quote(page['next_cursor'])}"


def _answers(stack: ProcessStack, family: str, status: str) -> float:
    """How many answers of `status` the door gave `family`'s routes (its own metrics)."""
    text = call("GET", f"{stack.base_url}/metrics").body.decode()
    return sum(
        sample.value
        for metric in text_string_to_metric_families(text)
        for sample in metric.samples
        if sample.name == "sluice_http_requests_total"
        and sample.labels.get("family") == family
        and sample.labels.get("status") == status
    )


def test_both_sdks_retry_through_a_kafka_outage_and_lose_nothing(
    tmp_path: Path, database_url: str, new_key: Callable[..., str]
) -> None:
    with KafkaLauncher(tmp_path / "kafka") as kafka:
        settings = make_settings(kafka.bootstrap_servers, database_url, produce_timeout_ms=3000)
        ensure_topics(settings)
        stack = ProcessStack(settings, tmp_path / "logs")
        stack.start(("api",))  # the stream and sink start after the outage (see below)
        try:
            stack.wait_ready(timeout=120)
            key = new_key(f"retry-{uuid.uuid4().hex[:8]}")
            kafka.stop()
            down = call("POST", f"{stack.base_url}/posthog/batch/", headers={
                "Content-Type": "application/json"},
                body=b'{"api_key": "%s", "batch": [{"event": "e", "distinct_id": "d"}]}'
                % key.encode())  # fmt: skip
            assert down.status == 503 and int(down.headers["Retry-After"]) > 0, down.body

            errors: list[Exception] = []
            posthog = Posthog(key, host=f"{stack.base_url}/posthog", flush_at=50,
                              max_retries=10, on_error=lambda e, _b: errors.append(e))  # fmt: skip
            auth = {"Authorization": f"Bearer {key}"}
            exporter = OTLPLogExporter(f"{stack.base_url}/otlp/v1/logs", headers=auth, timeout=120)
            provider = LoggerProvider()
            provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
            logger = logging.getLogger(f"sluice.test.retry.{uuid.uuid4().hex[:6]}")
            logger.propagate = False
            logger.addHandler(LoggingHandler(logger_provider=provider))
            for n in range(COUNT):
                posthog.capture("e", distinct_id="d", properties={"n": n})
                logger.warning("record %d", n)
            flushed: list[bool] = []
            otlp = threading.Thread(target=lambda: flushed.append(provider.force_flush(180_000)))
            otlp.start()
            time.sleep(10)  # both SDKs meet 503s meanwhile
            kafka.start()
            posthog.shutdown()  # flushes: returns once every batch was sent or given up on
            otlp.join(timeout=200)
            assert errors == [] and flushed == [True]
            assert _answers(stack, "posthog", "503") >= 2  # the probe, then the SDK's own
            assert _answers(stack, "otlp", "503") >= 1
            assert _answers(stack, "posthog", "200") >= 1 and _answers(stack, "otlp", "200") >= 1
            for role in ("worker", "sink"):  # what Kafka acknowledged is read from here on
                stack.start_role(role)
            eventually(lambda: _count(stack, key, "posthog") == COUNT, timeout=120)
            eventually(lambda: _count(stack, key, "otlp") == COUNT, timeout=120)
            provider.shutdown()
        finally:
            stack.stop()


def test_segment_and_rudderstack_sdks_retry_through_a_kafka_outage_and_lose_nothing(
    tmp_path: Path, database_url: str, new_key: Callable[..., str]
) -> None:
    """segment-analytics-python waits out `Retry-After` and sends again (a 503 with it is a
    rate limit to that SDK: not counted against `max_retries`); rudder-sdk-python retries
    a 5xx with its own exponential backoff, up to `max_retries`."""
    with KafkaLauncher(tmp_path / "kafka") as kafka:
        settings = make_settings(kafka.bootstrap_servers, database_url, produce_timeout_ms=3000)
        ensure_topics(settings)
        stack = ProcessStack(settings, tmp_path / "logs")
        stack.start(("api",))
        try:
            stack.wait_ready(timeout=120)
            key = new_key(f"retry-{uuid.uuid4().hex[:8]}")
            kafka.stop()
            down = call("POST", f"{stack.base_url}/segment/v1/track", headers={
                "Content-Type": "application/json"},
                body=b'{"writeKey": "%s", "userId": "u", "event": "e"}' % key.encode())  # fmt: skip
            assert down.status == 503 and int(down.headers["Retry-After"]) > 0, down.body

            errors: list[Exception] = []
            clients = [
                sdk.Client(key, host=f"{stack.base_url}/{family}", gzip=True, upload_size=50,
                           max_retries=10, on_error=lambda e, _b: errors.append(e))
                for sdk, family in ((segment_analytics, "segment"),
                                    (rudderstack_analytics, "rudderstack"))
            ]  # fmt: skip
            for n in range(COUNT):
                for client in clients:
                    client.track("u", "e", {"n": n})
            flushing = [threading.Thread(target=client.flush) for client in clients]
            for thread in flushing:
                thread.start()
            time.sleep(10)  # both SDKs meet 503s meanwhile
            kafka.start()
            for thread in flushing:
                thread.join(timeout=300)
            assert errors == [] and not any(thread.is_alive() for thread in flushing)
            assert _answers(stack, "segment", "503") >= 2  # the probe, then the SDK's own
            assert _answers(stack, "rudderstack", "503") >= 1
            assert _answers(stack, "segment", "200") >= 1
            assert _answers(stack, "rudderstack", "200") >= 1
            for role in ("worker", "sink"):
                stack.start_role(role)
            eventually(lambda: _count(stack, key, "segment") == COUNT, timeout=120)
            eventually(lambda: _count(stack, key, "rudderstack") == COUNT, timeout=120)
            for client in clients:
                client.join()
        finally:
            stack.stop()
