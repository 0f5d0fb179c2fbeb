"""Kafka → PostgreSQL: the sink consumers, the database schema and its migrations.

The PostgreSQL the API and the CLI run lives in `store/`."""
