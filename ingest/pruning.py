"""Deletion records leave once nothing can bring back what they keep out (issue 20).

A recorded delete (an identity's in `event_deletions`, a partition's delete by filter in
`filter_deletions`) refuses every older version of what it covers (`schemas/versions.py`).
An older version can still reach the sink while one of the topics holds it:

* `ingest.raw`, whose envelopes a worker may process again: exactly the offsets from the
  partition's earliest one on. A delete whose version's offset is below the earliest offset
  (of its partition; of every partition for `event_deletions`, which do not keep theirs) has
  nothing older left there;
* `events.dlq`, whose dead letters the sink may store late, and a replay (from the table
  or straight from the topic) may bring back: kept `retention.ms`;
* `events`, compacted: an older record may sit there until its segment rolls and is
  cleaned (`segment.ms`), and the delete's tombstone for `delete.retention.ms` after.

So a record may go when its offset is below `ingest.raw`'s earliest and it is older than
the longest of those retentions plus `MARGIN`; with a topic kept forever, never. The
bounds come from Kafka itself (the topics' configs and watermarks), so a retention an
operator raises on a topic is followed at once. `prune` is called by the retention runner
after each pass (`ingest.retention`); the SQL is migration 0022's.

Then what only reports on the past (`prune_receipts`, migration 0023's SQL): finished
deletion receipts, finished replay and heal jobs and finished retention runs leave once
they are older than the same horizon and than `SLUICE_RECEIPTS_KEEP_DAYS` (so never while
`ingest.raw` may still present what they are about). A receipt stays while a deletion
record still names it (it still keeps older versions out), a pending receipt and a
queued or running job always. `GET /v1/deletions/{id}` and `GET /v1/replay-jobs/{id}`
answer 404 for a pruned one, as for an id never issued: telling them apart would need a
record of every pruned id, which is what pruning removes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from psycopg_pool import AsyncConnectionPool

from runtime.kafka import client_config
from runtime.settings import Settings
from schemas.topics import TopicNames

log = logging.getLogger(__name__)

MARGIN = timedelta(days=1)
"""Kept this much longer than the longest retention: clocks, a cleaner that runs late."""
BATCH = 5_000


@dataclass(frozen=True)
class Horizon:
    """What may go: records older than `before` whose version's offset is below `earliest`
    of their `ingest.raw` partition."""

    before: datetime
    earliest: Mapping[int, int]

    @property
    def below_every(self) -> int:
        """The offset below which a record is older than anything in every partition."""
        return min(self.earliest.values(), default=0)


def horizon(
    configs: Mapping[str, Mapping[str, str]], earliest: Mapping[int, int], topics: TopicNames,
    now: datetime,
) -> Horizon | None:  # fmt: skip
    """The horizon from the topics' configs (name → config) and `ingest.raw`'s earliest
    offsets; None when a topic keeps its records forever (nothing may ever go)."""
    dlq, events, raw = configs[topics.dlq], configs[topics.events], configs[topics.ingest_raw]
    spans = [int(dlq["retention.ms"]), int(raw["retention.ms"])]
    compaction = [int(events["segment.ms"]), int(events["delete.retention.ms"])]
    if min(spans + compaction) < 0:
        return None
    longest = max(*spans, sum(compaction))
    return Horizon(now - timedelta(milliseconds=longest) - MARGIN, dict(earliest))


def read_kafka(settings: Settings, topics: TopicNames) -> tuple[dict[str, dict[str, str]],
                                                                 dict[int, int]]:  # fmt: skip
    """The three topics' configs and `ingest.raw`'s earliest offset per partition (blocking)."""
    config = client_config(settings)
    admin = AdminClient(config)
    names = (topics.ingest_raw, topics.events, topics.dlq)
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in names])
    configs = {
        resource.name: {k: v.value for k, v in future.result(timeout=30).items()}
        for resource, future in futures.items()
    }
    consumer = Consumer({**config, "group.id": f"sluice-pruning-{uuid.uuid4()}",
                         "enable.auto.commit": False})  # fmt: skip
    try:
        metadata = consumer.list_topics(topics.ingest_raw, timeout=30).topics[topics.ingest_raw]
        earliest = {
            p: consumer.get_watermark_offsets(TopicPartition(topics.ingest_raw, p), timeout=30)[0]
            for p in metadata.partitions
        }
    finally:
        consumer.close()
    return configs, earliest


def prune_calls(found: Horizon) -> Iterator[tuple[str, str, tuple[Any, ...]]]:
    """(table, statement, parameters) of each call that prunes what `found` allows; each
    removes at most `BATCH` rows, so repeat one while it removes that many."""
    yield ("event_deletions", "SELECT sluice_prune_event_deletions(%s, %s, %s)",
           (found.before, found.below_every, BATCH))  # fmt: skip
    for partition, earliest in sorted(found.earliest.items()):
        yield ("filter_deletions", "SELECT sluice_prune_filter_deletions(%s, %s, %s, %s)",
               (partition, found.before, earliest, BATCH))  # fmt: skip


async def prune(pool: AsyncConnectionPool, found: Horizon) -> dict[str, int]:
    """Remove the deletion records `found` allows, in batches; how many of each kind."""
    removed = {"event_deletions": 0, "filter_deletions": 0}
    async with pool.connection() as conn:
        for table, statement, params in prune_calls(found):
            while True:
                gone = _count(await (await conn.execute(statement, params)).fetchone())
                removed[table] += gone
                if gone < BATCH:
                    break
    return removed


RECEIPTS = ("receipts", "replay_jobs", "retention_runs")
"""What `prune_receipts` removes, each by its own function `sluice_prune_<name>`."""


def receipts_cut(found: Horizon, keep_days: float, now: datetime) -> datetime:
    """Before when a finished receipt, job or run may go: the older of the deletion records'
    horizon and `keep_days` ago."""
    return min(found.before, now - timedelta(days=keep_days))


async def prune_receipts(pool: AsyncConnectionPool, before: datetime) -> dict[str, int]:
    """Remove finished receipts, jobs and runs older than `before`, in batches; how many.
    Call after `prune`: a receipt goes only once no deletion record names it."""
    removed = dict.fromkeys(RECEIPTS, 0)
    async with pool.connection() as conn:
        for name in RECEIPTS:
            while True:
                cur = await conn.execute(f"SELECT sluice_prune_{name}(%s, %s)", (before, BATCH))
                gone = _count(await cur.fetchone())
                removed[name] += gone
                if gone < BATCH:
                    break
    return removed


def _count(row: Any) -> int:
    return int(row[0]) if row else 0


async def prune_now(pool: AsyncConnectionPool, settings: Settings, now: datetime) -> dict[str, int]:
    """Read Kafka, then prune what it allows (nothing when a topic keeps forever): the
    deletion records, then the receipts, jobs and runs."""
    topics = TopicNames.for_prefix(settings.topic_prefix)
    configs, earliest = await asyncio.to_thread(read_kafka, settings, topics)
    found = horizon(configs, earliest, topics, now)
    if found is None:
        return {"event_deletions": 0, "filter_deletions": 0, **dict.fromkeys(RECEIPTS, 0)}
    removed = await prune(pool, found)
    if any(removed.values()):
        log.info("pruned deletion records older than %s below ingest.raw offsets %s: %s",
                 found.before, dict(found.earliest), removed)  # fmt: skip
    cut = receipts_cut(found, settings.receipts_keep_days, now)
    finished = await prune_receipts(pool, cut)
    if any(finished.values()):
        log.info("pruned finished receipts, jobs and runs older than %s: %s", cut, finished)
    return {**removed, **finished}
