"""The ingest core, transport-free: from a request's bytes to Kafka's acknowledgement.

One entry (`ingest.entry`) splits a body into raw events, admits them against the
caller's budget, plans them (`ingest.plan`, compiled or Python), dead-letters what
cannot be split, publishes (`ingest.publish`) and returns an outcome value; the HTTP
door (`producer_api`) maps that outcome to each dialect's answer. The replay of dead
letters (`ingest.replay`) and the API-key format (`ingest.keys`) live here too, so the
CLI uses them without the HTTP package. Nothing here imports aiohttp.
"""
