"""The compiled stream path (`fastpath/src/stream.rs`) with the Python path as its fallback.

For a plainly valid native envelope, one call does what `process_envelope` and
`to_messages` do, byte for byte (property tests: `tests/streams/test_fastpath_stream.py`);
for anything else it declines and the worker runs the Python path. Without the compiled
extension (a platform without a wheel), every envelope takes the Python path.
"""

from __future__ import annotations

from typing import cast

from runtime.kafka import OutgoingMessage
from schemas.contracts import NO_CONTRACTS, Contracts
from schemas.history import REQUEST_HEADER
from schemas.topics import TopicNames

try:
    from sluice_fastpath import forward_native as _forward_native
except ImportError:  # not built here: the Python path does everything
    _forward_native = None  # type: ignore[assignment]

COMPILED = _forward_native is not None
"""Whether the compiled stream path is available in this process."""


def forward_compiled(
    value: bytes | None,
    offset: int,
    partition: int,
    topics: TopicNames,
    contracts: Contracts = NO_CONTRACTS,
) -> tuple[str, str, list[OutgoingMessage]] | None:
    """(tenant, family, messages to `events`) of the envelope `value` read at `offset` of
    `partition`, or None when the Python path must decide, as it must for a tenant with a
    data contract for the family in `contracts` (the compiled path cannot apply one)."""
    if _forward_native is None or value is None:
        return None
    found = _forward_native(
        value, offset, partition, topics.events, REQUEST_HEADER, contracts.covers
    )
    if found is None:
        return None
    tenant, family, messages = found
    return tenant, family, cast(list[OutgoingMessage], messages)
