"""Topic descriptors: one per topic, as data (name, partitions, cleanup, key, value schema).

All three topics share one partition count, because an event's partition is
computed once at the door and kept on every topic (docs/design.md, invariant 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_MESSAGE = str(16 * 1024 * 1024)
"""Envelopes and dead letters may carry a whole request body (up to the door's limit)."""


@dataclass(frozen=True)
class TopicDescriptor:
    """What a topic is for and how it is configured."""

    logical_name: str
    cleanup_policy: str
    key: str
    value_schema: str
    doc: str
    extra_config: dict[str, str] = field(default_factory=dict)

    def name(self, prefix: str) -> str:
        """The physical topic name under `prefix`."""
        return f"{prefix}{self.logical_name}"

    def config(self, *, min_insync_replicas: int = 1) -> dict[str, str]:
        """Topic-level configs to create it with."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "min.insync.replicas": str(min_insync_replicas),
            **self.extra_config,
        }


INGEST_RAW = TopicDescriptor(
    logical_name="ingest.raw",
    cleanup_policy="delete",
    key="none: the door chooses the partition from each event's identity",
    value_schema="IngestEnvelope",
    doc="Accepted requests, one envelope per (request, partition), events as raw bytes.",
    extra_config={"retention.ms": str(7 * 24 * 3600 * 1000), "max.message.bytes": MAX_MESSAGE},
)
EVENTS = TopicDescriptor(
    logical_name="events",
    cleanup_policy="compact",
    key="identity: tenant|family|event_id",
    value_schema="CanonicalEvent",
    doc="Validated events, newest version per identity; a null value is a delete.",
    extra_config={"min.compaction.lag.ms": "0", "delete.retention.ms": str(24 * 3600 * 1000)},
)
EVENTS_DLQ = TopicDescriptor(
    logical_name="events.dlq",
    cleanup_policy="delete",
    key="identity when known, else tenant|family|dead_letter_id",
    value_schema="DeadLetter",
    doc="Rejected events stored raw, with the reasons and error context in headers too.",
    extra_config={"retention.ms": str(30 * 24 * 3600 * 1000), "max.message.bytes": MAX_MESSAGE},
)
ALL_TOPICS: tuple[TopicDescriptor, ...] = (INGEST_RAW, EVENTS, EVENTS_DLQ)


@dataclass(frozen=True)
class TopicNames:
    """Physical names of Sluice's topics under one prefix."""

    ingest_raw: str
    events: str
    dlq: str

    @classmethod
    def for_prefix(cls, prefix: str) -> TopicNames:
        return cls(INGEST_RAW.name(prefix), EVENTS.name(prefix), EVENTS_DLQ.name(prefix))
