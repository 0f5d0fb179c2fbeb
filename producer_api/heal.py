"""`POST /v1/dead-letters/heal`: replay the pending dead letters a corrected data contract
fixes, as a replay job (`ingest.heal`; the job's progress at `/v1/replay-jobs/{id}`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ingest import heal as healing
from ingest.replay import ReplayDeps, ReplayError
from producer_api.auth import authorize
from producer_api.content import receive
from producer_api.dead_letters import JOBS, REFUSAL_STATUS, replay_deps, too_many_jobs
from producer_api.errors import error_response
from store import dead_letters as store
from store.tenancy import tenant_connection

routes = web.RouteTableDef()

FIELDS = frozenset({"subject", "dry_run"})


def install(app: web.Application) -> None:
    """Add the heal route (the dead-letter routes' job runner runs its jobs)."""
    app.add_routes(routes)


@routes.post("/v1/dead-letters/heal")
async def heal_subject(request: web.Request) -> web.Response:
    """Start the heal of one subject; 202 with the job, the version and how many it checks."""
    principal = await authorize(request, "deadletters:replay")
    if (full := too_many_jobs(request, principal.tenant)) is not None:
        return full
    try:
        subject, dry_run = _spec(await receive(request))
    except ValueError as exc:
        return error_response(400, "bad_request", str(exc))
    deps = replay_deps(request)
    try:
        prepared = await healing.prepare(deps.pool, principal.tenant, subject, deps.contracts())
    except ReplayError as exc:
        return error_response(REFUSAL_STATUS[exc.refusal], exc.code, str(exc))
    job_id, total = await start_heal_job(request, deps, prepared, dry_run)
    contract = prepared.contract
    return web.json_response(
        {"job_id": job_id, "kind": "heal", "dry_run": dry_run, "subject": subject,
         "version": contract.version, "schema_id": contract.schema_id, "total": total,
         "status_url": f"/v1/replay-jobs/{job_id}"},
        status=202,
    )  # fmt: skip


async def start_heal_job(
    request: web.Request, deps: ReplayDeps, prepared: healing.Heal, dry_run: bool
) -> tuple[str, int]:
    """Record a heal job over the subject's candidates received until now and start it on
    this process's job runner; its id and how many candidates it will check."""
    tenant = prepared.tenant
    flt = prepared.filter(datetime.now(UTC))  # fixed here: a resumed job checks the same ones
    async with tenant_connection(deps.pool, tenant) as conn:
        total = await store.count_dead_letters(conn, tenant, flt)
        job_id = await store.create_job(conn, tenant, flt, dry_run, total, kind="heal")
    request.config_dict[JOBS].start(deps, tenant, job_id, flt, dry_run, "heal")
    return job_id, total


def _spec(sent: bytes) -> tuple[str, bool]:
    try:
        spec: Any = json.loads(sent) if sent else None
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise ValueError('the body must be a JSON object: {"subject": "…", "dry_run": false}')
    unknown = set(spec) - FIELDS
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)}; one of {sorted(FIELDS)}")
    subject, dry_run = spec.get("subject"), spec.get("dry_run", False)
    if not isinstance(subject, str) or not subject:
        raise ValueError("subject: a data-contract subject such as native.usage.api_call")
    if not isinstance(dry_run, bool):
        raise ValueError("dry_run: true or false")
    return subject, dry_run
