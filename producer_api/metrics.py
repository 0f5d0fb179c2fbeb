"""The door's Prometheus metrics, served at `/metrics` on the root app.

* `sluice_http_requests_total{family, route, method, status}`: every answer, counted
  once per request by a middleware outside every other one (so the status is the
  one the client saw, error mappings and family sub-apps included). `route` is the
  route's pattern, never the raw path, so label values stay few.
* `sluice_door_inflight_bytes` and `sluice_door_producer_queue_messages`: what waits
  for Kafka's acknowledgement, and `sluice_door_receiving_bytes`: bytes of request bodies
  held (the body budget), all read at scrape time (nothing is added to the hot path).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest

from producer_api.resources import DOOR
from schemas.identity import FAMILIES

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DoorMetrics:
    """The door's metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sluice_http_requests", "HTTP answers by API family, route pattern, method and status",
            ["family", "route", "method", "status"], registry=self.registry,
        )  # fmt: skip
        self.inflight_bytes = Gauge(
            "sluice_door_inflight_bytes", "Bytes of requests waiting for Kafka's acknowledgement",
            registry=self.registry,
        )  # fmt: skip
        self.receiving_bytes = Gauge(
            "sluice_door_receiving_bytes",
            "Bytes of request bodies held: received, decoded or waiting for Kafka",
            registry=self.registry,
        )
        self.queue_messages = Gauge(
            "sluice_door_producer_queue_messages",
            "Messages in the producer's queue, not yet acknowledged by Kafka",
            registry=self.registry,
        )

    def observe(self, request: web.Request, status: int) -> None:
        route = route_pattern(request)
        family = family_of(route)
        self.requests.labels(family, route, request.method, str(status)).inc()


METRICS = web.AppKey("metrics", DoorMetrics)


def route_pattern(request: web.Request) -> str:
    """The matched route's pattern (`/v1/events/{id}`), or `unmatched`."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical


def family_of(route: str) -> str:
    """The API family a route pattern belongs to: a family's name in its first two path
    segments (family front doors mount under their name), `native` for `/v1/…`, else
    `none` (health, readiness, metrics)."""
    segments = route.strip("/").split("/")[:2]
    for segment in segments:
        if segment in FAMILIES:
            return segment
    return "native" if segments[0] == "v1" else "none"


@web.middleware
async def outcome_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each answer once, by the status the client gets."""
    metrics = request.app[METRICS]
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        metrics.observe(request, exc.status)
        raise
    except Exception:
        metrics.observe(request, 500)
        raise
    metrics.observe(request, response.status)
    return response


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus text exposition of the door's registry."""
    body = generate_latest(request.app[METRICS].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def install(app: web.Application) -> DoorMetrics:
    """Add the outcome middleware (outermost), the scrape-time gauges and `GET /metrics`."""
    metrics = DoorMetrics()
    app[METRICS] = metrics
    app.middlewares.insert(0, outcome_middleware)

    def inflight() -> float:
        door = app.get(DOOR)
        return float(door.publisher.inflight_bytes) if door else 0.0

    def queued() -> float:
        door = app.get(DOOR)
        return float(door.publisher.producer.queue_length()) if door else 0.0

    def receiving() -> float:
        door = app.get(DOOR)
        return float(door.bodies.held) if door else 0.0

    metrics.inflight_bytes.set_function(inflight)
    metrics.receiving_bytes.set_function(receiving)
    metrics.queue_messages.set_function(queued)
    app.router.add_get("/metrics", metrics_endpoint)
    return metrics
