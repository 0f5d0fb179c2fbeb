"""The door's in-memory counts: per (tenant, 10 s bucket, family), drained whole, bounded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest import tally as tally_module
from ingest.tally import DoorTally, bucket_of

AT = datetime(2026, 12, 3, 20, 0, 7, tzinfo=UTC)


def test_counts_add_up_per_bucket_and_family_and_drain_empties() -> None:
    tally = DoorTally()
    tally.add("acme", "native", AT, 3, 1)
    tally.add("acme", "native", AT.replace(second=9), 2, 0)  # same 10 s bucket
    tally.add("acme", "native", AT.replace(second=10), 1, 0)  # the next one
    tally.add("acme", "dashdive", AT, 0, 4)
    tally.add("other", "native", AT, 5, 0)
    tally.add("acme", "native", AT, 0, 0)  # nothing to count: no row
    start = bucket_of(AT)
    assert start % 10 == 0 and start <= AT.timestamp() < start + 10
    assert tally.drain() == {
        ("acme", start, "native"): (5, 1),
        ("acme", start + 10, "native"): (1, 0),
        ("acme", start, "dashdive"): (0, 4),
        ("other", start, "native"): (5, 0),
    }
    assert len(tally) == 0 and tally.drain() == {}


def test_a_failed_flush_gives_its_counts_back_within_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tally = DoorTally()
    tally.add("acme", "native", AT, 2, 0)
    taken = tally.drain()
    tally.add("acme", "native", AT, 1, 1)  # counted while the flush failed
    assert tally.restore(taken) == 0
    assert tally.drain() == {("acme", bucket_of(AT), "native"): (3, 1)}

    monkeypatch.setattr(tally_module, "MAX_PENDING_ROWS", 2)
    for minute in range(4):
        tally.add("acme", "native", AT.replace(minute=minute), 1, 0)
    assert tally.restore({}) == 2 and len(tally) == 2  # the two oldest buckets went
    kept = sorted(key[1] for key in tally.drain())
    assert kept == [bucket_of(AT.replace(minute=2)), bucket_of(AT.replace(minute=3))]
