"""Settings come from the environment and travel to child processes unchanged."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from sluice.settings import Settings, load_settings, settings_env


def test_every_setting_round_trips_through_the_environment() -> None:
    chosen = Settings(
        kafka_bootstrap_servers="127.0.0.1:9", partitions=7, key_cache_seconds=1.5,
        state_dir=Path("/tmp/sluice-x"), kafka_sasl_password="pw", breaker_min_events=3,
    )  # fmt: skip
    env = settings_env(chosen)
    assert len(env) == len(fields(Settings))
    assert load_settings(env) == chosen


def test_documented_names_are_read() -> None:
    got = load_settings({"DATABASE_URL": "postgresql://x/y", "SLUICE_SINK_BATCH_SIZE": "12"})
    assert got.database_url == "postgresql://x/y" and got.sink_batch_size == 12
    assert load_settings({}) == Settings()


def test_secrets_are_masked_in_repr() -> None:
    shown = repr(Settings(key_secret="s3cret-value", database_url="postgresql://u:pw@h/d"))
    assert "s3cret-value" not in shown and ":pw@" not in shown
