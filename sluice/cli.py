"""`sluice`: one entry point wiring the rooms together."""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

import click
import psycopg
import psycopg_pool
from confluent_kafka import KafkaException

from runtime.redaction import install_key_redaction
from runtime.registry_client import RegistryRefused, use_external_registry
from runtime.settings import Settings, load_settings
from sluice.devstate import environ_with_dev_stack
from sluice.unreachable import (
    ServiceUnreachable,
    kafka_failure,
    postgres_unreachable,
    require_kafka,
)


def _settings() -> Settings:
    """The environment's settings, completed from a running `sluice dev` (sluice/devstate.py)."""
    return load_settings(environ_with_dev_stack())


def _with_topic_schema_ids(settings: Settings) -> Settings:
    """`settings`, once this process writes and reads the topic schema ids of
    `SLUICE_SCHEMA_REGISTRY_URL`'s registry when that is set (`runtime.registry_client`);
    a registry that refuses them ends the command with one line."""
    use_external_registry(settings)
    return settings


class _OneLineErrors(click.Group):
    """Says in one line, naming the setting, that PostgreSQL or Kafka cannot be reached."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ServiceUnreachable, RegistryRefused) as exc:
            failure: Exception = exc
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            failure = postgres_unreachable(exc, _settings().database_url)
        except KafkaException as exc:
            failure = kafka_failure(exc, _settings().kafka_bootstrap_servers)
        click.echo(f"sluice: {failure}", err=True)
        ctx.exit(1)


@click.group(cls=_OneLineErrors)
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
def main(log_level: str) -> None:
    """Sluice: HTTP event ingestion onto Kafka, validated by Faust, stored in PostgreSQL."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    install_key_redaction()


def _freeze_imports() -> None:
    """Leave what a service has imported (modules, functions, classes: ~75,000 objects) out of
    the cycle collector's full collections, which walked them every time: in `make bench` a
    full collection paused the sink 20-200 ms, all its threads at once (2026-12-07)."""
    gc.freeze()


@main.command()
def migrate() -> None:
    """Apply pending database migrations."""
    from sinks.migrate import migrate as apply

    applied = apply(_settings().database_url)
    click.echo(
        f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
    )


@main.command()
def topics() -> None:
    """Create Sluice's Kafka topics (idempotent)."""
    from runtime.kafka import client_config
    from runtime.topic_admin import ensure_topics

    settings = _settings()
    require_kafka(client_config(settings))
    created = ensure_topics(settings)
    click.echo(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))


@main.command()
def api() -> None:
    """Serve the HTTP front door."""
    from producer_api.app import run

    _freeze_imports()
    run(_with_topic_schema_ids(_settings()))


@main.group(invoke_without_command=True)
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run the Faust stream processor (validation, dead letters, tombstones).

    `sluice worker breaker status|resume` sees and resumes its DLQ circuit breaker."""
    if ctx.invoked_subcommand is None:
        from streams.worker import run

        _freeze_imports()
        run(_with_topic_schema_ids(_settings()))


@main.command()
def sink() -> None:
    """Run the Kafka → PostgreSQL sink."""
    from sluice.runners import run_sink

    _freeze_imports()
    run_sink(_with_topic_schema_ids(_settings()))


@main.command("kafka-jars")
def kafka_jars() -> None:
    """Resolve the Apache Kafka broker jars from Maven Central into the cache."""
    from sluice.launchers.kafka import default_cache_dir, resolve_kafka_jars

    click.echo(str(resolve_kafka_jars(default_cache_dir())))


@main.command()
def dev() -> None:
    """Run the whole stack locally, print a demo key and a curl example; Ctrl-C stops it."""
    from sluice.devstack import run_dev

    sys.exit(run_dev(load_settings()))


from sluice.breaker_cli import breaker  # noqa: E402

worker.add_command(breaker)

from sluice.keys_cli import keys  # noqa: E402

main.add_command(keys)

from sluice.replay_cli import replay  # noqa: E402

main.add_command(replay)

from sluice.retention_cli import retention  # noqa: E402

main.add_command(retention)

from sluice.catalog_cli import buckets, datasets, datasources  # noqa: E402
from sluice.history_cli import events, requests  # noqa: E402

main.add_command(datasets)
main.add_command(buckets)
main.add_command(datasources)
main.add_command(events)
main.add_command(requests)

from sluice.schemas_cli import schemas  # noqa: E402

main.add_command(schemas)
