"""Checks every fault test ends with: acknowledged ids against PostgreSQL, duplicates,
and committed offsets against the database."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.codec import decode
from schemas.identity import Identity


@dataclass
class Landing:
    """Where a test's acknowledged events ended up."""

    rows: set[str] = field(default_factory=set)
    """Event ids of the tenant with a row in `events`."""
    dead_letter_ids: set[str] = field(default_factory=set)
    dead_letter_event_ids: Counter[str] = field(default_factory=Counter)
    lost: set[str] = field(default_factory=set)
    """Acknowledged valid ids with no row (and no dead letter)."""
    lost_dead_letters: set[str] = field(default_factory=set)
    seconds: float = 0.0
    """How long until everything acknowledged had landed (or the timeout)."""

    @property
    def duplicates(self) -> int:
        """Valid ids stored twice: as a row and also as a dead letter.

        (`events` has one row per identity by its primary key, so a second row cannot exist;
        what the checks look for is an event stored both ways.)
        """
        return sum(1 for i in self.dead_letter_event_ids if i in self.rows)

    @property
    def repeated_dead_letters(self) -> int:
        """Extra dead letters of one event id (a client retrying a request makes new ones)."""
        return sum(n - 1 for n in self.dead_letter_event_ids.values() if n > 1)


def stored(database_url: str, tenant: str) -> Landing:
    """Everything stored for `tenant` right now."""
    landing = Landing()
    with psycopg.connect(database_url, autocommit=True) as conn:
        landing.rows = {
            r[0] for r in conn.execute("SELECT event_id FROM events WHERE tenant = %s", (tenant,))
        }
        dead = conn.execute(
            "SELECT dead_letter_id::text, event_id FROM dead_letters WHERE tenant = %s", (tenant,)
        ).fetchall()
    landing.dead_letter_ids = {r[0] for r in dead}
    landing.dead_letter_event_ids = Counter(r[1] for r in dead if r[1] is not None)
    return landing


def wait_until_landed(
    database_url: str,
    tenant: str,
    acked: Iterable[str],
    dead_letter_ids: Iterable[str] = (),
    timeout: float = 120.0,
) -> Landing:
    """Poll PostgreSQL until every acknowledged id is stored; return what is missing then."""
    want_rows, want_dead = set(acked), set(dead_letter_ids)
    begun = time.monotonic()
    while True:
        landing = stored(database_url, tenant)
        landing.lost = want_rows - landing.rows - set(landing.dead_letter_event_ids)
        landing.lost_dead_letters = want_dead - landing.dead_letter_ids
        landing.seconds = time.monotonic() - begun
        if not landing.lost and not landing.lost_dead_letters:
            return landing
        if landing.seconds > timeout:
            return landing
        time.sleep(0.5)


def wait_for_dead_letters(database_url: str, ids: Iterable[str], timeout: float = 60.0) -> set[str]:
    """Poll until every dead letter id in `ids` is stored (any tenant); return those missing."""
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(database_url, autocommit=True) as conn:
            found = {
                r[0]
                for r in conn.execute(
                    "SELECT dead_letter_id::text FROM dead_letters"
                    " WHERE dead_letter_id::text = ANY(%s)",
                    (list(wanted),),
                )
            }
        if not wanted - found or time.monotonic() > deadline:
            return wanted - found
        time.sleep(0.5)


