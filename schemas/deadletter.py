"""Building dead letters: the rejected bytes untouched, plus why and where from.

Used by the door (stage `door`), the stream processor (stage `stream`) and the sink
(stage `sink`), so a dead letter reads the same wherever it was made. Error context is repeated in
Kafka headers (`__sluice.errors.*`, after Kafka Connect's `__connect.errors.*`)
so tools can route on it without decoding the value.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.codec import encode
from schemas.history import REQUEST_HEADER
from schemas.identity import Identity
from schemas.outcome import Violation

_NAMESPACE = uuid.UUID("6b3f3c52-52a4-4d6e-9b52-6f1c1c0de5a1")


@dataclass(frozen=True)
class Origin:
    """Where the rejected bytes came from."""

    tenant: str
    family: str
    route: Mapping[str, str]
    content_type: str
    received_at: datetime
    attempt: int = 1
    replay_of: str | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    request_id: str | None = None
    """The request (or replay) that brought the bytes; carried in the `sluice.request`
    header (`schemas.history`), not in the record."""


@dataclass(frozen=True)
class DeadLetterMessage:
    """A dead letter ready to produce: key, Avro value, headers."""

    dead_letter_id: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def stream_dead_letter_id(topic: str, partition: int, offset: int, index: int) -> str:
    """A deterministic id, so a redelivered envelope makes the same dead letter again."""
    return str(uuid.uuid5(_NAMESPACE, f"{topic}/{partition}/{offset}/{index}"))


def build_dead_letter(
    *,
    raw: bytes,
    reasons: Sequence[Violation],
    origin: Origin,
    stage: str,
    event_id: str | None = None,
    dead_letter_id: str | None = None,
) -> DeadLetterMessage:
    """Make the `events.dlq` message for `raw`, rejected at `stage` for `reasons`."""
    record = dead_letter_record(
        raw=raw, reasons=reasons, origin=origin, stage=stage, event_id=event_id,
        dead_letter_id=dead_letter_id or str(uuid.uuid4()),
    )  # fmt: skip
    key = Identity(origin.tenant, origin.family, event_id or record["dead_letter_id"]).key()
    return DeadLetterMessage(
        record["dead_letter_id"], key, encode("DeadLetter", record),
        _headers(reasons, origin, stage),
    )  # fmt: skip


def dead_letter_record(
    *,
    raw: bytes,
    reasons: Sequence[Violation],
    origin: Origin,
    stage: str,
    event_id: str | None,
    dead_letter_id: str,
) -> dict[str, Any]:
    """The `DeadLetter` record: what `events.dlq` carries, and what the sink stores (the sink
    builds it directly for the versions PostgreSQL refuses, which never reach the topic)."""
    return {
        "dead_letter_id": dead_letter_id,
        "tenant": origin.tenant,
        "family": origin.family,
        "route": dict(origin.route),
        "content_type": origin.content_type,
        "raw": raw,
        "stage": stage,
        "reasons": [r.as_dict() for r in reasons],
        "received_at": origin.received_at,
        "event_id": event_id,
        "attempt": origin.attempt,
        "replay_of": origin.replay_of,
        "source_topic": origin.source_topic,
        "source_partition": origin.source_partition,
        "source_offset": origin.source_offset,
    }


def _headers(reasons: Sequence[Violation], origin: Origin, stage: str) -> list[tuple[str, bytes]]:
    headers = [
        ("__sluice.errors.stage", stage.encode()),
        ("__sluice.errors.family", origin.family.encode()),
        ("__sluice.errors.codes", ",".join(sorted({r.code for r in reasons})).encode()),
        ("__sluice.errors.message", (reasons[0].message if reasons else "").encode()[:1024]),
        ("__sluice.errors.attempt", str(origin.attempt).encode()),
    ]
    if origin.source_topic is not None:
        headers += [
            ("__sluice.errors.topic", origin.source_topic.encode()),
            ("__sluice.errors.partition", str(origin.source_partition).encode()),
            ("__sluice.errors.offset", str(origin.source_offset).encode()),
        ]
    if origin.request_id is not None:
        headers.append((REQUEST_HEADER, origin.request_id.encode()))
    return headers
