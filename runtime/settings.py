"""Settings, read once from the environment into a frozen object and passed down.

Every variable is documented in docs/operations.md. Defaults work for `make dev`.
Secrets (the key-hashing secret, database and registry passwords) are never printed: the
`__repr__` of `Settings` masks them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SECRET_FIELDS = frozenset({
    "key_secret", "key_secrets_retired", "kafka_sasl_password", "api_key",
    "schema_registry_basic_auth_user_info", "schema_registry_bearer_token",
})  # fmt: skip
DEFAULT_KEY_SECRET = "sluice-dev-secret-change-me"
"""Good for `make dev` on loopback only: the API refuses it on any other address."""
_URL_FIELDS = frozenset({"database_url", "api_database_url", "schema_registry_url"})


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
    key_secret: str = field(default=DEFAULT_KEY_SECRET)
    key_secret_id: str = "1"
    key_secrets_retired: str = ""
    allow_default_secret: bool = False
    key_cache_seconds: float = 5.0
    max_keys_per_tenant: int = 100
    console_session_idle_seconds: float = 1800.0
    console_session_max_seconds: float = 12 * 3600.0
    produce_timeout_ms: int = 15_000
    door_linger_ms: int = 20
    max_body_bytes: int = 6 * 1024 * 1024
    max_events_per_request: int = 10_000
    max_inflight_bytes: int = 64 * 1024 * 1024
    api_database_url: str = ""
    api_database_role: str = "sluice_api"
    api_statement_timeout_ms: int = 15_000
    dead_letter_search_window_seconds: float = 7 * 86_400
    schema_max_bytes: int = 64 * 1024
    contracts_poll_seconds: float = 1.0
    retention_events_days: float = 0.0
    retention_dead_letters_days: float = 0.0
    retention_interval_seconds: float = 3600.0
    retention_step_rows: int = 10_000
    retention_step_timeout_seconds: float = 600.0
    retention_pause_factor: float = 1.0
    receipts_keep_days: float = 30.0
    rate_requests_per_second: float = 200.0
    rate_events_per_second: float = 100_000.0
    rate_tenant_requests_per_second: float = 800.0
    rate_tenant_events_per_second: float = 400_000.0
    rate_burst_seconds: int = 5
    rate_key_lookups_per_second: float = 100.0
    http_request_timeout_seconds: float = 60.0
    http_access_log: bool = False
    max_receiving_bytes: int = 256 * 1024 * 1024
    max_receiving_bytes_per_key: int = 64 * 1024 * 1024
    max_receiving_bytes_per_tenant: int = 128 * 1024 * 1024
    min_body_bytes_per_second: float = 16 * 1024
    max_connections: int = 4096
    max_connections_per_address: int = 512
    body_grace_seconds: float = 5.0
    kafka_security_protocol: str = ""
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_ca_location: str = ""
    kafka_ssl_certificate_location: str = ""
    kafka_ssl_key_location: str = ""
    state_dir: Path = Path(".sluice")
    worker_id: str = "sluice-streams"
    worker_batch_envelopes: int = 64
    """Most `ingest.raw` envelopes the stream worker takes in one batch (one produce and one
    wait for Kafka's acknowledgement per batch)."""
    sink_group: str = "sluice-sink"
    sink_batch_size: int = 20_000
    sink_writers: int = 2
    sink_prefetch_kbytes: int = 16_384
    sink_raw_read_timeout_seconds: float = 5.0
    history_retention_seconds: float = 7 * 86400.0
    figures_flush_seconds: float = 2.0
    figures_report_seconds: float = 5.0
    figures_retention_seconds: float = 86400.0
    worker_metrics_port: int = 0
    sink_metrics_port: int = 0
    watchdog_stall_seconds: float = 120.0
    breaker_max_invalid_ratio: float = 0.9
    breaker_min_events: int = 100
    breaker_window_events: int = 1000
    breaker_max_consecutive_invalid: int = 1000
    breaker_cooldown_seconds: float = 60.0
    breaker_max_held_envelopes: int = 1000
    api_url: str = ""
    """Where the CLI's API clients (`sluice schemas`) send requests; unset: a running
    `sluice dev`'s API, else this machine's `http_port`."""
    api_key: str = ""
    """The key those commands send (a secret: never printed)."""
    schema_registry_url: str = ""
    """An existing Confluent-compatible registry for Sluice's topic schemas (unset: Sluice's
    own, `/schema-registry`); every process registers them there at start-up."""
    schema_registry_basic_auth_user_info: str = ""
    """`user:password` for that registry (a secret: never printed)."""
    schema_registry_bearer_token: str = ""
    """A bearer token for that registry instead (a secret: never printed)."""

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


ENV_VARS: dict[str, str] = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "database_url": "DATABASE_URL",
    "kafka_security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "kafka_sasl_username": "KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "KAFKA_SASL_PASSWORD",
    "kafka_ssl_ca_location": "KAFKA_SSL_CA_LOCATION",
    "kafka_ssl_certificate_location": "KAFKA_SSL_CERTIFICATE_LOCATION",
    "kafka_ssl_key_location": "KAFKA_SSL_KEY_LOCATION",
}
"""Environment variable of each setting; every other field `x` is read from `SLUICE_X`."""


def env_var(field_name: str) -> str:
    """The environment variable that sets `field_name`."""
    return ENV_VARS.get(field_name, f"SLUICE_{field_name.upper()}")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read `Settings` from environment variables (see docs/operations.md for each).

    Each value is parsed as the type of its default (str, int, float, Path, or a
    boolean written 1/0, true/false, yes/no or on/off).
    """
    env = os.environ if environ is None else environ
    defaults = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(env_var(f.name))
        if raw is None:
            continue
        kind = type(getattr(defaults, f.name))
        values[f.name] = _boolean(env_var(f.name), raw) if kind is bool else kind(raw)
    return Settings(**values)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _boolean(name: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word not in _TRUE + _FALSE:
        raise ValueError(f"{name}={raw!r}: write 1/0, true/false, yes/no or on/off")
    return word in _TRUE


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce `settings` in a child process."""
    return {env_var(f.name): str(getattr(settings, f.name)) for f in fields(Settings)}
