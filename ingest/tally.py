"""What the door accepted and rejected, counted in memory per (tenant, 10 s bucket, family).

The overview (`GET /v1/overview`) plots events per second by family. Counting costs a
dictionary update per request (never per event, never an await); each API process adds
its counts to PostgreSQL every few seconds in one statement (`producer_api.overview`),
and the database sums the processes' counts bucket by bucket (migration 0015).
"""

from __future__ import annotations

from datetime import datetime

from store.figures import BUCKET_SECONDS, TallyKey

MAX_PENDING_ROWS = 100_000
"""Rows held while PostgreSQL does not take them; past this, the oldest buckets go (a
figure lost, never memory without bound: invariant 6)."""


def bucket_of(moment: datetime) -> int:
    """The start of the 10 s bucket `moment` falls in, in epoch seconds."""
    seconds = int(moment.timestamp())
    return seconds - seconds % BUCKET_SECONDS


class DoorTally:
    """Accepted and rejected counts not yet written; `drain` hands them over and forgets."""

    def __init__(self) -> None:
        self._counts: dict[TallyKey, list[int]] = {}

    def add(self, tenant: str, family: str, at: datetime, accepted: int, rejected: int) -> None:
        """Count a request's events (by the time the door received it)."""
        if not accepted and not rejected:
            return
        key = (tenant, bucket_of(at), family)
        counts = self._counts.get(key)
        if counts is None:
            self._counts[key] = [accepted, rejected]
        else:
            counts[0] += accepted
            counts[1] += rejected

    def drain(self) -> dict[TallyKey, tuple[int, int]]:
        """Every count held, as (accepted, rejected); the tally is empty afterwards."""
        taken, self._counts = self._counts, {}
        return {key: (c[0], c[1]) for key, c in taken.items()}

    def restore(self, counts: dict[TallyKey, tuple[int, int]]) -> int:
        """Give back counts a flush could not write; return how many rows were dropped to
        stay within `MAX_PENDING_ROWS` (the oldest buckets first)."""
        for (tenant, bucket, family), (accepted, rejected) in counts.items():
            key = (tenant, bucket, family)
            held = self._counts.setdefault(key, [0, 0])
            held[0] += accepted
            held[1] += rejected
        excess = len(self._counts) - MAX_PENDING_ROWS
        if excess <= 0:
            return 0
        for key in sorted(self._counts, key=lambda k: k[1])[:excess]:
            del self._counts[key]
        return excess

    def __len__(self) -> int:
        return len(self._counts)
