"""Create Sluice's topics idempotently, each with its descriptor's config."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from runtime.kafka import client_config
from runtime.settings import Settings
from schemas.topics import ALL_TOPICS

log = logging.getLogger(__name__)


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create every missing topic; return the names created (existing ones are left alone)."""
    admin = AdminClient(client_config(settings))
    existing = set(admin.list_topics(timeout=timeout).topics)
    min_isr = 2 if settings.replication_factor >= 3 else 1
    # Never elect an out-of-sync replica: it would drop writes Kafka acknowledged (acks=all).
    durability = {"unclean.leader.election.enable": "false"}
    wanted = [
        NewTopic(
            t.name(settings.topic_prefix),
            num_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config={**t.config(min_insync_replicas=min_isr), **durability},
        )
        for t in ALL_TOPICS
        if t.name(settings.topic_prefix) not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != exc.args[0].TOPIC_ALREADY_EXISTS:
                raise
    log.info("created topics %s", created)
    return created
