from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ingest.keys import (
    PAYLOAD_LENGTH,
    PREFIX_LENGTH,
    KeySecrets,
    generate_key,
    hash_key,
    matches,
    parse_key,
)
from producer_api.auth import KeyVerifier, Principal, Unauthenticated
from runtime.kafka import client_config, producer_config
from runtime.settings import Settings
from sinks.consumer import consumer_config
from store.api_keys import StoredKey
from streams.app import broker_credentials


def test_generated_keys_have_the_seed_format() -> None:
    new = generate_key()
    prefix, payload = new.secret.split(".")
    assert len(prefix) == PREFIX_LENGTH == 8
    assert len(payload) == PAYLOAD_LENGTH == 48
    assert parse_key(new.secret) == new.prefix == prefix


def test_typos_fail_the_checksum() -> None:
    key = generate_key().secret
    flipped = key[:-3] + ("A" if key[-3] != "A" else "B") + key[-2:]
    assert parse_key(flipped) is None
    assert parse_key(key[:-1]) is None
    assert parse_key("nodot") is None


def test_only_the_right_secret_and_key_match() -> None:
    key = generate_key().secret
    stored = hash_key("server-secret", key)
    assert matches("server-secret", key, stored)
    assert not matches("other-secret", key, stored)
    assert not matches("server-secret", generate_key().secret, stored)
    assert key.encode() not in stored


def test_stored_key_states_follow_revocation_and_expiry() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    base = StoredKey("abcdefgh", "acme", b"h", "1", ["admin"], "", now, None, None)
    assert base.state(now) == "active"
    assert replace(base, expires_at=now + timedelta(seconds=5)).state(now) == "expiring"
    assert replace(base, expires_at=now).state(now) == "expired"
    assert replace(base, revoked_at=now).state(now) == "revoked"


def test_settings_never_show_secrets() -> None:
    settings = Settings(
        key_secret="canary-secret",
        kafka_sasl_password="canary-password",
        database_url="postgresql://u:canary-db@h/d",
        api_database_url="postgresql://api:canary-api@h/d",
    )
    shown = repr(settings) + str(settings)
    for secret in ("canary-secret", "canary-password", "canary-db", "canary-api"):
        assert secret not in shown


def test_kafka_security_options_reach_every_client_config() -> None:
    settings = Settings(
        kafka_bootstrap_servers="b:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
        kafka_ssl_ca_location="/ca.pem",
    )
    wanted = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": "/ca.pem",
    }
    for config in (producer_config(settings), consumer_config(settings), client_config(settings)):
        assert wanted.items() <= config.items()
    assert client_config(settings)["bootstrap.servers"] == "b:9093"  # admin, bench, probes
    assert "security.protocol" not in producer_config(Settings())
    credentials = broker_credentials(replace(settings, kafka_ssl_ca_location=""))
    assert (credentials.username, credentials.mechanism.value) == ("u", "SCRAM-SHA-512")
    assert credentials.ssl_context is not None
    assert broker_credentials(Settings()) is None


class CountingVerifier(KeyVerifier):
    """A verifier whose database answers are scripted, counting the lookups."""

    def __init__(self, answers: list[Principal | None]) -> None:
        super().__init__(None, KeySecrets("secret"), cache_seconds=60)  # type: ignore[arg-type]
        self.answers = answers
        self.lookups = 0

    async def _lookup(self, key: str) -> tuple[Principal, datetime | None]:
        self.lookups += 1
        answer = self.answers.pop(0)
        if answer is None:
            raise Unauthenticated("unknown API key")
        return answer, None


async def test_verified_and_refused_keys_are_remembered_for_the_cache_time() -> None:
    principal = Principal("acme", "abcdefgh", frozenset({"events:read"}))
    verifier = CountingVerifier([principal, None])
    good, bad = generate_key().secret, generate_key().secret
    assert await verifier.verify(good) == principal
    assert await verifier.verify(good) == principal
    for _ in range(3):
        with pytest.raises(Unauthenticated, match="unknown"):
            await verifier.verify(bad)
    assert verifier.lookups == 2
    with pytest.raises(Unauthenticated, match="missing"):
        await verifier.verify(None)


def test_a_key_is_checked_with_the_secret_that_hashed_it() -> None:
    key = generate_key().secret
    old = KeySecrets("old-secret")
    new = KeySecrets.parse("new-secret", "2", "1=old-secret")
    old_id, old_hash = old.hash(key)
    assert old_id == "1"
    assert new.matches(key, "1", old_hash)  # a retired secret still verifies its keys
    assert new.hash(key) == ("2", hash_key("new-secret", key))
    assert not new.matches(key, "2", old_hash)  # never under another secret's id
    assert not KeySecrets("new-secret", "2").matches(key, "1", old_hash)  # retired and gone
    assert "old-secret" not in repr(new) and "new-secret" not in repr(new)


@pytest.mark.parametrize(
    ("current_id", "retired"), [("", ""), ("2", "1"), ("2", "=x"), ("2", "2=x"), ("2", "1=")]
)
def test_malformed_secret_settings_are_refused(current_id: str, retired: str) -> None:
    with pytest.raises(ValueError, match="SLUICE_KEY_SECRET"):
        KeySecrets.parse("s", current_id, retired)
