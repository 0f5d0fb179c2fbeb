from __future__ import annotations

from producer_api.keys import (
    PAYLOAD_LENGTH,
    PREFIX_LENGTH,
    generate_key,
    hash_key,
    matches,
    parse_key,
)


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
