"""The wire contract: Avro schemas and codec, topic descriptors, identities, validators.

Nothing in this package does I/O.
"""
