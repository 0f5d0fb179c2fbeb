"""Start and stop Sluice's own processes (api, worker, sink) against given Kafka and
PostgreSQL. Used by `sluice dev`, the integration tests and the benchmarks alike."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sluice.settings import Settings

ROLES = ("api", "worker", "sink")


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce `settings` in a child process."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "SLUICE_TOPIC_PREFIX": settings.topic_prefix,
        "SLUICE_PARTITIONS": str(settings.partitions),
        "SLUICE_REPLICATION_FACTOR": str(settings.replication_factor),
        "SLUICE_HTTP_HOST": settings.http_host,
        "SLUICE_HTTP_PORT": str(settings.http_port),
        "SLUICE_KEY_SECRET": settings.key_secret,
        "SLUICE_KEY_CACHE_SECONDS": str(settings.key_cache_seconds),
        "SLUICE_PRODUCE_TIMEOUT_MS": str(settings.produce_timeout_ms),
        "SLUICE_MAX_BODY_BYTES": str(settings.max_body_bytes),
        "SLUICE_MAX_EVENTS_PER_REQUEST": str(settings.max_events_per_request),
        "SLUICE_MAX_INFLIGHT_BYTES": str(settings.max_inflight_bytes),
        "SLUICE_API_DATABASE_URL": settings.api_database_url,
        "SLUICE_API_DATABASE_ROLE": settings.api_database_role,
        "SLUICE_RATE_REQUESTS_PER_SECOND": str(settings.rate_requests_per_second),
        "SLUICE_RATE_EVENTS_PER_SECOND": str(settings.rate_events_per_second),
        "SLUICE_RATE_BURST_SECONDS": str(settings.rate_burst_seconds),
        "SLUICE_HTTP_REQUEST_TIMEOUT_SECONDS": str(settings.http_request_timeout_seconds),
        "SLUICE_MAX_RECEIVING_BYTES": str(settings.max_receiving_bytes),
        "KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "KAFKA_SASL_PASSWORD": settings.kafka_sasl_password,
        "KAFKA_SSL_CA_LOCATION": settings.kafka_ssl_ca_location,
        "KAFKA_SSL_CERTIFICATE_LOCATION": settings.kafka_ssl_certificate_location,
        "KAFKA_SSL_KEY_LOCATION": settings.kafka_ssl_key_location,
        "SLUICE_STATE_DIR": str(settings.state_dir),
        "SLUICE_WORKER_ID": settings.worker_id,
        "SLUICE_SINK_GROUP": settings.sink_group,
        "SLUICE_SINK_BATCH_SIZE": str(settings.sink_batch_size),
        "SLUICE_WORKER_METRICS_PORT": str(settings.worker_metrics_port),
        "SLUICE_SINK_METRICS_PORT": str(settings.sink_metrics_port),
        "SLUICE_WATCHDOG_STALL_SECONDS": str(settings.watchdog_stall_seconds),
        "SLUICE_BREAKER_MAX_INVALID_RATIO": str(settings.breaker_max_invalid_ratio),
        "SLUICE_BREAKER_MIN_EVENTS": str(settings.breaker_min_events),
        "SLUICE_BREAKER_WINDOW_EVENTS": str(settings.breaker_window_events),
        "SLUICE_BREAKER_MAX_CONSECUTIVE_INVALID": str(settings.breaker_max_consecutive_invalid),
        "SLUICE_BREAKER_COOLDOWN_SECONDS": str(settings.breaker_cooldown_seconds),
    }


def wait_for_readyz(
    base_url: str, timeout: float, check_alive: Callable[[], None], log_tail: Callable[[], str]
) -> None:
    """Poll `base_url`/readyz until it answers 200; `check_alive` raises if a process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive()
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"API not ready after {timeout}s:\n{log_tail()}")


def read_log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a process log ('' when it does not exist yet)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ProcessStack:
    """The three Sluice processes, each logging to `log_dir/<role>.log`."""

    settings: Settings
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    def start(self, roles: tuple[str, ...] = ROLES) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **settings_env(self.settings)}
        for role in roles:
            self.start_role(role, env)

    def start_role(self, role: str, env: dict[str, str] | None = None) -> None:
        env = env or {**os.environ, **settings_env(self.settings)}
        log = (self.log_dir / f"{role}.log").open("ab")
        self._logs.append(log)
        self.procs[role] = subprocess.Popen(
            [sys.executable, "-m", "sluice", role], env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the API answers /readyz with 200; raise with the API log if not."""
        wait_for_readyz(self.base_url, timeout, self._check_alive, lambda: self.log_tail("api"))

    def _check_alive(self) -> None:
        for role, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{role} exited with {proc.returncode}:\n{self.log_tail(role)}")

    def log_tail(self, role: str, lines: int = 40) -> str:
        return read_log_tail(self.log_dir / f"{role}.log", lines)

    def stop_role(self, role: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        proc = self.procs.pop(role, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        for role in list(self.procs):
            self.stop_role(role)
        for log in self._logs:
            log.close()
        self._logs.clear()
