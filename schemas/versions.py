"""What "newer" means, defined once for every room.

Every version of one identity (tenant, family, event id) passes through one
partition of `ingest.raw`, because the door computes the partition from the
identity. A version is that item's position there::

    version = ingest.raw offset << INDEX_BITS | index of the item in its envelope

so of two versions of the same identity, the newer is the one Kafka placed
later in that partition: a higher version. Versions of different partitions
are not comparable, and nothing compares them: identities never change
partition, and a delete by filter is written to every partition, so each
partition's copy carries a version of that partition.

Consequences the rest of Sluice relies on:

* within one request, a later element with the same id is newer (higher index);
* a redelivered or re-read message carries the version it had the first time,
  so it can never beat what it once lost to;
* a replay (of a dead letter, say) re-enters `ingest.raw` and so is newer than
  everything accepted before it.

Deletes use the same order, and retention is a delete: a delete (by id, by filter, or a
retention step, which is a delete by filter up to a time) sits at a version in its
partition and removes, and keeps out, every version of what it covers that is **older**
than it. So a late older version, a redelivery or a sink re-reading from an earlier
offset, is never stored again (`sinks/writer.py` checks each upsert against the recorded
deletes). A replay is newer than the delete, so this rule cannot stop it: the replay core
refuses it instead, when the event was deleted after the dead letter was received
(`event_deleted`) or is older than its retention keeps (`expired`).
"""

from __future__ import annotations

INDEX_BITS = 20
"""An envelope holds fewer than 2**20 items; the item's index takes the low bits."""

MAX_INDEX = (1 << INDEX_BITS) - 1


def version_of(offset: int, index: int) -> int:
    """The version of the `index`-th item of the envelope at `offset`: later is newer."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"item index {index} does not fit in {INDEX_BITS} bits")
    return (offset << INDEX_BITS) | index


def position_of(version: int) -> tuple[int, int]:
    """(offset in `ingest.raw`, index in the envelope) of `version`."""
    return version >> INDEX_BITS, version & MAX_INDEX


def is_newer(candidate: int, held: int) -> bool:
    """Whether version `candidate` replaces version `held` of the same identity."""
    return candidate > held


def envelope_floor(offset: int) -> int:
    """The lowest version an item of the envelope at `offset` can have.

    Used where only an envelope's offset is known (a dead letter records its
    source offset, not its index): that envelope precedes a delete at version
    `v` in the same partition when `envelope_floor(offset) < v`.
    """
    return offset << INDEX_BITS
