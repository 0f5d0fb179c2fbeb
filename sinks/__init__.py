"""Kafka → PostgreSQL: the sink consumers, the database schema and its migrations,
and the query and delete functions the API calls."""
