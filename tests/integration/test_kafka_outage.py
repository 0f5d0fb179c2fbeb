"""Invariant 1: with Kafka down the door answers 503 with Retry-After, never a 2xx."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.topic_admin import ensure_topics
from sluice.launchers.kafka import KafkaLauncher
from sluice.stack import ProcessStack
from tests.conftest import make_settings
from tests.httpclient import call

pytestmark = pytest.mark.integration

EVENT = {"type": "t", "source": "s", "time": "2024-01-01T00:00:00Z", "data": {}}


def test_post_answers_503_while_kafka_is_stopped(
    tmp_path: Path, database_url: str, new_key: Callable[..., str]
) -> None:
    with KafkaLauncher(tmp_path / "kafka") as kafka:
        settings = make_settings(kafka.bootstrap_servers, database_url, produce_timeout_ms=3000)
        ensure_topics(settings)
        api = ProcessStack(settings, tmp_path / "logs")
        api.start(("api",))
        try:
            api.wait_ready(timeout=60)
            key = new_key("acme")
            url = f"{api.base_url}/v1/events"
            first = call(
                "POST", url, json_body={**EVENT, "id": "before"}, headers={"X-API-Key": key}
            )
            assert first.status == 202

            kafka.stop()
            answer = call(
                "POST", url, json_body={**EVENT, "id": "during"}, headers={"X-API-Key": key}
            )
            assert answer.status == 503, answer.body
            assert int(answer.headers["Retry-After"]) > 0
            assert answer.json()["error"]["code"] in ("kafka_unavailable", "overloaded")
            ready = call("GET", f"{api.base_url}/readyz")
            assert ready.status == 503 and ready.json()["kafka"] == "unreachable"
        finally:
            api.stop()
