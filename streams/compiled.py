"""The compiled stream path (`fastpath/src/stream.rs`) with the Python path as its fallback.

For a plainly valid native envelope, one call does what `process_envelope` and
`to_messages` do, byte for byte (property tests: `tests/streams/test_fastpath_stream.py`,
`tests/streams/test_fastpath_contracts.py`), data contracts included: each contract
version is compiled once in Rust (`CompiledContract`, cached here per version), events
that pass carry its schema id, and an envelope with any event that fails goes to the
Python path, which makes the dead letters. For anything else it declines too. Without the
compiled extension (a platform without a wheel), every envelope takes the Python path.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from typing import Any, cast

from runtime.kafka import OutgoingMessage
from schemas.codec import wire_header
from schemas.contracts import DRAFTS, NO_CONTRACTS, Contracts, ContractValidator
from schemas.history import REQUEST_HEADER
from schemas.topics import TopicNames

try:
    from sluice_fastpath import CompiledContract
    from sluice_fastpath import forward_native as _forward_native
except ImportError:  # not built here: the Python path does everything
    _forward_native = None  # type: ignore[assignment]

COMPILED = _forward_native is not None
"""Whether the compiled stream path is available in this process."""

_DRAFT_NAMES: Mapping[Any, str] = {
    draft: uri.rsplit("/", 2)[-2].removeprefix("draft-").lstrip("0")
    for uri, draft in DRAFTS.items()
}
"""jsonschema-rs's draft → the name `CompiledContract` takes ("2020-12", …, "7", "4")."""

_compiled: weakref.WeakKeyDictionary[ContractValidator, CompiledContract | None] = (
    weakref.WeakKeyDictionary()
)
"""Each live validator's Rust twin (`ingest.contracts` compiles one validator per schema id,
so the validator alone names the version)."""
_index: list[tuple[Contracts, dict[str, dict[str, CompiledContract | None]]]] = []


def compiled_contract(schema_id: int, validator: Any) -> CompiledContract | None:
    """`validator`'s contract compiled in Rust, once per version; None when Rust cannot
    build it as `schemas.contracts.compile_schema` did (its subject then declines)."""
    if not isinstance(validator, ContractValidator):
        return None
    if validator not in _compiled:
        try:
            _compiled[validator] = CompiledContract(
                schema_id, json.dumps(validator._document), _DRAFT_NAMES[validator._draft]
            )
        except ValueError:
            _compiled[validator] = None
    return _compiled[validator]


def native_contracts(
    contracts: Contracts, tenant: str, family: str
) -> dict[str, CompiledContract | None] | None:
    """`tenant`'s native contracts by subject, compiled; None when none covers `family`.
    Indexed once per `Contracts` (a refresh makes a new one)."""
    if not contracts.covers(tenant, family):
        return None
    if not _index or _index[0][0] is not contracts:
        _index[:] = [(contracts, {})]
    by_tenant = _index[0][1]
    found = by_tenant.get(tenant)
    if found is None:
        found = {
            subject: compiled_contract(c.schema_id, c.validator)
            for (t, subject), c in contracts.by_subject.items()
            if t == tenant and subject.startswith("native.")
        }
        by_tenant[tenant] = found
    return found


def forward_compiled(
    value: bytes | None,
    offset: int,
    partition: int,
    topics: TopicNames,
    contracts: Contracts = NO_CONTRACTS,
) -> tuple[str, str, list[OutgoingMessage]] | None:
    """(tenant, family, messages to `events`) of the envelope `value` read at `offset` of
    `partition`, with the data contracts in `contracts` applied, or None when the Python
    path must decide (see the module). The wire headers are this process's at call time."""
    if _forward_native is None or value is None:
        return None
    found = _forward_native(
        value, offset, partition, topics.events, REQUEST_HEADER,
        wire_header("IngestEnvelope"), wire_header("CanonicalEvent"),
        lambda tenant, family: native_contracts(contracts, tenant, family),
    )  # fmt: skip
    if found is None:
        return None
    tenant, family, messages = found
    return tenant, family, cast(list[OutgoingMessage], messages)
