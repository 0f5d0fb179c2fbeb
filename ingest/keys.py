"""API keys: `<8-char prefix>.<48-char base64url payload>`.

The prefix names the key and is safe to log. The payload is 32 random bytes
plus a 4-byte CRC32 of prefix and random part, so a mistyped or truncated key
is recognised without a database lookup. Only HMAC-SHA256(server secret, key)
is stored, with the id of the secret that hashed it (`KeySecrets`), so the secret can
rotate; comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from runtime.settings import Settings

SCOPES = (
    "events:write",
    "events:read",
    "events:delete",
    "deadletters:read",
    "deadletters:replay",
    "schemas:read",
    "schemas:write",
    "admin",
)
DEFAULT_SCOPES = tuple(s for s in SCOPES if s not in ("admin", "schemas:write"))
"""A new key may read the registry (Sluice's topic schemas are what a consumer of its topics
needs), but changing a contract is granted on purpose: `schemas:write` and `admin` are asked
for by name."""

_PREFIX_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
PREFIX_LENGTH = 8
PAYLOAD_LENGTH = 48


@dataclass(frozen=True)
class NewKey:
    prefix: str
    secret: str
    """The whole key, shown once to its owner and never stored."""


def generate_key() -> NewKey:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    random_part = secrets.token_bytes(32)
    checksum = struct.pack(">I", zlib.crc32(prefix.encode() + random_part))
    payload = base64.urlsafe_b64encode(random_part + checksum).decode()
    return NewKey(prefix, f"{prefix}.{payload}")


def parse_key(key: str) -> str | None:
    """The prefix of a well-formed key whose checksum matches, else None."""
    prefix, dot, payload = key.partition(".")
    if not dot or len(prefix) != PREFIX_LENGTH or len(payload) != PAYLOAD_LENGTH:
        return None
    try:
        raw = base64.urlsafe_b64decode(payload.encode())
    except (ValueError, TypeError):
        return None
    if len(raw) != 36:
        return None
    random_part, checksum = raw[:32], raw[32:]
    if struct.pack(">I", zlib.crc32(prefix.encode() + random_part)) != checksum:
        return None
    return prefix


def hash_key(secret: str, key: str) -> bytes:
    """The keyed hash stored in place of the key."""
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).digest()


def matches(secret: str, key: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_key(secret, key), stored_hash)


@dataclass(frozen=True)
class KeySecrets:
    """The server secret that hashes new keys, under its id (`SLUICE_KEY_SECRET`,
    `SLUICE_KEY_SECRET_ID`), and retired ones still accepted for the keys they hashed
    (`SLUICE_KEY_SECRETS_RETIRED`, `id=secret,…`). A key verified with a retired secret
    is hashed again with the current one (`producer_api.auth.KeyVerifier`), so once every
    key in use moved (`sluice keys list` shows each key's secret id), the retired secret
    can go."""

    current: str
    current_id: str = "1"
    retired: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, current: str, current_id: str, retired: str) -> KeySecrets:
        """From the settings' text; raises `ValueError` naming what is malformed."""
        if not current_id.strip():
            raise ValueError("SLUICE_KEY_SECRET_ID must not be empty")
        old: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in retired.split(","))):
            name, sep, secret = item.partition("=")
            if not sep or not name.strip() or not secret:
                raise ValueError("SLUICE_KEY_SECRETS_RETIRED holds id=secret pairs, by commas")
            old[name.strip()] = secret
        if current_id.strip() in old:
            raise ValueError("SLUICE_KEY_SECRETS_RETIRED repeats the current SLUICE_KEY_SECRET_ID")
        return cls(current, current_id.strip(), old)

    def hash(self, key: str) -> tuple[str, bytes]:
        """(secret id, hash) to store for a new key."""
        return self.current_id, hash_key(self.current, key)

    def matches(self, key: str, secret_id: str, stored_hash: bytes) -> bool:
        """Whether `key` is the one hashed to `stored_hash` with secret `secret_id`
        (False for a secret this process no longer knows)."""
        secret = self.current if secret_id == self.current_id else self.retired.get(secret_id)
        return secret is not None and matches(secret, key, stored_hash)

    def __repr__(self) -> str:
        return f"KeySecrets(current_id={self.current_id!r}, retired={sorted(self.retired)!r})"


def key_secrets(settings: Settings) -> KeySecrets:
    """The key secrets `settings` name; raises `ValueError` when they are malformed."""
    return KeySecrets.parse(
        settings.key_secret, settings.key_secret_id, settings.key_secrets_retired
    )
