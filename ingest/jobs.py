"""Replay jobs: a bulk replay by filter or a heal, run to its end with its counts kept in
PostgreSQL (`replay_jobs`), so any API process can answer for it and take it over."""

from __future__ import annotations

import logging

from ingest import heal as healing
from ingest.replay import ReplayCounts, ReplayDeps, ReplayError, replay_matching
from store import dead_letters as store
from store.dead_letters import DeadLetterFilter
from store.tenancy import tenant_connection

log = logging.getLogger(__name__)


async def run_job(
    deps: ReplayDeps, tenant: str, job_id: str, flt: DeadLetterFilter, dry_run: bool,
    kind: str = "replay",
) -> None:  # fmt: skip
    """Run a recorded job to its end: `replay` every pending dead letter matching `flt`,
    or `heal` the subject `flt.subject` (`ingest.heal`), received before `flt.time_to`."""

    async def record(step: ReplayCounts) -> None:
        async with tenant_connection(deps.pool, tenant) as conn:
            await store.update_job(conn, tenant, job_id, add=step.as_dict())

    async with tenant_connection(deps.pool, tenant) as conn:
        await store.update_job(conn, tenant, job_id, state="running")
    try:
        if kind == "heal":
            prepared = await healing.prepare(deps.pool, tenant, flt.subject or "",
                                             deps.contracts())  # fmt: skip
            await healing.heal(deps, prepared, dry_run=dry_run, progress=record, job_id=job_id,
                               until=flt.time_to)  # fmt: skip
        else:
            await replay_matching(deps, tenant, flt, dry_run=dry_run, progress=record,
                                  job_id=job_id)  # fmt: skip
    except ReplayError as exc:
        log.error("replay job %s failed: %s", job_id, exc)
        async with tenant_connection(deps.pool, tenant) as conn:
            await store.update_job(conn, tenant, job_id, state="failed", error=str(exc))
        return
    async with tenant_connection(deps.pool, tenant) as conn:
        await store.update_job(conn, tenant, job_id, state="done")
