"""The pruning horizon (`ingest.pruning.horizon`): from the topics' configs and watermarks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest.pruning import MARGIN, horizon, prune_calls, receipts_cut
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


def test_receipts_go_after_both_the_horizon_and_the_days_kept() -> None:
    """The older cut wins: the topics' horizon when it is further back, else the days kept;
    a negative or zero `SLUICE_RECEIPTS_KEEP_DAYS` never brings the horizon forward."""
    found = horizon(_configs(), {0: 10}, TOPICS, NOW)
    assert found is not None
    assert receipts_cut(found, 30, NOW) == found.before  # 31 days ago: the horizon
    assert receipts_cut(found, 90, NOW) == NOW - timedelta(days=90)
    assert receipts_cut(found, 0, NOW) == receipts_cut(found, -5, NOW) == found.before


def test_pruning_calls_follow_the_horizon() -> None:
    """One call for the identities' records below every partition's earliest offset, one
    per partition for the filters' records below that partition's."""
    found = horizon(_configs(), {1: 7, 0: 10}, TOPICS, NOW)
    assert found is not None
    calls = [(table, params[:-1]) for table, _sql, params in prune_calls(found)]
    assert calls == [("event_deletions", (found.before, 7)),
                     ("filter_deletions", (0, found.before, 10)),
                     ("filter_deletions", (1, found.before, 7))]  # fmt: skip
