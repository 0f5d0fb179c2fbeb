"""The HTTP front door: routes per API family, auth, limits, request parsing, producing to
Kafka, and the query and delete routes."""
