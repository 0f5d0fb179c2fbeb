"""Turn a processed envelope into Kafka messages, on the envelope's own partition number.

Every version of an identity sits in the same partition number on every topic,
so the order Kafka gave it at the door is the order it keeps downstream.
"""

from __future__ import annotations

from runtime.kafka import OutgoingMessage
from schemas.deletes import DELETION_HEADER, REQUESTED_AT_HEADER
from schemas.deletes import VERSION_HEADER as VERSION_HEADER  # re-exported for older importers
from schemas.history import REPLAY_OF_HEADER, REQUEST_HEADER
from schemas.topics import TopicNames
from streams.process import Processed, TombstoneOut


def to_messages(processed: Processed, partition: int, topics: TopicNames) -> list[OutgoingMessage]:
    """Kafka messages for one processed envelope."""
    out: list[OutgoingMessage] = []
    first = request_headers(processed.request_id)  # on the envelope's first version only
    for event in processed.events:
        headers = first if event.replay_of is None else [
            *(first or []), (REPLAY_OF_HEADER, event.replay_of.encode())
        ]  # fmt: skip
        out.append((topics.events, partition, event.key, event.value, headers))
        first = None
    for tomb in processed.tombstones:
        out.append((topics.events, partition, tomb.key, None, tombstone_headers(tomb)))
    for deletion in processed.filter_deletions:
        out.append((topics.events, partition, deletion.key, deletion.value, None))
    for dead in processed.dead_letters:
        out.append((topics.dlq, partition, dead.key, dead.value, dead.headers))
    return out


def request_headers(request_id: str | None) -> list[tuple[str, bytes]] | None:
    """The header naming an envelope's request, for its history (None: unknown request).

    Only the envelope's first version carries it: the others share its position
    (`version >> 20`), and a version without headers costs the sink ~2 µs less to read
    (what this header on every version cost it). The sink and `store.history` find the
    request of every version by its envelope's position (`sinks.history`)."""
    return None if not request_id else [(REQUEST_HEADER, request_id.encode())]


def tombstone_headers(tomb: TombstoneOut) -> list[tuple[str, bytes]]:
    """The version always; the receipt and the request time when the delete has them."""
    headers = [(VERSION_HEADER, str(tomb.version).encode())]
    if tomb.deletion_id is not None:
        headers.append((DELETION_HEADER, tomb.deletion_id.encode()))
    if tomb.requested_at is not None:
        micros = int(tomb.requested_at.timestamp() * 1_000_000)
        headers.append((REQUESTED_AT_HEADER, str(micros).encode()))
    return headers
