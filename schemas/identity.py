"""An event's identity and the partition it lives in on every topic.

The identity is (tenant, family, event id). Tenants and families are drawn
from restricted alphabets without `|`, so the key `tenant|family|event_id`
is unambiguous. The partition is Kafka's default (Java client) choice for
that key: murmur2, made positive, modulo the partition count, so
Kafka-native producers that key by identity land in the same partition.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import time
import uuid
from typing import NamedTuple

import uuid6

TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")  # \Z: "$" takes a trailing newline
FAMILIES = ("native", "dashdive", "datahub", "baselime", "dynatrace", "dakkio",
            "posthog", "otlp", "segment", "rudderstack")  # fmt: skip

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = tuple(struct.Struct(f"<{n}I") for n in range(128))
"""Unpackers for keys of up to 511 bytes (identity keys are far shorter)."""


class Identity(NamedTuple):
    tenant: str
    family: str
    event_id: str

    def key(self) -> bytes:
        """The message key used on `events` and `events.dlq`."""
        return f"{self.tenant}|{self.family}|{self.event_id}".encode()

    @classmethod
    def from_key(cls, key: bytes) -> Identity:
        tenant, family, event_id = key.decode().split("|", 2)
        return cls(tenant, family, event_id)


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (seed 0x9747b28c), as a signed 32-bit int like Java's."""
    h = _unsigned_murmur2(data)
    return h - (1 << 32) if h & 0x80000000 else h


def murmur2_python(data: bytes) -> int:
    """The same hash in pure Python: the reference, and the fallback without the wheel.

    The 4-byte little-endian words are unpacked in one `struct` call rather than
    assembled byte by byte, which halves the cost of the byte-wise loop.
    """
    m, mask = _M, _MASK
    length = len(data)
    h = (_SEED ^ length) & mask
    count = length >> 2
    words = _WORDS[count] if count < len(_WORDS) else struct.Struct(f"<{count}I")
    for k in words.unpack_from(data):
        k = (k * m) & mask
        k ^= k >> 24
        h = ((h * m) & mask) ^ ((k * m) & mask)
    rounded = count << 2
    tail = length & 3
    if tail:
        if tail == 3:
            h ^= data[rounded + 2] << 16
        if tail >= 2:
            h ^= data[rounded + 1] << 8
        h ^= data[rounded]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def _murmur2_unsigned_python(data: bytes) -> int:
    return murmur2_python(data) & _MASK


try:  # Sluice's own extension (fastpath/): a compiled murmur2 that keeps the GIL
    from sluice_fastpath import partition_for as _compiled_partition_for
except ImportError:  # not built here: the murmurhash2 wheel, else pure Python
    _compiled_partition_for = None  # type: ignore[assignment]

try:  # the door hashes every event's key: the compiled hash costs ~0.15 µs instead of ~2.5 µs
    from murmurhash2 import murmurhash2 as _compiled_murmur2
except ImportError:  # no wheel for this platform: the pure-Python version
    _compiled_murmur2 = None  # type: ignore[assignment]


def _unsigned_murmur2(data: bytes) -> int:
    if _compiled_murmur2 is None:
        return _murmur2_unsigned_python(data)
    return _compiled_murmur2(data, _SEED)


def _partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for `key`."""
    # The seed is passed positionally and the hash called here, not through a helper:
    # this runs once per event, and each extra call costs more than the hash.
    if _compiled_murmur2 is None:
        return (_murmur2_unsigned_python(key) & 0x7FFFFFFF) % partitions
    return (_compiled_murmur2(key, _SEED) & 0x7FFFFFFF) % partitions


partition_for = _partition_for if _compiled_partition_for is None else _compiled_partition_for
"""The partition Kafka's default partitioner picks for `key`: murmur2, made positive, modulo
`partitions`. The murmurhash2 wheel releases the GIL on every call, which under load cost
the door ~11 % of its main thread (a busy thread beside it takes the GIL each time); the
extension's hash keeps it (tests/schemas/test_identity.py checks the two agree)."""


UUID4_FAMILIES = frozenset({"datahub"})
"""Families whose seed says a missing id becomes a UUIDv4."""


OBJECT_ID_FAMILIES = frozenset({"dakkio"})
"""Families whose seed shows a stored record's id as a MongoDB ObjectId (24 lowercase hex
characters): their door-assigned ids are ObjectIds, so the id a client reads is the
identity's event id, and every route that takes an id finds the record by it."""

OBJECT_ID = re.compile(r"^[0-9a-f]{24}\Z")


def new_event_id(family: str) -> str:
    """An id for an event that arrived without one.

    A UUIDv4 where the family's seed says so, an ObjectId where it shows one; otherwise a
    time-ordered UUIDv7, so door-assigned ids sort by arrival and index well
    (docs/design.md).
    """
    if family in UUID4_FAMILIES:
        return str(uuid.uuid4())
    if family in OBJECT_ID_FAMILIES:
        # MongoDB's layout: 4 bytes of seconds since the epoch, then 8 random bytes (its
        # 5-byte process value and 3-byte counter, as random): time-ordered like UUIDv7.
        return struct.pack(">I", int(time.time()) & _MASK).hex() + os.urandom(8).hex()
    return str(uuid6.uuid7())


def derived_event_id(family: str, name: str) -> str:
    """The id an event without one gets when it must be the same on every attempt (from an
    `Idempotency-Key`, or a replayed dead letter): a UUIDv5 of `name`, or in an ObjectId
    family 12 bytes of `name`'s BLAKE2b hash as 24 hex characters."""
    if family in OBJECT_ID_FAMILIES:
        return object_id_of(name)
    return str(uuid.uuid5(_DERIVED_IDS, name))


def object_id_of(event_id: str) -> str:
    """`event_id` as an ObjectId: itself when it is one, else the BLAKE2b hash's first 12
    bytes in hex (stable: the same id always shows the same ObjectId)."""
    if OBJECT_ID.match(event_id):
        return event_id
    return hashlib.blake2b(event_id.encode(), digest_size=12).hexdigest()


_DERIVED_IDS = uuid.UUID("6f1f0f5e-5c1e-4c8b-9a55-51b1ce1d0e11")
"""The UUIDv5 namespace of derived ids (fixed: ids must not change between releases)."""
