"""API keys: `<8-char prefix>.<48-char base64url payload>`.

The prefix names the key and is safe to log. The payload is 32 random bytes
plus a 4-byte CRC32 of prefix and random part, so a mistyped or truncated key
is recognised without a database lookup. Only HMAC-SHA256(server secret, key)
is stored; comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import zlib
from dataclasses import dataclass

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
