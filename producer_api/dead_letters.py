"""Dead-letter routes: list, read, replay (one or by filter, as a job), discard.

Tenant-scoped: the tenant comes from the key, and another tenant's dead letter
answers 404 exactly like a missing one. Reads need `deadletters:read`; replay
and discard need `deadletters:replay`. The replay itself is `ingest.replay`,
shared with `sluice replay`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from ingest.jobs import run_job
from ingest.replay import Refusal, ReplayDeps, ReplayError, replay_one
from producer_api.accept import door_of
from producer_api.auth import authorize
from producer_api.content import receive
from producer_api.errors import error_response
from schemas.identity import FAMILIES
from schemas.nesting import too_deep_indexes
from schemas.patching import PATCH_DEPTH
from store import dead_letters as store
from store.dead_letters import STAGES, STATUSES, DeadLetterFilter, StoredDeadLetter
from store.queries import BadCursor
from store.tenancy import tenant_connection

log = logging.getLogger(__name__)

MAX_PAGE = 1000
MAX_RUNNING_JOBS = 2
"""Replay jobs one API process runs at once; more wait their turn."""
MAX_QUEUED_JOBS = 32
"""Jobs one API process holds (running or waiting) before it answers 429."""
MAX_TENANT_JOBS = 4
"""Jobs of one tenant one API process holds (running or waiting); one of them runs at a
time, so another tenant's job never waits behind a queue of the first one's."""
JSON_PATCH = "application/json-patch+json"
STALE_JOB_SECONDS = 120.0
"""A running job without a heartbeat for this long lost its process; a lookup resumes it."""
JOB_FILTERS = frozenset(
    {"family", "stage", "reason", "from", "to", "q", "since", "until", "contains"}
)
"""What a replay job's JSON body may filter on (it always takes pending dead letters)."""

REFUSAL_STATUS = {
    Refusal.INVALID: 400,
    Refusal.NOT_FOUND: 404,
    Refusal.CONFLICT: 409,
    Refusal.CANNOT_VALIDATE: 422,
    Refusal.UNAVAILABLE: 503,
    Refusal.TOO_LARGE: 413,
    Refusal.UNPROCESSABLE: 422,
}
"""The HTTP status of each reason a replay is refused for."""

routes = web.RouteTableDef()


