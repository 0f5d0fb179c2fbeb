"""Turn a processed envelope into Kafka messages, on the envelope's own partition number.

Every version of an identity sits in the same partition number on every topic,
so the order Kafka gave it at the door is the order it keeps downstream.
"""

from __future__ import annotations

from schemas.topics import TopicNames
from sluice.kafka import OutgoingMessage
from streams.process import Processed

VERSION_HEADER = "sluice.version"
"""Header carrying a tombstone's version (a null value has no room for it)."""


def to_messages(processed: Processed, partition: int, topics: TopicNames) -> list[OutgoingMessage]:
    """Kafka messages for one processed envelope."""
    out: list[OutgoingMessage] = []
    for event in processed.events:
        out.append((topics.events, partition, event.key, event.value, None))
    for tomb in processed.tombstones:
        headers = [(VERSION_HEADER, str(tomb.version).encode())]
        out.append((topics.events, partition, tomb.key, None, headers))
    for dead in processed.dead_letters:
        out.append((topics.dlq, partition, dead.key, dead.value, dead.headers))
    return out
