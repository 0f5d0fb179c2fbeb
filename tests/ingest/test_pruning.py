"""The pruning horizon (`ingest.pruning.horizon`): from the topics' configs and watermarks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest.pruning import MARGIN, horizon
from schemas.topics import TopicNames

TOPICS = TopicNames.for_prefix("p.")
NOW = datetime(2026, 12, 4, tzinfo=UTC)
DAY_MS = 86_400_000


def _configs(raw: int = 7, dlq: int = 30, segment: int = 7, tombstones: int = 1) -> dict[
        str, dict[str, str]]:  # fmt: skip
    return {
        TOPICS.ingest_raw: {"retention.ms": str(raw * DAY_MS)},
        TOPICS.dlq: {"retention.ms": str(dlq * DAY_MS)},
        TOPICS.events: {"segment.ms": str(segment * DAY_MS),
                        "delete.retention.ms": str(tombstones * DAY_MS)},
    }  # fmt: skip


def test_the_longest_retention_plus_a_margin_decides() -> None:
    found = horizon(_configs(), {0: 10, 1: 3}, TOPICS, NOW)
    assert found is not None
    assert found.before == NOW - timedelta(days=30) - MARGIN
    assert found.below_every == 3 and dict(found.earliest) == {0: 10, 1: 3}
    raised = horizon(_configs(raw=90), {0: 10}, TOPICS, NOW)
    assert raised is not None and raised.before == NOW - timedelta(days=90) - MARGIN
    compaction = horizon(_configs(dlq=1, raw=1, segment=40, tombstones=2), {0: 1}, TOPICS, NOW)
    assert compaction is not None and compaction.before == NOW - timedelta(days=42) - MARGIN


def test_a_topic_kept_forever_means_nothing_goes() -> None:
    for forever in (_configs(dlq=-1), _configs(raw=-1), _configs(segment=-1)):
        assert horizon(forever, {0: 10}, TOPICS, NOW) is None
    kept = _configs()
    kept[TOPICS.dlq]["retention.ms"] = "-1"  # what Kafka says for "forever"
    assert horizon(kept, {0: 10}, TOPICS, NOW) is None