@dataclass
class JobRunner:
    """The replay jobs this process runs in the background, bounded in number: in all,
    per tenant, and running at once (one per tenant)."""

    running: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_RUNNING_JOBS))
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    held: Counter[str] = field(default_factory=Counter)
    turns: dict[str, asyncio.Lock] = field(default_factory=dict)

    def full_for(self, tenant: str) -> bool:
        """True when a new job of `tenant` must wait for a 429's Retry-After."""
        return len(self.tasks) >= MAX_QUEUED_JOBS or self.held[tenant] >= MAX_TENANT_JOBS

    def start(self, deps: ReplayDeps, tenant: str, job_id: str, flt: DeadLetterFilter,
              dry_run: bool, kind: str = "replay") -> None:  # fmt: skip
        turn = self.turns.setdefault(tenant, asyncio.Lock())

        async def run() -> None:
            try:
                async with turn, self.running:  # the tenant's turn first, then a slot
                    await run_job(deps, tenant, job_id, flt, dry_run, kind)
            except Exception:
                log.exception("replay job %s crashed", job_id)
            finally:
                self.held[tenant] -= 1
                if not self.held[tenant]:
                    del self.held[tenant], self.turns[tenant]

        self.held[tenant] += 1
        task = asyncio.get_running_loop().create_task(run(), name=f"replay-job-{job_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


JOBS = web.AppKey("replay_jobs", JobRunner)


def too_many_jobs(request: web.Request, tenant: str) -> web.Response | None:
    """The 429 a new job of `tenant` gets while this process holds too many; else None."""
    if not request.config_dict[JOBS].full_for(tenant):
        return None
    return error_response(429, "too_many_jobs", "too many replay jobs; retry later",
                          headers={"Retry-After": "5"})  # fmt: skip


async def _jobs_context(app: web.Application) -> AsyncIterator[None]:
    app[JOBS] = runner = JobRunner()
    yield
    for task in list(runner.tasks):
        task.cancel()
    await asyncio.gather(*runner.tasks, return_exceptions=True)


def install(app: web.Application) -> None:
    """Add the dead-letter routes and the background job runner to the front door."""
    app.cleanup_ctx.append(_jobs_context)
    app.add_routes(routes)


def replay_deps(request: web.Request) -> ReplayDeps:
    """The replay core's dependencies from the door's resources (its contracts too)."""
    door = door_of(request)
    settings = door.settings
    return ReplayDeps(door.pool, door.publisher, door.topics, settings.partitions,
                      max_body_bytes=settings.max_body_bytes,
                      max_events=settings.max_events_per_request,
                      keep_events_days=settings.retention_events_days,
                      contracts=door.core.current_contracts)  # fmt: skip


@routes.get("/v1/dead-letters")
async def list_dead_letters(request: web.Request) -> web.Response:
    """A page of the caller's dead letters, oldest first, with filters and a cursor."""
    principal = await authorize(request, "deadletters:read")
    try:
        flt = _filter(
            dict(request.query), door_of(request).settings.dead_letter_search_window_seconds
        )
        limit = min(int(request.query.get("limit", "100")), MAX_PAGE)
        if limit < 1:
            raise ValueError("limit must be at least 1")
    except ValueError as exc:
        return error_response(400, "bad_query", str(exc))
    try:
        async with tenant_connection(door_of(request).pool, principal.tenant) as conn:
            rows, cursor = await store.find_dead_letters(
                conn, principal.tenant, flt, limit=limit, cursor=request.query.get("cursor")
            )
    except BadCursor as exc:
        return error_response(400, "bad_cursor", str(exc))
    return web.json_response({"dead_letters": [_summary(r) for r in rows], "next_cursor": cursor})


@routes.get("/v1/dead-letters/summary")
async def summarize_dead_letters(request: web.Request) -> web.Response:
    """The caller's dead letters matching the listing's filters, grouped by reason and
    family, with counts, pending, first and last, and a trend per hour over 24 h."""
    principal = await authorize(request, "deadletters:read")
    door = door_of(request)
    try:
        flt = _filter(dict(request.query), door.settings.dead_letter_search_window_seconds)
    except ValueError as exc:
        return error_response(400, "bad_query", str(exc))
    async with tenant_connection(door.pool, principal.tenant) as conn:
        found = await store.summarize_dead_letters(conn, principal.tenant, flt)
    return web.json_response(found)


@routes.get("/v1/dead-letters/{id}")
async def show_dead_letter(request: web.Request) -> web.Response:
    """One dead letter: JSON with the raw body in base64, or the raw bytes themselves."""
    principal = await authorize(request, "deadletters:read")
    async with tenant_connection(door_of(request).pool, principal.tenant) as conn:
        dead = await store.get_dead_letter(conn, principal.tenant, request.match_info["id"])
    if dead is None:
        return error_response(404, "not_found", "no such dead letter")
    if "application/octet-stream" in request.headers.get("Accept", ""):
        return web.Response(
            body=dead.raw,
            content_type="application/octet-stream",  # never sniffed into HTML by a browser:
            headers={"X-Sluice-Content-Type": dead.content_type,
                     "X-Content-Type-Options": "nosniff"},
        )  # fmt: skip
    return web.json_response({**_summary(dead), "raw_base64": base64.b64encode(dead.raw).decode()})


@routes.post("/v1/dead-letters/{id}/replay")
async def replay_dead_letter(request: web.Request) -> web.Response:
    """Replay one dead letter, as stored or corrected (full body, or JSON Patch)."""
    principal = await authorize(request, "deadletters:replay")
    try:
        dry_run = _flag(request.query.get("dry_run"))
    except ValueError as exc:
        return error_response(400, "bad_parameter", f"dry_run: {exc}")
    sent = await receive(request)
    body: bytes | None = None
    patch: Any = None
    if sent and request.content_type == JSON_PATCH:
        if too_deep_indexes([sent], PATCH_DEPTH):  # before decoding, which recurses
            return error_response(422, "too_deep", "the JSON Patch nests too deeply")
        try:
            patch = json.loads(sent)
        except ValueError as exc:
            return error_response(400, "bad_patch", f"the JSON Patch is not JSON: {exc}")
    elif sent:
        body = sent
    try:
        result = await replay_one(
            replay_deps(request), principal.tenant, request.match_info["id"],
            body=body, patch=patch, dry_run=dry_run,
            admit=functools.partial(door_of(request).limits.admit_events, principal.prefix,
                                    tenant=principal.tenant),
        )  # fmt: skip
    except ReplayError as exc:
        return error_response(REFUSAL_STATUS[exc.refusal], exc.code, str(exc))
    status = 202 if result.outcome == "replayed" else 200
    return web.json_response(result.as_dict(), status=status)


@routes.post("/v1/dead-letters/replay")
async def replay_by_filter(request: web.Request) -> web.Response:
    """Start a replay job over every pending dead letter matching a filter; 202 with its id."""
    principal = await authorize(request, "deadletters:replay")
    runner = request.app[JOBS]
    if (full := too_many_jobs(request, principal.tenant)) is not None:
        return full
    try:
        sent = await receive(request)
        spec = json.loads(sent) if sent else {}
        if not isinstance(spec, dict):
            raise ValueError("the body must be a JSON object of filters")
        dry_run = _json_flag(spec.pop("dry_run", False)) or _flag(request.query.get("dry_run"))
        spec.pop("tenant", None)  # the tenant comes only from the key
        unknown = set(spec) - JOB_FILTERS
        if unknown:
            raise ValueError(f"unknown filter {sorted(unknown)}; one of {sorted(JOB_FILTERS)}")
        window = door_of(request).settings.dead_letter_search_window_seconds
        flt = _filter({k: str(v) for k, v in spec.items()}, window)
    except ValueError as exc:
        return error_response(400, "bad_filter", str(exc))
    now = datetime.now(UTC)  # fixed here, so a resumed job covers the same dead letters
    until = min(flt.time_to, now) if flt.time_to else now
    flt = DeadLetterFilter(**{**vars(flt), "status": "pending", "time_to": until})
    deps = replay_deps(request)
    async with tenant_connection(deps.pool, principal.tenant) as conn:
        total = await store.count_dead_letters(conn, principal.tenant, flt)
        job_id = await store.create_job(conn, principal.tenant, flt, dry_run, total)
    runner.start(deps, principal.tenant, job_id, flt, dry_run)
    return web.json_response(
        {"job_id": job_id, "total": total, "status_url": f"/v1/replay-jobs/{job_id}"}, status=202
    )


@routes.get("/v1/replay-jobs/{id}")
async def show_job(request: web.Request) -> web.Response:
    """A replay job's state, counts and progress (from PostgreSQL: any API process answers).

    A job whose runner stopped beating (its API process died) is taken over here.
    """
    principal = await authorize(request, "deadletters:read")
    job_id = request.match_info["id"]
    deps = replay_deps(request)
    async with tenant_connection(deps.pool, principal.tenant) as conn:
        stale = await store.adopt_stale_job(conn, principal.tenant, job_id, STALE_JOB_SECONDS)
        job = stale or await store.get_job(conn, principal.tenant, job_id)
    if job is None:
        return error_response(404, "not_found", "no such replay job (or it finished, pruned)")
    if stale is not None:
        log.warning("replay job %s was abandoned by its runner; resuming it here", job_id)
        flt = DeadLetterFilter.from_json(stale["filter"])
        request.app[JOBS].start(deps, principal.tenant, job_id, flt, stale["dry_run"],
                                stale["kind"])  # fmt: skip
    return web.json_response(job_json(job))


@routes.post("/v1/dead-letters/{id}/discard")
async def discard_dead_letter(request: web.Request) -> web.Response:
    """Mark a pending dead letter discarded: it will not be replayed."""
    principal = await authorize(request, "deadletters:replay")
    dead_letter_id = request.match_info["id"]
    async with tenant_connection(door_of(request).pool, principal.tenant) as conn:
        status = await store.discard(conn, principal.tenant, dead_letter_id)
    if status is None:
        return error_response(404, "not_found", "no such dead letter")
    if status != "discarded":
        return error_response(409, "not_pending", f"this dead letter is {status}")
    return web.json_response({"dead_letter_id": dead_letter_id, "status": status})


def job_json(job: dict[str, Any]) -> dict[str, Any]:
    """A replay job as JSON, with its progress as a fraction."""
    done = sum(job[k] for k in ("replayed", "still_invalid", "failed", "skipped"))
    stamps = ("created_at", "started_at", "finished_at", "heartbeat_at")
    return {
        "job_id": str(job["job_id"]),
        "kind": job["kind"],
        "state": job["state"],
        "dry_run": job["dry_run"],
        "filter": job["filter"],
        "counts": {k: job[k] for k in store.JOB_COUNTS},
        "progress": 1.0 if job["state"] == "done" else round(done / max(job["total"], 1), 4),
        "error": job["error"],
        **{k: job[k].isoformat() if job[k] else None for k in stamps},
    }


def _summary(dead: StoredDeadLetter) -> dict[str, Any]:
    return {
        "dead_letter_id": dead.id,
        "family": dead.family,
        "route": dead.route,
        "content_type": dead.content_type,
        "stage": dead.stage,
        "reasons": dead.reasons,
        "received_at": dead.received_at.isoformat(),
        "event_id": dead.event_id,
        "attempt": dead.attempt,
        "replay_of": str(dead.replay_of) if dead.replay_of else None,
        "source": {"topic": dead.source_topic, "partition": dead.source_partition,
                   "offset": dead.source_offset},
        "status": dead.status,
        "outcome": dead.outcome,
        "size": len(dead.raw),
    }  # fmt: skip


def _filter(q: dict[str, str], text_window: float = 0.0) -> DeadLetterFilter:
    """Filters from query parameters (or a job's JSON body); ValueError on a bad one.

    `q` reads every raw body in its range, on a database all tenants share: it covers at
    most `text_window` seconds of received time (`SLUICE_DEAD_LETTER_SEARCH_WINDOW_SECONDS`;
    0: no bound). Without `from` it starts that long before `to` (or now); a wider
    `from`…`to` is refused, so a search of a longer past goes window by window."""
    q = _plain_names(q)
    for name, allowed in (("family", FAMILIES), ("stage", STAGES), ("status", STATUSES)):
        if name in q and q[name] not in allowed:
            raise ValueError(f"unknown {name} {q[name]!r}; one of {', '.join(allowed)}")
    time_from, time_to, text = _time(q.get("from")), _time(q.get("to")), q.get("q") or None
    if text is not None and text_window > 0:
        window = timedelta(seconds=text_window)
        end = time_to or datetime.now(UTC)
        time_from = time_from or end - window
        if end - time_from > window:
            raise ValueError(
                f"q searches at most {text_window:g} s of received time"
                " (SLUICE_DEAD_LETTER_SEARCH_WINDOW_SECONDS); narrow from/to"
            )
    return DeadLetterFilter(
        family=q.get("family"),
        stage=q.get("stage"),
        reason=q.get("reason"),
        status=q.get("status"),
        time_from=time_from,
        time_to=time_to,
        text=text,
    )


ALIASES = {"since": "from", "until": "to", "contains": "q"}
"""Other names of the time and body filters (the console's): each means the same as its
short name, and naming both is refused."""


def _plain_names(q: dict[str, str]) -> dict[str, str]:
    """`q` with each alias replaced by its short name (`ALIASES`)."""
    out = {k: v for k, v in q.items() if k not in ALIASES}
    for alias, name in ALIASES.items():
        if alias in q:
            if name in q:
                raise ValueError(f"{alias} and {name} are the same filter; give one")
            out[name] = q[alias]
    return out


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)  # epoch seconds, as figures give them
    except ValueError:
        pass
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_TRUE, _FALSE = ("1", "true", "yes"), ("", "0", "false", "no")


def _flag(value: str | None) -> bool:
    """A query flag: 1/true/yes or 0/false/no (absent: false); anything else is refused, so
    `dry_run=ture` is not silently a real replay."""
    text = (value or "").lower()
    if text not in _TRUE + _FALSE:
        raise ValueError(f"expected true or false, got {value!r}")
    return text in _TRUE


def _json_flag(value: object) -> bool:
    """A JSON flag: true or false only (the string "false" is not a boolean)."""
    if not isinstance(value, bool):
        raise ValueError(f"dry_run must be true or false, got {json.dumps(value)}")
    return value
