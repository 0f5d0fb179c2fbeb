"""The PostgreSQL access the API and the CLI run: events and dead letters read and
claimed, API keys, the catalog, deletion receipts, the door's `replaced` lookup, and
the tenant-scoped connection under row-level security.

The sink process writes through its own code in `sinks/`, which also owns the
database schema and its migrations; `store` imports only `runtime`, `schemas` and
third-party libraries, never a process package."""
