"""The Faust app: agents that validate and normalise ingest envelopes, route rejects to the
dead-letter topic and turn deletes into tombstones."""
