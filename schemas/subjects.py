"""The registry subjects of Sluice's own topics, and the schema ids of each.

TopicNameStrategy: the subject of a topic's values is `<topic>-value`, its versions the
schemas Sluice has written there, oldest first, with the ids `schemas/codec.py` writes
(so messages written before the registry existed resolve too). `events` also carries
`FilterDeletion` records beside its `CanonicalEvent`s; one subject cannot hold both under
a compatibility check, so that record has the TopicRecordNameStrategy subject
`<topic>-sluice.FilterDeletion`. A consumer decodes by the id in each message, whatever
the subject. With an existing registry instead (`runtime.registry_client`) the same
subjects and versions are registered there, and the ids are that registry's.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.codec import SCHEMA_IDS, SUPERSEDED
from schemas.topics import EVENTS, EVENTS_DLQ, INGEST_RAW

RESERVED_IDS = 999
"""Ids 1..999 are Sluice's own; tenants' schemas are numbered from 1000 (migration 0008)."""


@dataclass(frozen=True)
class OwnSubject:
    subject: str
    schema_ids: tuple[int, ...]
    """Oldest first: version n is `schema_ids[n - 1]`."""


def own_subjects(prefix: str) -> tuple[OwnSubject, ...]:
    """Sluice's subjects for the topics under `prefix`."""
    envelope, event = _ids_of("IngestEnvelope"), _ids_of("CanonicalEvent")
    return (
        OwnSubject(f"{INGEST_RAW.name(prefix)}-value", envelope),
        OwnSubject(f"{EVENTS.name(prefix)}-value", event),
        OwnSubject(f"{EVENTS.name(prefix)}-sluice.FilterDeletion", (SCHEMA_IDS["FilterDeletion"],)),
        OwnSubject(f"{EVENTS_DLQ.name(prefix)}-value", (SCHEMA_IDS["DeadLetter"],)),
    )


def _ids_of(name: str) -> tuple[int, ...]:
    """Every id record `name` was ever written with, oldest (lowest) first."""
    older = {schema_id for schema_id, (of, _) in SUPERSEDED.items() if of == name}
    return tuple(sorted({*older, SCHEMA_IDS[name]}))
