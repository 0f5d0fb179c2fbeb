"""`sluice`: one entry point wiring the rooms together."""

from __future__ import annotations

import logging
import sys

import click

from runtime.settings import Settings, load_settings


def _settings() -> Settings:
    return load_settings()


@click.group()
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
def main(log_level: str) -> None:
    """Sluice: HTTP event ingestion onto Kafka, validated by Faust, stored in PostgreSQL."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


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
    from runtime.topic_admin import ensure_topics

    created = ensure_topics(_settings())
    click.echo(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))


@main.command()
def api() -> None:
    """Serve the HTTP front door."""
    from producer_api.app import run

    run(_settings())


@main.group(invoke_without_command=True)
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run the Faust stream processor (validation, dead letters, tombstones).

    `sluice worker breaker status|resume` sees and resumes its DLQ circuit breaker."""
    if ctx.invoked_subcommand is None:
        from streams.worker import run

        run(_settings())


@main.command()
def sink() -> None:
    """Run the Kafka → PostgreSQL sink."""
    from sluice.runners import run_sink

    run_sink(_settings())


@main.command("kafka-jars")
def kafka_jars() -> None:
    """Resolve the Apache Kafka broker jars from Maven Central into the cache."""
    from sluice.launchers.kafka import default_cache_dir, resolve_kafka_jars

    click.echo(str(resolve_kafka_jars(default_cache_dir())))


@main.command()
def dev() -> None:
    """Run the whole stack locally, print a demo key and a curl example; Ctrl-C stops it."""
    from sluice.devstack import run_dev

    sys.exit(run_dev(_settings()))


from sluice.breaker_cli import breaker  # noqa: E402

worker.add_command(breaker)

from sluice.keys_cli import keys  # noqa: E402

main.add_command(keys)

from sluice.replay_cli import replay  # noqa: E402

main.add_command(replay)

from sluice.catalog_cli import buckets, datasets, datasources  # noqa: E402

main.add_command(datasets)
main.add_command(buckets)
main.add_command(datasources)
