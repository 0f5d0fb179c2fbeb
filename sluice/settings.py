"""Settings, read once from the environment into a frozen object and passed down.

Every variable is documented in the README. Defaults work for `make dev`.
Secrets (the key-hashing secret, database passwords) are never printed: the
`__repr__` of `Settings` masks them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SECRET_FIELDS = frozenset({"key_secret", "kafka_sasl_password"})
_URL_FIELDS = frozenset({"database_url", "api_database_url"})


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Settings:
    """Everything a Sluice process needs to know, fixed at start-up."""

    kafka_bootstrap_servers: str = ""
    database_url: str = ""
    topic_prefix: str = "sluice."
    partitions: int = 4
    replication_factor: int = 1
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    key_secret: str = field(default="sluice-dev-secret-change-me")
    key_cache_seconds: float = 5.0
    produce_timeout_ms: int = 15_000
    max_body_bytes: int = 6 * 1024 * 1024
    max_events_per_request: int = 10_000
    max_inflight_bytes: int = 64 * 1024 * 1024
    api_database_url: str = ""
    api_database_role: str = "sluice_api"
    rate_requests_per_second: float = 200.0
    rate_events_per_second: float = 100_000.0
    rate_burst_seconds: int = 5
    http_request_timeout_seconds: float = 60.0
    max_receiving_bytes: int = 256 * 1024 * 1024
    kafka_security_protocol: str = ""
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_ca_location: str = ""
    kafka_ssl_certificate_location: str = ""
    kafka_ssl_key_location: str = ""
    state_dir: Path = Path(".sluice")
    worker_id: str = "sluice-streams"
    sink_group: str = "sluice-sink"
    sink_batch_size: int = 5_000
    worker_metrics_port: int = 0
    sink_metrics_port: int = 0
    watchdog_stall_seconds: float = 120.0
    breaker_max_invalid_ratio: float = 0.9
    breaker_min_events: int = 100
    breaker_window_events: int = 1000
    breaker_max_consecutive_invalid: int = 1000
    breaker_cooldown_seconds: float = 60.0

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS:
                value = "***"
            elif f.name in _URL_FIELDS:
                value = _mask_url(str(value))
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    __str__ = __repr__

    def with_services(self, *, kafka: str | None = None, database: str | None = None) -> Settings:
        """A copy pointing at the given Kafka bootstrap servers and database URL."""
        from dataclasses import replace

        return replace(
            self,
            kafka_bootstrap_servers=kafka or self.kafka_bootstrap_servers,
            database_url=database or self.database_url,
        )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read `Settings` from environment variables (see the README for each)."""
    env = os.environ if environ is None else environ
    d = Settings()

    def get(name: str, default: str) -> str:
        return env.get(name, default)

    return Settings(
        kafka_bootstrap_servers=get("KAFKA_BOOTSTRAP_SERVERS", d.kafka_bootstrap_servers),
        database_url=get("DATABASE_URL", d.database_url),
        topic_prefix=get("SLUICE_TOPIC_PREFIX", d.topic_prefix),
        partitions=int(get("SLUICE_PARTITIONS", str(d.partitions))),
        replication_factor=int(get("SLUICE_REPLICATION_FACTOR", str(d.replication_factor))),
        http_host=get("SLUICE_HTTP_HOST", d.http_host),
        http_port=int(get("SLUICE_HTTP_PORT", str(d.http_port))),
        key_secret=get("SLUICE_KEY_SECRET", d.key_secret),
        key_cache_seconds=float(get("SLUICE_KEY_CACHE_SECONDS", str(d.key_cache_seconds))),
        produce_timeout_ms=int(get("SLUICE_PRODUCE_TIMEOUT_MS", str(d.produce_timeout_ms))),
        max_body_bytes=int(get("SLUICE_MAX_BODY_BYTES", str(d.max_body_bytes))),
        max_events_per_request=int(
            get("SLUICE_MAX_EVENTS_PER_REQUEST", str(d.max_events_per_request))
        ),
        max_inflight_bytes=int(get("SLUICE_MAX_INFLIGHT_BYTES", str(d.max_inflight_bytes))),
        api_database_url=get("SLUICE_API_DATABASE_URL", d.api_database_url),
        api_database_role=get("SLUICE_API_DATABASE_ROLE", d.api_database_role),
        rate_requests_per_second=float(
            get("SLUICE_RATE_REQUESTS_PER_SECOND", str(d.rate_requests_per_second))
        ),
        rate_events_per_second=float(
            get("SLUICE_RATE_EVENTS_PER_SECOND", str(d.rate_events_per_second))
        ),
        rate_burst_seconds=int(get("SLUICE_RATE_BURST_SECONDS", str(d.rate_burst_seconds))),
        http_request_timeout_seconds=float(
            get("SLUICE_HTTP_REQUEST_TIMEOUT_SECONDS", str(d.http_request_timeout_seconds))
        ),
        max_receiving_bytes=int(get("SLUICE_MAX_RECEIVING_BYTES", str(d.max_receiving_bytes))),
        kafka_security_protocol=get("KAFKA_SECURITY_PROTOCOL", ""),
        kafka_sasl_mechanism=get("KAFKA_SASL_MECHANISM", ""),
        kafka_sasl_username=get("KAFKA_SASL_USERNAME", ""),
        kafka_sasl_password=get("KAFKA_SASL_PASSWORD", ""),
        kafka_ssl_ca_location=get("KAFKA_SSL_CA_LOCATION", ""),
        kafka_ssl_certificate_location=get("KAFKA_SSL_CERTIFICATE_LOCATION", ""),
        kafka_ssl_key_location=get("KAFKA_SSL_KEY_LOCATION", ""),
        state_dir=Path(get("SLUICE_STATE_DIR", str(d.state_dir))),
        worker_id=get("SLUICE_WORKER_ID", d.worker_id),
        sink_group=get("SLUICE_SINK_GROUP", d.sink_group),
        sink_batch_size=int(get("SLUICE_SINK_BATCH_SIZE", str(d.sink_batch_size))),
        worker_metrics_port=int(get("SLUICE_WORKER_METRICS_PORT", str(d.worker_metrics_port))),
        sink_metrics_port=int(get("SLUICE_SINK_METRICS_PORT", str(d.sink_metrics_port))),
        watchdog_stall_seconds=float(
            get("SLUICE_WATCHDOG_STALL_SECONDS", str(d.watchdog_stall_seconds))
        ),
        **_breaker_settings(get, d),
    )


def _breaker_settings(get: Callable[[str, str], str], d: Settings) -> dict[str, Any]:
    """The stream processor's DLQ circuit breaker (`streams/breaker.py`)."""
    return {
        "breaker_max_invalid_ratio": float(
            get("SLUICE_BREAKER_MAX_INVALID_RATIO", str(d.breaker_max_invalid_ratio))
        ),
        "breaker_min_events": int(get("SLUICE_BREAKER_MIN_EVENTS", str(d.breaker_min_events))),
        "breaker_window_events": int(
            get("SLUICE_BREAKER_WINDOW_EVENTS", str(d.breaker_window_events))
        ),
        "breaker_max_consecutive_invalid": int(
            get("SLUICE_BREAKER_MAX_CONSECUTIVE_INVALID", str(d.breaker_max_consecutive_invalid))
        ),
        "breaker_cooldown_seconds": float(
            get("SLUICE_BREAKER_COOLDOWN_SECONDS", str(d.breaker_cooldown_seconds))
        ),
    }
