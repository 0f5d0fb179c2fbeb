"""`sluice dev`: the whole stack on one machine, ready for a first curl.

Kafka and PostgreSQL come from `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` when
set, else from Docker, else from the local launchers (see services.py).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading
from dataclasses import replace
from pathlib import Path

import click

from ingest.keys import DEFAULT_SCOPES
from runtime.settings import Settings, env_var, settings_env
from runtime.topic_admin import ensure_topics
from sinks.migrate import migrate
from sluice.devstate import remove_dev_state, state_file, write_dev_state
from sluice.keys_cli import create_key
from sluice.launchers.services import kafka_service, postgres_service
from sluice.stack import ProcessStack
from sluice.unreachable import hide_password

DEMO_TENANT = "demo"
_SECRETS = ("key_secret", "key_secrets_retired", "kafka_sasl_password", "api_key")
_DEMO_EVENT = (
    '{"id":"evt-1","type":"usage.api_call","source":"/demo",'
    '"time":"2024-11-23T10:00:00Z","data":{"units":3}}'
)


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
        environ, withheld = cli_environ(settings)
        pids = {"dev": os.getpid(), **{role: p.pid for role, p in processes.procs.items()}}
        write_dev_state(state, api=processes.base_url, environ=environ, pids=pids,
                        withheld=withheld)  # fmt: skip
        stack.callback(remove_dev_state, state)
        _print_welcome(settings, processes.base_url, key, state)
        _wait_for_interrupt()
    return 0


def cli_environ(settings: Settings) -> tuple[dict[str, str], tuple[str, ...]]:
    """What a second terminal needs for `sluice` to use this stack: every setting that
    differs from its default, secrets excepted, and the names of the secrets withheld."""
    defaults = settings_env(Settings())
    changed = {k: v for k, v in settings_env(settings).items() if defaults[k] != v}
    withheld = tuple(sorted(env_var(name) for name in _SECRETS if env_var(name) in changed))
    return {k: v for k, v in changed.items() if k not in withheld}, withheld


def export_lines(settings: Settings) -> list[str]:
    """`export` lines for a second terminal; passwords hidden, secrets named, not shown."""
    environ, withheld = cli_environ(settings)
    lines = [f"export {k}={shlex.quote(hide_password(v))}" for k, v in sorted(environ.items())]
    return lines + [f"export {name}=…  # the value given to sluice dev" for name in withheld]


def _print_welcome(settings: Settings, base: str, key: str, state: Path) -> None:
    exports = "\n".join(f"  {line}" for line in export_lines(settings))
    hidden = any(hide_password(v) != v for v in cli_environ(settings)[0].values())
    note = "  (a password is hidden above; dev.json holds it)\n" if hidden else ""
    click.echo(
        f"""
Sluice is running.
  API             {base}   (ready: {base}/readyz)
  Kafka           {settings.kafka_bootstrap_servers}
  PostgreSQL      {hide_password(settings.database_url)}
  logs            {state}/logs/
  demo tenant     {DEMO_TENANT}
  demo API key    {key}

The sluice CLI in another terminal of this folder finds this stack by itself
({state_file(state)}). Elsewhere, or for other tools:
{exports}
{note}
Send an event:
  curl -s -X POST {base}/v1/events -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\
    -d '{_DEMO_EVENT}'
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
