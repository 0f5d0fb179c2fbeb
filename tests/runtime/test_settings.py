"""Settings come from the environment and travel to child processes unchanged."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from runtime.settings import Settings, load_settings, settings_env


def test_every_setting_round_trips_through_the_environment() -> None:
    chosen = Settings(
        kafka_bootstrap_servers="127.0.0.1:9", partitions=7, key_cache_seconds=1.5,
        state_dir=Path("/tmp/sluice-x"), kafka_sasl_password="pw", breaker_min_events=3,
        http_access_log=True,
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


def test_schema_registry_credentials_are_read_and_masked() -> None:
    got = load_settings({
        "SLUICE_SCHEMA_REGISTRY_URL": "https://ops:urlpass@registry.internal/apis/ccompat/v7",
        "SLUICE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "sluice:basicpass",
        "SLUICE_SCHEMA_REGISTRY_BEARER_TOKEN": "tokenvalue",
    })  # fmt: skip
    assert got.schema_registry_basic_auth_user_info == "sluice:basicpass"
    assert got.schema_registry_bearer_token == "tokenvalue"
    shown = str(got)
    assert "registry.internal/apis/ccompat/v7" in shown
    assert "urlpass" not in shown and "basicpass" not in shown and "tokenvalue" not in shown


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("on", True), ("False", False), ("0", False)]
)
def test_boolean_settings_read_the_usual_words(raw: str, expected: bool) -> None:
    assert load_settings({"SLUICE_HTTP_ACCESS_LOG": raw}).http_access_log is expected


def test_a_boolean_setting_that_is_not_one_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="SLUICE_HTTP_ACCESS_LOG='maybe'"):
        load_settings({"SLUICE_HTTP_ACCESS_LOG": "maybe"})
