"""Where each of Sluice's tables lives on a distributed PostgreSQL (Citus): the one list.

Every table of the schema is classified here, and `tests/store/test_tenant_layout.py`
fails for a table that is not, so a migration that adds one must decide:

* **Tenant tables** are distributed by `tenant`, all in one colocation group (with
  `events`), so every statement of one tenant runs on one node. Their primary key and
  every index lead with `tenant`, and a foreign key between two of them includes it
  (migration 0018; the test checks the catalog).
* **Reference tables** are small and replicated to every node, so any table may join
  them: `api_keys` and `console_sessions`, each looked up by a secret (a key's prefix, a
  session token's hash) before the tenant is known.
* **Local tables** stay ordinary tables on the coordinator: Sluice's own bookkeeping,
  never joined with a tenant table (the registry's global schema ids and its generation
  trigger, the consumers' lag, the migrations' records).

`citus_statements` turns the lists into what an operator runs once after `sluice
migrate` (docs/design.md#running-on-citus).
"""

from __future__ import annotations

DISTRIBUTION_COLUMN = "tenant"

COLOCATION_ROOT = "events"

TENANT_TABLES: tuple[str, ...] = (
    "events",
    "event_deletions",
    "filter_deletions",
    "dead_letters",
    "replay_jobs",
    "deletions",
    "deletion_steps",
    "baselime_datasets",
    "dakkio_buckets",
    "dakkio_data_sources",
    "ingest_envelopes",
    "event_history",
    "door_counts",
    "sink_latency",
    "breaker_states",
    "retention_policies",
    "retention_runs",
)
"""Distributed by `tenant`, colocated with `events`; a table referenced by another's
foreign key comes before it (dakkio_buckets before dakkio_data_sources)."""

REFERENCE_TABLES: tuple[str, ...] = ("api_keys", "console_sessions")
"""Replicated to every node. Each is found by a secret before its tenant is known, so
each keeps a primary key without the tenant: a presented key by its prefix
(`sluice_find_api_key`, and a prefix is unique across tenants), a console session by its
token's hash (`sluice_console_session`, which joins it with its key)."""

LOCAL_TABLES: tuple[str, ...] = (
    "registry_schemas",
    "registry_versions",
    "registry_config",
    "consumer_lag",
    "_yoyo_migration",
    "_yoyo_log",
    "_yoyo_version",
    "yoyo_lock",
)
"""Left on the coordinator. The registry's schema ids are global (ids below 1000 are
Sluice's own, shared by every tenant) and a statement trigger counts its changes;
`consumer_lag` is the pipeline's, per consumer group, with no tenant; the `yoyo` tables
are the migrations'. None is ever joined with a tenant table."""


def citus_statements() -> list[str]:
    """The statements that distribute Sluice's tables on Citus, in the order to run them:
    reference tables first, then `events`, then the rest colocated with it."""
    out = [f"SELECT create_reference_table('{t}');" for t in REFERENCE_TABLES]
    for table in TENANT_TABLES:
        colocate = "none" if table == COLOCATION_ROOT else COLOCATION_ROOT
        out.append(
            f"SELECT create_distributed_table('{table}', '{DISTRIBUTION_COLUMN}',"
            f" colocate_with => '{colocate}');"
        )
    return out