def committed_offsets(
    bootstrap: str, group: str, topics: Sequence[str]
) -> dict[TopicPartition, int]:
    """The group's committed offset per partition (only partitions with one)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})  # fmt: skip
    try:
        metadata = consumer.list_topics(timeout=15)
        partitions = [TopicPartition(t, p) for t in topics for p in metadata.topics[t].partitions]
        committed = consumer.committed(partitions, timeout=15)
    finally:
        consumer.close()
    return {TopicPartition(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset > 0}


def _read_below(bootstrap: str, ends: dict[TopicPartition, int]) -> list[tuple[str, bytes | None]]:
    """(topic, value) of every message below each partition's end offset."""
    reader = _reader(bootstrap)
    reader.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in ends])
    pending = {(tp.topic, tp.partition): end for tp, end in ends.items()}
    out: list[tuple[str, bytes | None]] = []
    deadline = time.monotonic() + 60
    try:
        while pending and time.monotonic() < deadline:
            for msg in reader.consume(1000, timeout=1.0):
                where = (msg.topic(), msg.partition())
                end = pending.get(where)
                if end is None:
                    continue
                if msg.error() is not None or msg.offset() >= end - 1:
                    del pending[where]  # partition end reached (EOF) or the last wanted offset
                if msg.error() is None and msg.offset() < end:
                    out.append((msg.topic(), msg.value()))
    finally:
        reader.close()
    if pending:
        raise AssertionError(f"could not read up to the committed offsets of {pending}")
    return out


def committed_but_not_stored(
    bootstrap: str, group: str, events_topic: str, dlq_topic: str, database_url: str
) -> tuple[int, int]:
    """(messages below the sink's committed offsets whose write is not in PostgreSQL, checked).

    Call it while no sink runs (just after killing it), so the database and the
    offsets are looked at in one consistent moment.
    """
    ends = committed_offsets(bootstrap, group, (events_topic, dlq_topic))
    messages = _read_below(bootstrap, ends)
    versions: dict[tuple[str, str, str], int] = {}
    dead_letters: set[str] = set()
    for topic, value in messages:
        if topic == dlq_topic:
            dead_letters.add(str(decode(value or b"", "DeadLetter")[1]["dead_letter_id"]))
        elif value is not None:
            record = decode(value, "CanonicalEvent")[1]
            identity = (record["tenant"], record["family"], record["event_id"])
            versions[identity] = max(versions.get(identity, -1), record["version"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        held = {
            (r[0], r[1], r[2]): r[3]
            for r in conn.execute("SELECT tenant, family, event_id, version FROM events")
        }
        stored_dead = {r[0] for r in conn.execute("SELECT dead_letter_id::text FROM dead_letters")}
    missing = sum(1 for ident, v in versions.items() if held.get(ident, -1) < v)
    missing += len(dead_letters - stored_dead)
    return missing, len(messages)


def topic_copies(bootstrap: str, topic: str, tenant: str) -> Counter[str]:
    """How many messages of `tenant` each event id has on `topic` (redeliveries show as >1)."""
    ends = {
        TopicPartition(topic, p): high
        for p, high in _high_watermarks(bootstrap, topic).items()
        if high > 0
    }
    copies: Counter[str] = Counter()
    reader = _reader(bootstrap)
    reader.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in ends])
    pending = {tp.partition: end for tp, end in ends.items()}
    deadline = time.monotonic() + 60
    try:
        while pending and time.monotonic() < deadline:
            for msg in reader.consume(1000, timeout=1.0):
                if msg.partition() not in pending:
                    continue
                if msg.error() is not None or msg.offset() >= pending[msg.partition()] - 1:
                    del pending[msg.partition()]  # EOF, or the last offset there was
                if msg.error() is not None:
                    continue
                identity = Identity.from_key(msg.key() or b"||")
                if identity.tenant == tenant and msg.value() is not None:
                    copies[identity.event_id] += 1
    finally:
        reader.close()
    return copies


def _reader(bootstrap: str) -> Consumer:
    """A consumer for reading partitions by assignment; reports partition ends as errors."""
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}",
                     "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip


def _high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hw-{uuid.uuid4().hex}"})
    try:
        metadata = consumer.list_topics(topic, timeout=15)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1]
            for p in metadata.topics[topic].partitions
        }
    finally:
        consumer.close()


def figure(text: str) -> None:
    """Print one figure line, marked so it is easy to find in the test output."""
    print(f"\nFIGURE {text}", flush=True)
