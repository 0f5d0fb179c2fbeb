"""`sluice dev`: the whole stack on one machine, ready for a first curl.

Kafka and PostgreSQL come from `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` when
set, else from Docker, else from the local launchers (see services.py).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import replace

import click

from ingest.keys import DEFAULT_SCOPES
from runtime.settings import Settings
from runtime.topic_admin import ensure_topics
from sinks.migrate import migrate
from sluice.keys_cli import create_key
from sluice.launchers.services import kafka_service, postgres_service
from sluice.stack import ProcessStack

DEMO_TENANT = "demo"


def run_dev(settings: Settings) -> int:
    state = settings.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        kafka = stack.enter_context(kafka_service(state / "kafka"))
        database = stack.enter_context(postgres_service(state / "postgres"))
        settings = replace(settings, kafka_bootstrap_servers=kafka, database_url=database)
        migrate(settings.database_url)
        ensure_topics(settings)
        key = create_key(settings, DEMO_TENANT, list(DEFAULT_SCOPES))
        processes = ProcessStack(settings, state / "logs")
        stack.callback(processes.stop)
        processes.start()
        processes.wait_ready(timeout=120)
        _print_welcome(settings, processes.base_url, key, state)
        _wait_for_interrupt()
    return 0


def _print_welcome(settings: Settings, base: str, key: str, state: object) -> None:
    click.echo(
        f"""
Sluice is running.
  API             {base}   (ready: {base}/readyz)
  Kafka           {settings.kafka_bootstrap_servers}
  PostgreSQL      {settings.database_url}
  logs            {state}/logs/
  demo tenant     {DEMO_TENANT}
  demo API key    {key}

Send an event:
  curl -s -X POST {base}/v1/events -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\
    -d '{{"id":"evt-1","type":"usage.api_call","source":"/demo",\
         "time":"2024-11-23T10:00:00Z","data":{{"units":3}}}}'
Read it back (a second or so later):
  curl -s {base}/v1/events/evt-1 -H 'X-API-Key: {key}'

Press Ctrl-C to stop.
"""
    )


def _wait_for_interrupt() -> None:
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
