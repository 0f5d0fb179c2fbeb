"""What an event's history needs carried downstream: the Kafka headers that name its request.

The first version of each envelope on `events`, and every dead letter on `events.dlq`,
carry the id of the request (or replay) that brought them in a header, so the sink can
record which request each stored version and each dead letter came from
(`ingest_envelopes`, `dead_letters.request_id`) without reading `ingest.raw` back; the
envelope's other versions share its position (`version >> 20`) and so its request.
Headers, not Avro fields: tools that decode the topics see the same records as before,
and a record without the header is still valid (written by a Kafka-native producer, or
before this existed); its request is then unknown. After the compacted `events` topic
dropped an envelope's first version (replaced later), a sink rebuilding from the topic
no longer learns that envelope's request for its other versions.
"""

from __future__ import annotations

REQUEST_HEADER = "sluice.request"
"""The request id of the envelope a version or dead letter came from (UTF-8)."""

REPLAY_OF_HEADER = "sluice.replay_of"
"""On a version that a replay brought: the dead letter it replays (UTF-8 UUID)."""
