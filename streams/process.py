"""The stream processor's core: one ingest envelope in, events, tombstones and dead letters out.

Pure: it sees a decoded envelope and where it sat in `ingest.raw`, never a
Kafka message. Each item's version is its position there, so a later item of
the same identity is newer by construction (docs/design.md, invariant 3).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.codec import encode
from schemas.contracts import NO_CONTRACTS, Contracts, enforce, is_schema_violation
from schemas.deadletter import DeadLetterMessage, Origin, build_dead_letter, stream_dead_letter_id
from schemas.deletes import filter_key
from schemas.identity import Identity
from schemas.outcome import Outcome, Rejected, Violation
from schemas.validators import VALIDATORS, validate_all
from schemas.versions import INDEX_BITS as INDEX_BITS  # re-exported: defined in schemas
from schemas.versions import version_of as version_of
from schemas.writers import CanonicalEventWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Position:
    """Where an envelope sat in `ingest.raw`."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class EventOut:
    key: bytes
    value: bytes
    replay_of: str | None = None
    """The dead letter this version replays, if it came from a replay."""


@dataclass(frozen=True)
class TombstoneOut:
    """A delete by id: a null value for the identity's key, the version in a header."""

    key: bytes
    version: int
    deletion_id: str | None = None
    requested_at: datetime | None = None


@dataclass(frozen=True)
class FilterDeletionOut:
    """A delete by filter's copy for this partition: an Avro `FilterDeletion` on `events`."""

    key: bytes
    value: bytes


@dataclass
class Processed:
    """What one envelope became, in item order per output kind.

    Ordering between kinds does not matter downstream: each carries its
    version, and the sink compares versions, not arrival order.
    """

    events: list[EventOut] = field(default_factory=list)
    tombstones: list[TombstoneOut] = field(default_factory=list)
    dead_letters: list[DeadLetterMessage] = field(default_factory=list)
    filter_deletions: list[FilterDeletionOut] = field(default_factory=list)
    request_id: str | None = None
    """The envelope's request, which its versions name in a header (`schemas.history`)."""
    rejected: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    """(event id, reason codes) of each upsert the family's validator rejected. The door
    runs the same validators before it writes an envelope, so each one is a door bug (or
    an envelope a Kafka-native producer wrote without the door's checks). A data contract's
    rejection is not one of them: a new version may have been registered since the door
    checked the event."""
    refused_by_contract: int = 0
    """Upserts a data contract refused (the worker then makes sure its contracts are not
    older than the envelope: `streams.app.Forwarder.handle`)."""


def process_envelope(
    envelope: dict[str, Any], at: Position, contracts: Contracts = NO_CONTRACTS
) -> Processed:
    """Validate and normalise every item of `envelope`, then check each valid event against
    its tenant's data contract for it (the latest version in `contracts`): a pass carries
    the schema id to `events`, a failure is dead-lettered with its `schema_violation`s."""
    out = Processed(request_id=envelope["request_id"])
    origin = _origin(envelope, at)
    validate = VALIDATORS.get(envelope["family"])
    items = envelope["items"]
    outcomes: dict[int, Outcome] = {}  # by item index: read only for its own event
    if validate is not None:
        upserts = [index for index, item in enumerate(items) if item["op"] != "delete"]
        found = validate_all(validate, [items[i]["raw"] for i in upserts], envelope["route"])
        checked = enforce(contracts, envelope["tenant"], envelope["family"], found)
        outcomes = dict(zip(upserts, checked, strict=True))
    writer = CanonicalEventWriter(envelope["tenant"], envelope["family"], envelope["received_at"])
    for index, item in enumerate(items):
        identity = Identity(envelope["tenant"], envelope["family"], item["event_id"])
        version = version_of(at.offset, index)
        if item["op"] == "delete":
            _delete(envelope, item, version, out)
            continue
        try:
            if validate is None:
                reasons: tuple[Violation, ...] = (
                    Violation("unknown_family", "$", f"no validator for {envelope['family']!r}"),
                )
                out.dead_letters.append(_reject(item, reasons, origin, at, index))
                continue
            outcome = outcomes[index]
            if isinstance(outcome, Rejected):
                out.dead_letters.append(_reject(item, outcome.violations, origin, at, index))
                if is_schema_violation(outcome):
                    out.refused_by_contract += 1
                else:
                    codes = tuple(v.code for v in outcome.violations)
                    out.rejected.append((item["event_id"], codes))
                continue
            value = writer.encode(
                identity.event_id, outcome.type, outcome.source, outcome.subject,
                outcome.time, outcome.data_json, version, outcome.attributes_json,
                outcome.schema_id,
            )  # fmt: skip
            out.events.append(EventOut(identity.key(), value, item["replay_of"]))
        except Exception as exc:  # a bug on one event's data must not skip it or stop the agent
            log.exception("processing failed for %s", identity)
            reason = Violation("processing_error", "$", f"{type(exc).__name__}: {exc}")
            out.dead_letters.append(_reject(item, (reason,), origin, at, index))
    return out


def _delete(envelope: dict[str, Any], item: dict[str, Any], version: int, out: Processed) -> None:
    """A delete by id becomes a tombstone; a delete by filter, a `FilterDeletion` record."""
    deletion_id = item.get("receipt_id")
    flt = item.get("delete_filter")
    if flt is None:
        identity = Identity(envelope["tenant"], envelope["family"], item["event_id"])
        out.tombstones.append(
            TombstoneOut(identity.key(), version, deletion_id, envelope["received_at"])
        )
        return
    deletion_id = deletion_id or f"{envelope['request_id']}:{version}"
    record = {
        "deletion_id": deletion_id, "tenant": envelope["tenant"], "family": envelope["family"],
        "filter": flt, "version": version, "requested_at": envelope["received_at"],
    }  # fmt: skip
    out.filter_deletions.append(
        FilterDeletionOut(filter_key(deletion_id), encode("FilterDeletion", record))
    )


def undecodable_envelope(raw: bytes, at: Position, error: str) -> DeadLetterMessage:
    """A message on `ingest.raw` that is not an envelope: one dead letter of its bytes."""
    origin = Origin(
        tenant="_undecodable", family="native", route={}, content_type="application/octet-stream",
        received_at=datetime.now(UTC), source_topic=at.topic, source_partition=at.partition,
        source_offset=at.offset,
    )  # fmt: skip
    return build_dead_letter(
        raw=raw,
        reasons=(Violation("undecodable_envelope", "$", error),),
        origin=origin,
        stage="stream",
        dead_letter_id=stream_dead_letter_id(at.topic, at.partition, at.offset, 0),
    )


def _origin(envelope: dict[str, Any], at: Position) -> Origin:
    return Origin(
        tenant=envelope["tenant"], family=envelope["family"], route=envelope["route"],
        content_type=envelope["content_type"], received_at=envelope["received_at"],
        source_topic=at.topic, source_partition=at.partition, source_offset=at.offset,
        request_id=envelope["request_id"],
    )  # fmt: skip


def _reject(
    item: dict[str, Any], reasons: tuple[Violation, ...], origin: Origin, at: Position, index: int
) -> DeadLetterMessage:
    from dataclasses import replace

    return build_dead_letter(
        raw=item["raw"],
        reasons=reasons,
        origin=replace(origin, attempt=item["attempt"], replay_of=item["replay_of"]),
        stage="stream",
        event_id=item["event_id"],
        dead_letter_id=stream_dead_letter_id(at.topic, at.partition, at.offset, index),
    )
