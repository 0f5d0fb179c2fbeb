"""One line, not a traceback, when a command cannot reach PostgreSQL or Kafka.

The `sluice` group (`sluice/cli.py`) turns the connection errors of psycopg,
psycopg_pool and confluent-kafka into `ServiceUnreachable`, whose text names the
setting to fix and its value with any password hidden.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

KAFKA_PROBE_SECONDS = 5.0
_CANNOT_REACH = {KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN}


class ServiceUnreachable(Exception):
    """`service` at `setting`=`value` did not answer; `reason` says how it failed."""

    def __init__(self, service: str, setting: str, value: str, reason: str) -> None:
        shown = hide_password(value) if value.strip() else "(unset; no running `sluice dev` found)"
        super().__init__(f"cannot reach {service} at {setting}={shown}: {reason}")


def hide_password(url: str) -> str:
    """`url` with its password, if any, replaced by `***`."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return url
    return url if not password else url.replace(f":{password}@", ":***@", 1)


def postgres_unreachable(exc: BaseException, database_url: str) -> ServiceUnreachable:
    """The one-line form of a psycopg connection error (its first line, password hidden)."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    reason = lines[0].rsplit("failed: ", 1)[-1].strip() or type(exc).__name__
    password = _password(database_url)
    if password:
        reason = reason.replace(password, "***")
    return ServiceUnreachable("PostgreSQL", "DATABASE_URL", database_url, reason)


def kafka_failure(exc: KafkaException, bootstrap_servers: str) -> Exception:
    """A confluent-kafka error as one line: `ServiceUnreachable` when no broker answered."""
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError) and error.code() not in _CANNOT_REACH:
        return RuntimeError(f"Kafka at KAFKA_BOOTSTRAP_SERVERS={bootstrap_servers}: {error.str()}")
    reason = error.str() if isinstance(error, KafkaError) else str(exc)
    return ServiceUnreachable("Kafka", "KAFKA_BOOTSTRAP_SERVERS", bootstrap_servers, reason)


def require_kafka(config: dict[str, Any], timeout: float | None = None) -> None:
    """Raise `ServiceUnreachable` unless a broker of `config` answers a metadata request
    within `timeout` seconds (default `KAFKA_PROBE_SECONDS`)."""
    servers = str(config.get("bootstrap.servers", ""))
    if not servers.strip():
        raise ServiceUnreachable("Kafka", "KAFKA_BOOTSTRAP_SERVERS", "", "no brokers given")
    try:  # librdkafka's own log would repeat the refusal many times a second: silenced
        quiet = AdminClient({**config, "log_level": 0})
        quiet.list_topics(timeout=KAFKA_PROBE_SECONDS if timeout is None else timeout)
    except KafkaException as exc:
        raise kafka_failure(exc, servers) from exc


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None
