"""The door's Prometheus metrics: outcomes by family and status, and what waits for Kafka."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from prometheus_client import generate_latest

from producer_api import metrics
from runtime.settings import Settings
from sluice.stack import ProcessStack
from streams.watchdog import WorkerMonitor
from tests.httpclient import call


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text exposition, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.parametrize(
    ("route", "family"),
    [("/v1/events", "native"), ("/v1/events/{id}", "native"), ("/healthz", "none"),
     ("/dashdive/v1/events", "dashdive"), ("/metrics", "none"), ("unmatched", "none")],
)  # fmt: skip
def test_family_comes_from_the_route_pattern(route: str, family: str) -> None:
    assert metrics.family_of(route) == family


async def test_the_middleware_counts_the_status_the_client_sees() -> None:
    app = web.Application()
    installed = metrics.install(app)

    async def refuse(_request: web.Request) -> web.Response:
        raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"})

    async def accept(_request: web.Request) -> web.Response:
        return web.Response(status=202)

    app.router.add_post("/v1/events", accept)
    app.router.add_post("/v1/other", refuse)
    for path, handler in (("/v1/events", accept), ("/v1/events", accept), ("/v1/other", refuse)):
        request = make_mocked_request("POST", path, app=app)
        match = await app.router.resolve(request)
        match.add_app(app)
        request._match_info = match
        with contextlib.suppress(web.HTTPServiceUnavailable):
            await metrics.outcome_middleware(request, handler)
    scrape = await metrics.metrics_endpoint(make_mocked_request("GET", "/metrics", app=app))
    assert scrape.body is not None and isinstance(scrape.body, bytes)
    text = scrape.body.decode()
    name = "sluice_http_requests_total"
    assert _sample(text, name, route="/v1/events", status="202", family="native") == 2.0
    assert _sample(text, name, route="/v1/other", status="503") == 1.0
    assert installed.registry is app[metrics.METRICS].registry
    # Without a door (no Kafka client yet) the gauges read zero instead of failing.
    assert _sample(text, "sluice_door_inflight_bytes") == 0.0


@pytest.mark.integration
def test_metrics_on_the_running_door(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    key = new_key("metered")
    event = {"id": f"m-{uuid.uuid4()}", "type": "t", "source": "s", "time": "2024-01-01T00:00:00Z",
             "data": {}}  # fmt: skip
    assert call("POST", f"{stack.base_url}/v1/events", json_body=event,
                headers={"X-API-Key": key}).status == 202  # fmt: skip
    assert call("POST", f"{stack.base_url}/v1/events", json_body=event).status == 401
    scrape = call("GET", f"{stack.base_url}/metrics")
    assert scrape.status == 200
    assert scrape.headers["Content-Type"].startswith("text/plain")
    text = scrape.body.decode()
    name = "sluice_http_requests_total"
    accepted = _sample(text, name, family="native", route="/v1/events", status="202")
    assert accepted is not None and accepted >= 1
    assert (_sample(text, name, family="native", route="/v1/events", status="401") or 0) >= 1
    assert _sample(text, "sluice_door_inflight_bytes") is not None
    assert _sample(text, "sluice_door_producer_queue_messages") is not None


def test_worker_exports_the_breaker_and_excuses_its_watchdog() -> None:
    monitor = WorkerMonitor(Settings(kafka_bootstrap_servers="127.0.0.1:1"))
    tripped: dict[str, Any] = {"open": {}}
    monitor.watch_breaker(lambda: tripped)
    assert not monitor.watchdog.excused()
    tripped["open"] = {"sluice.ingest.raw/2 acme/native": {
        "reason": "ratio", "held": 3, "partition": "sluice.ingest.raw/2", "tenant": "acme",
        "family": "native"}}  # fmt: skip
    text = generate_latest(monitor.registry).decode()
    assert _sample(text, "sluice_stream_breaker_open", partition="sluice.ingest.raw/2",
                   tenant="acme", family="native") == 1.0  # fmt: skip
    assert _sample(text, "sluice_stream_breaker_held_envelopes") == 3.0
    assert _sample(text, "sluice_stream_breaker_open_keys") == 1.0
    monitor.door_disagreed("native", "malformed_json")
    text = generate_latest(monitor.registry).decode()
    assert _sample(text, "sluice_stream_door_disagreements_total", family="native",
                   reason="malformed_json") == 1.0  # fmt: skip
    assert monitor.watchdog.excused()  # a deliberate stop is not a stall
