from __future__ import annotations

from collections import Counter

import sluice_fastpath
from hypothesis import given
from hypothesis import strategies as st

from schemas.identity import (
    TENANT_PATTERN,
    Identity,
    _partition_for,
    murmur2,
    murmur2_python,
    partition_for,
)


def test_murmur2_matches_the_java_client() -> None:
    # Vectors from Apache Kafka's own UtilsTest for Utils.murmur2.
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=64))
def test_partition_is_stable_and_in_range(event_id: str, partitions: int) -> None:
    key = Identity("acme", "native", event_id).key()
    p = partition_for(key, partitions)
    assert 0 <= p < partitions
    assert p == partition_for(Identity("acme", "native", event_id).key(), partitions)


@given(st.binary(max_size=600), st.integers(min_value=1, max_value=1000))
def test_every_murmur2_picks_the_same_partition(key: bytes, partitions: int) -> None:
    # The door's compiled path, the extension's hash, the murmurhash2 wheel and the pure
    # Python version must agree: a version sent another way must land beside the others.
    expected = ((murmur2_python(key) & 0xFFFFFFFF) & 0x7FFFFFFF) % partitions
    assert sluice_fastpath.partition_for(key, partitions) == expected
    assert _partition_for(key, partitions) == expected
    assert partition_for is sluice_fastpath.partition_for  # the one that keeps the GIL


def test_partitions_spread_keys() -> None:
    counts = Counter(partition_for(Identity("t", "native", str(i)).key(), 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 800


@given(st.text(max_size=40))
def test_key_round_trips(event_id: str) -> None:
    identity = Identity("acme", "datahub", event_id)
    assert Identity.from_key(identity.key()) == identity


def test_door_assigned_ids_follow_the_seed() -> None:
    import time
    import uuid

    from schemas.identity import new_event_id

    assert uuid.UUID(new_event_id("datahub")).version == 4
    first = new_event_id("native")
    time.sleep(0.002)
    later = new_event_id("dashdive")
    assert uuid.UUID(first).version == uuid.UUID(later).version == 7
    assert first < later


def test_a_tenant_with_a_trailing_newline_is_refused() -> None:
    assert TENANT_PATTERN.match("evil") and not TENANT_PATTERN.match("evil\n")


def test_dakkio_ids_are_object_ids_ordered_by_time_and_derived_ones_stable() -> None:
    import re
    import time

    from schemas.identity import derived_event_id, new_event_id, object_id_of

    object_id = re.compile(r"^[0-9a-f]{24}\Z")
    first = new_event_id("dakkio")
    assert object_id.match(first) and first != new_event_id("dakkio")
    assert abs(int(first[:8], 16) - time.time()) < 5  # MongoDB's layout: seconds first
    derived = derived_event_id("dakkio", "acme\x00dakkio\x00retry-1\x000")
    assert object_id.match(derived)
    assert derived == derived_event_id("dakkio", "acme\x00dakkio\x00retry-1\x000")
    assert derived != derived_event_id("dakkio", "acme\x00dakkio\x00retry-1\x001")
    legacy = "0190d3a4-1c2b-7e6f-8a9b-0c1d2e3f4a5b"
    assert object_id.match(object_id_of(legacy)) and object_id_of(legacy) == object_id_of(legacy)
    assert object_id_of(first) == first
    # other families keep their UUIDv5 derivation, so ids already derived do not change
    assert derived_event_id("native", "n") == str(uuid_of("n"))


def uuid_of(name: str) -> object:
    import uuid

    return uuid.uuid5(uuid.UUID("6f1f0f5e-5c1e-4c8b-9a55-51b1ce1d0e11"), name)
