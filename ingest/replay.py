"""Replaying dead letters: the one core the HTTP routes and `sluice replay` share.

A replay re-enters the pipeline through `ingest.raw` as the dead letter's
tenant, family and route, through the same planner and validators as a new
request (`plan_events`), with `attempt + 1` and `replay_of` as lineage. A body
that is still invalid becomes a new dead letter with that lineage.

No duplicates: a dead letter is *claimed* in PostgreSQL before anything is
published, and marked `replayed` only after Kafka acknowledged the replay; a
failed publish releases the claim. The replay plans with the door's planner and
publishes through the door's entry (`ingest.entry.ingest`, given the plan): what a
replay adds is only its lineage and the checks between planning and publishing.
The replayed event keeps the dead letter's event id (or one derived from the
dead-letter id), so even a replay repeated after a crash between Kafka's
acknowledgement and the mark collapses into one event by id (newest wins). A
replay is refused when the event was deleted after the dead letter was received.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ingest.entry import Body, IngestDeps, IngestOptions, IngestRequest, ingest
from ingest.plan import IngestPlan, ReplayOf, RequestContext, plan_events
from ingest.publish import Overloaded, Publisher
from ingest.retention import expiry_cut
from ingest.split import Unsplittable, split_body, split_json_events
from runtime.kafka import ProduceFailed
from runtime.settings import Settings
from schemas.contracts import NO_CONTRACTS, Contracts
from schemas.families.dakkio import BATCH_BUCKET
from schemas.patching import PatchRefused, apply_patch
from schemas.topics import TopicNames
from schemas.validators import validator_for
from store import dead_letters as store
from store import retention as retention_store
from store.catalog import catalog_gap
from store.dead_letters import DeadLetterFilter, StoredDeadLetter
from store.retention import Policy
from store.tenancy import tenant_connection

log = logging.getLogger(__name__)

CLAIM_SECONDS = 120.0
"""How long a claim holds; well above the producer's delivery timeout."""


class Refusal(enum.Enum):
    """Why a replay cannot happen, in the core's terms (the door and the CLI map them)."""

    INVALID = "invalid"
    """The correction sent with it does not apply (a JSON Patch that fails)."""
    NOT_FOUND = "not_found"
    """No such dead letter for the tenant."""
    CONFLICT = "conflict"
    """Not pending, being replayed, or its event was deleted or stored anew since."""
    CANNOT_VALIDATE = "cannot_validate"
    """This build cannot validate it (an unknown family, a validator failing)."""
    UNAVAILABLE = "unavailable"
    """Kafka did not acknowledge; retry later."""
    TOO_LARGE = "too_large"
    """The corrected body would pass the body limit (a JSON Patch that grows it)."""
    UNPROCESSABLE = "unprocessable"
    """The correction passes a bound: too many operations, too deep, too slow."""


_PATCH_REFUSALS = {400: Refusal.INVALID, 413: Refusal.TOO_LARGE, 422: Refusal.UNPROCESSABLE}
"""`schemas.patching.PatchRefused`'s status, in the core's terms."""


class ReplayError(Exception):
    """A replay that cannot happen: `refusal` says what kind of reason, `code` which one."""

    def __init__(self, refusal: Refusal, code: str, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.code = code


@dataclass(frozen=True)
class ReplayDeps:
    """What a replay needs: the database, a publisher that waits for Kafka, topic names."""

    pool: AsyncConnectionPool
    publisher: Publisher
    topics: TopicNames
    partitions: int
    owner: str = field(default_factory=lambda: f"replayer-{uuid.uuid4()}")
    max_body_bytes: int = Settings.max_body_bytes
    max_events: int = Settings.max_events_per_request
    """Events one replayed body may split into: the door's cap (a corrected body of
    50,000 events once passed it)."""
    keep_events_days: float = Settings.retention_events_days
    """The default retention of events (`SLUICE_RETENTION_EVENTS_DAYS`): a replay of an
    event older than its retention allows is refused (`expired`)."""
    contracts: Callable[[], Contracts] = lambda: NO_CONTRACTS
    """The data contracts a replay is checked against, as at the door (the API's
    `ContractCache.current`); the stream checks it again on its own."""

    def entry(self) -> IngestDeps:
        """The ingest entry's dependencies, for publishing the replays' plans through it."""
        return IngestDeps(self.topics, self.partitions, self.publisher, _charged_already,
                          None, self.pool)  # fmt: skip


async def _charged_already(key: str, count: int, tenant: str | None = None) -> None:
    """A replay's events are charged by its caller (`replay_one`'s `admit`) before it is
    claimed, and a job's are the tenant's own dead letters: the entry charges nothing."""


_REPLAYED = IngestOptions(rate_limited=False)


@dataclass(frozen=True)
class ReplayResult:
    """What one replay did (or, dry, would do)."""

    dead_letter_id: str
    outcome: str
    """`replayed` or `still_invalid` (dry run: `valid` or `invalid`)."""
    event_ids: list[str]
    new_dead_letter_ids: list[str]
    reasons: list[dict[str, str]]
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def corrected_body(
    raw: bytes, body: bytes | None, patch: Any = None, max_bytes: int = Settings.max_body_bytes
) -> bytes:
    """The bytes to replay: the stored raw, a full replacement, or the raw with a JSON Patch
    (bounded: `schemas.patching`; the caller runs it off the event loop)."""
    if body is not None:
        return body
    if patch is None:
        return raw
    try:
        return apply_patch(raw, patch, max_bytes=max_bytes)
    except PatchRefused as exc:
        raise ReplayError(_PATCH_REFUSALS[exc.status], exc.code, str(exc)) from exc


def replay_context(dead: StoredDeadLetter, received_at: datetime | None = None) -> RequestContext:
    """The request a replay of `dead` stands for: same tenant, family, route, content type."""
    return RequestContext(
        tenant=dead.tenant,
        family=dead.family,
        route=dict(dead.route),
        content_type=dead.content_type,
        received_at=received_at or datetime.now(UTC),
        request_id=f"replay-{uuid.uuid4()}",
    )


def plan_replay(
    dead: StoredDeadLetter, body: bytes, topics: TopicNames, partitions: int,
    max_events: int = Settings.max_events_per_request, contracts: Contracts = NO_CONTRACTS,
) -> IngestPlan:  # fmt: skip
    """Validate and plan the replay of `dead` with `body` (pure: nothing is sent), with
    the tenant's data `contracts` applied as the door applies them.

    A dead letter holds one event, except a body that could not be split: its
    replay (usually corrected) is split as a JSON body again, into at most `max_events`.
    """
    raws: Sequence[bytes] = [body]
    if any(r.get("code") == "unsplittable_body" for r in dead.reasons):
        try:
            raws = split_body(split_json_events, body)
        except Unsplittable:
            raws = [body]
    if len(raws) > max_events:
        raise ReplayError(
            Refusal.TOO_LARGE,
            "too_many_events",
            f"the replayed body holds {len(raws)} events; at most {max_events}",
        )
    lineage = ReplayOf(dead.id, dead.attempt + 1, dead.event_id or dead.id)
    try:
        validate = validator_for(dead.family)
        return plan_events(replay_context(dead), raws, validate, topics, partitions,
                           replay=lineage, contracts=contracts)  # fmt: skip
    except Exception as exc:  # an unknown family, or a validator bug on these bytes
        log.exception("cannot validate the replay of dead letter %s", dead.id)
        message = f"cannot validate this dead letter: {type(exc).__name__}: {exc}"
        raise ReplayError(Refusal.CANNOT_VALIDATE, "cannot_validate", message) from exc


def summarize(dead: StoredDeadLetter, plan: IngestPlan, dry_run: bool) -> ReplayResult:
    """The result of a replay from its plan."""
    rejected = plan.rejected()
    valid = not rejected
    if dry_run:
        outcome = "valid" if valid else "invalid"
    else:
        outcome = "replayed" if valid else "still_invalid"
    return ReplayResult(
        dead_letter_id=dead.id,
        outcome=outcome,
        event_ids=[r.event_id for r in plan.results if r.accepted and r.event_id],
        new_dead_letter_ids=[r.dead_letter_id for r in rejected if r.dead_letter_id],
        reasons=[v.as_dict() for r in rejected for v in r.reasons],
        dry_run=dry_run,
    )


async def get_or_not_found(deps: ReplayDeps, tenant: str, dead_letter_id: str) -> StoredDeadLetter:
    """`tenant`'s dead letter, or ReplayError NOT_FOUND (also for another tenant's id)."""
    async with tenant_connection(deps.pool, tenant) as conn:
        dead = await store.get_dead_letter(conn, tenant, dead_letter_id)
    if dead is None:
        raise ReplayError(Refusal.NOT_FOUND, "not_found", "no such dead letter")
    return dead


async def replay_one(
    deps: ReplayDeps,
    tenant: str,
    dead_letter_id: str,
    *,
    body: bytes | None = None,
    patch: Any = None,
    dry_run: bool = False,
    admit: Callable[[int], Awaitable[None]] | None = None,
) -> ReplayResult:
    """Replay one dead letter (optionally corrected); dry: only say what would happen.

    `admit` charges the events it would publish to the caller's event budget (the
    door's `KeyRateLimiter`), before anything is claimed or sent."""
    dead = await get_or_not_found(deps, tenant, dead_letter_id)
    replayed_body = await asyncio.to_thread(corrected_body, dead.raw, body, patch,
                                            deps.max_body_bytes)  # fmt: skip
    plan = plan_replay(dead, replayed_body, deps.topics, deps.partitions, deps.max_events,
                       deps.contracts())  # fmt: skip
    if plan.accepted and dead.family in _CATALOGED:
        async with tenant_connection(deps.pool, tenant) as conn:
            gap = await _catalog_gap(conn, tenant, dead, replayed_body)
        if gap is not None:
            raise ReplayError(Refusal.CONFLICT, "not_in_catalog", gap)
    if dry_run:
        return summarize(dead, plan, dry_run=True)
    if admit is not None:
        await admit(len(plan.results))
    async with tenant_connection(deps.pool, tenant) as conn:
        claimed = await store.claim_one(conn, tenant, dead_letter_id, deps.owner, CLAIM_SECONDS)
    if claimed is None:
        await _explain_unclaimable(deps, tenant, dead_letter_id)
    (result,) = await publish_and_mark(deps, tenant, [(dead, plan)], single=True)
    return result


async def replay_record(
    deps: ReplayDeps, dead: StoredDeadLetter, *, dry_run: bool = False
) -> ReplayResult | None:
    """Replay a dead letter read from `events.dlq` instead of the database.

    When the database holds it, the same claim applies, and None means it is no
    longer pending there (or its event was deleted since); when it does not, the
    replay is published unclaimed, idempotent by event id.
    """
    plan = plan_replay(dead, dead.raw, deps.topics, deps.partitions,
                       contracts=deps.contracts())  # fmt: skip
    if dry_run:
        return summarize(dead, plan, dry_run=True)
    async with tenant_connection(deps.pool, dead.tenant) as conn:
        claimed = await store.claim_one(conn, dead.tenant, dead.id, deps.owner, CLAIM_SECONDS)
        stored = claimed or await store.get_dead_letter(conn, dead.tenant, dead.id)
    if stored is not None and claimed is None:
        return None
    try:
        (result,) = await publish_and_mark(deps, dead.tenant, [(dead, plan)], single=True)
    except ReplayError as exc:
        if exc.code in _BLOCKED:
            return None
        raise
    return result


async def _explain_unclaimable(deps: ReplayDeps, tenant: str, dead_letter_id: str) -> None:
    dead = await get_or_not_found(deps, tenant, dead_letter_id)
    if dead.status != "pending":
        raise ReplayError(
            Refusal.CONFLICT, "not_pending", f"this dead letter is already {dead.status}"
        )
    raise ReplayError(
        Refusal.CONFLICT, "replay_in_progress", "another replay of this dead letter is running"
    )


async def publish_and_mark(
    deps: ReplayDeps,
    tenant: str,
    planned: Sequence[tuple[StoredDeadLetter, IngestPlan]],
    job_id: str | None = None,
    *,
    single: bool = False,
) -> list[ReplayResult]:
    """Publish claimed replays; mark them replayed once Kafka acknowledged, else release.

    With `single` (one replay asked for by id), raises ReplayError CONFLICT when its event
    was deleted, or stored in a newer version, after the rejection, or its catalog entry
    is missing; a job's batch releases those (`skipped`), whatever its size (a batch of
    one used to fail its whole job here).
    """
    blocked = await _blocked(deps, tenant, planned)
    if blocked:
        async with tenant_connection(deps.pool, tenant) as conn:
            await store.release(conn, tenant, deps.owner, list(blocked))
        if single:
            code = next(iter(blocked.values()))
            raise ReplayError(Refusal.CONFLICT, code, _BLOCKED[code])
    gone = set(blocked)
    go = [(d, p) for d, p in planned if d.dead_letter_id not in gone]
    try:
        if go:  # the batch's plans, published at once through the one ingest entry
            merged = IngestPlan([m for _d, p in go for m in p.messages],
                                [r for _d, p in go for r in p.results])  # fmt: skip
            request = IngestRequest(replay_context(go[0][0]), Body(b""), options=_REPLAYED,
                                    plan=merged)  # fmt: skip
            await ingest(deps.entry(), request)
    except BaseException:
        async with tenant_connection(deps.pool, tenant) as conn:
            await store.release(conn, tenant, deps.owner, [d.dead_letter_id for d, _p in go])
        raise
    results = [summarize(d, p, dry_run=False) for d, p in go]
    outcomes = [
        (d.dead_letter_id, _outcome_json(r, job_id)) for (d, _p), r in zip(go, results, strict=True)
    ]
    async with tenant_connection(deps.pool, tenant) as conn:
        await store.mark_replayed(conn, tenant, deps.owner, outcomes)
    return results


def _outcome_json(result: ReplayResult, job_id: str | None = None) -> dict[str, Any]:
    return {
        "outcome": result.outcome,
        "event_ids": result.event_ids,
        "new_dead_letter_ids": result.new_dead_letter_ids,
        "job_id": job_id,
    }


_BLOCKED = {
    "not_in_catalog": "its dataset, bucket or data source is not in the catalog",
    "event_deleted": "the event was deleted after this rejection",
    "superseded": "a newer version of the event was stored after this rejection",
    "expired": "the event is older than the tenant's retention policy keeps",
}


async def _blocked(
    deps: ReplayDeps, tenant: str, planned: Sequence[tuple[StoredDeadLetter, IngestPlan]]
) -> dict[uuid.UUID, str]:
    """Claimed dead letters whose event was deleted, or stored anew, after the rejection.

    A replay is newer than anything before it in the partition, so it would bring
    a deleted event back or overwrite data the producer sent since.
    """
    candidates = [
        (d.family, r.event_id, d.received_at)
        for d, p in planned
        for r in p.results
        if r.accepted and r.event_id
    ]
    blocked: dict[uuid.UUID, str] = {}
    async with tenant_connection(deps.pool, tenant) as conn:
        deleted = await store.deleted_after(conn, tenant, candidates)
        newer = await store.superseded_after(conn, tenant, candidates)
        kept = await retention_store.policies(conn, tenant)
        for dead, plan in planned:
            if (plan.accepted and dead.family in _CATALOGED
                    and await _catalog_gap(conn, tenant, dead, dead.raw)):  # fmt: skip
                blocked[dead.dead_letter_id] = "not_in_catalog"
    now = datetime.now(UTC)
    for dead, plan in planned:
        keys = {(dead.family, r.event_id) for r in plan.results if r.accepted}
        if any(_expired(kept, deps.keep_events_days, dead.family, r.replayed, now)
               for r in plan.results if r.accepted and r.replayed):  # fmt: skip
            blocked[dead.dead_letter_id] = "expired"
        elif keys & deleted:
            blocked[dead.dead_letter_id] = "event_deleted"
        elif keys & newer:
            blocked[dead.dead_letter_id] = "superseded"
    return blocked


def _expired(
    kept: Sequence[Policy], default_days: float, family: str,
    replayed: tuple[str, datetime] | None, now: datetime,
) -> bool:  # fmt: skip
    if replayed is None:
        return False
    cut = expiry_cut(kept, default_days, family, replayed[0], now)
    return cut is not None and replayed[1] < cut


_CATALOGED = frozenset({"baselime", "dakkio"})
"""Families whose events need the catalog: a dataset, a bucket and data sources."""


async def _catalog_gap(
    conn: AsyncConnection[Any], tenant: str, dead: StoredDeadLetter, body: bytes
) -> str | None:
    """What the catalog lacks for a replay of `dead` as `body` (the door's check: a
    Baselime dataset, a dakkio bucket and its data sources), or None."""
    if dead.family == "baselime":
        return await catalog_gap(conn, tenant, dataset=dead.route.get("dataset", ""))
    if dead.family != "dakkio":
        return None
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None  # not a point: the validator refused it, nothing is published
    points = [
        p for p in (decoded if isinstance(decoded, list) else [decoded]) if isinstance(p, dict)
    ]
    bucket = dead.route.get(BATCH_BUCKET) or next(
        (p["bucketId"] for p in points if isinstance(p.get("bucketId"), str)), None
    )
    sources = {p["dataSourceId"] for p in points if isinstance(p.get("dataSourceId"), str)}
    if bucket is None:
        return None
    return await catalog_gap(
        conn, tenant, bucket=bucket.lower(), sources={s.lower() for s in sources}
    )


@dataclass
class ReplayCounts:
    """Running totals of a bulk replay (dry run: `replayed` counts would-be-valid ones)."""

    replayed: int = 0
    still_invalid: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def done(self) -> int:
        return self.replayed + self.still_invalid + self.failed + self.skipped

    def add(self, other: ReplayCounts) -> None:
        for name in ("replayed", "still_invalid", "failed", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("replayed", "still_invalid", "failed", "skipped")}


Progress = Callable[[ReplayCounts], Awaitable[None]]
"""Called after each batch with that batch's counts."""


async def replay_matching(
    deps: ReplayDeps,
    tenant: str,
    flt: DeadLetterFilter,
    *,
    dry_run: bool = False,
    batch_size: int = 200,
    progress: Progress | None = None,
    job_id: str | None = None,
) -> ReplayCounts:
    """Replay every pending dead letter of `tenant` matching `flt`, a claimed batch at a time.

    Concurrent callers with the same filter take disjoint batches. Kafka not
    acknowledging a batch releases it and raises ReplayError UNAVAILABLE. Only dead
    letters received before the call count, so the new dead letters a still
    invalid replay makes are not replayed again by the same call. `job_id` (the replay job
    running it, if any) is kept in each dead letter's outcome, for the event's history.
    """
    started = datetime.now(UTC)
    until = min(flt.time_to, started) if flt.time_to else started
    flt = replace(flt, status="pending", time_to=until)
    if dry_run:
        return await _dry_run_matching(deps, tenant, flt, batch_size, progress)

    async def step(rows: Sequence[StoredDeadLetter], given_up: list[uuid.UUID]) -> ReplayCounts:
        return await _replay_claimed(deps, tenant, rows, given_up, job_id)

    return await drain_claimed(deps, tenant, flt, batch_size, step, progress)


ClaimedStep = Callable[[Sequence[StoredDeadLetter], list[uuid.UUID]], Awaitable[ReplayCounts]]
"""Handles one claimed batch; adds the ids it leaves pending to the list it is given."""


async def drain_claimed(
    deps: ReplayDeps, tenant: str, flt: DeadLetterFilter, batch_size: int, step: ClaimedStep,
    progress: Progress | None = None,
) -> ReplayCounts:  # fmt: skip
    """Claim `flt`'s pending dead letters a batch at a time and hand each batch to `step`,
    until none is left that this caller has not given up on; the counts of every batch."""
    total = ReplayCounts()
    given_up: list[uuid.UUID] = []
    while True:
        async with tenant_connection(deps.pool, tenant) as conn:
            rows = await store.claim_batch(
                conn, tenant, flt, deps.owner, CLAIM_SECONDS, batch_size, given_up
            )
        if not rows:
            return total
        counts = await step(rows, given_up)
        total.add(counts)
        if progress is not None:
            await progress(counts)


async def _replay_claimed(
    deps: ReplayDeps,
    tenant: str,
    rows: Sequence[StoredDeadLetter],
    given_up: list[uuid.UUID],
    job_id: str | None = None,
) -> ReplayCounts:
    counts = ReplayCounts()
    planned: list[tuple[StoredDeadLetter, IngestPlan]] = []
    contracts = deps.contracts()
    for dead in rows:
        try:
            planned.append((dead, plan_replay(dead, dead.raw, deps.topics, deps.partitions,
                                              contracts=contracts)))  # fmt: skip
        except ReplayError:  # cannot be validated by this build: leave it pending
            counts.failed += 1
            given_up.append(dead.dead_letter_id)
    try:
        results = await publish_and_mark(deps, tenant, planned, job_id)
    except (ProduceFailed, Overloaded) as exc:
        raise ReplayError(
            Refusal.UNAVAILABLE, "kafka_unavailable", f"Kafka did not acknowledge: {exc}"
        ) from exc
    finally:
        if counts.failed:
            async with tenant_connection(deps.pool, tenant) as conn:
                await store.release(conn, tenant, deps.owner, given_up)
    done = {r.dead_letter_id for r in results}
    for dead, _plan in planned:
        if dead.id not in done:
            counts.skipped += 1
            given_up.append(dead.dead_letter_id)
    counts.replayed += sum(1 for r in results if r.outcome == "replayed")
    counts.still_invalid += sum(1 for r in results if r.outcome == "still_invalid")
    return counts


async def _dry_run_matching(
    deps: ReplayDeps, tenant: str, flt: DeadLetterFilter, batch_size: int, progress: Progress | None
) -> ReplayCounts:
    total = ReplayCounts()
    cursor: str | None = None
    while True:
        async with tenant_connection(deps.pool, tenant) as conn:
            rows, cursor = await store.find_dead_letters(
                conn, tenant, flt, limit=batch_size, cursor=cursor
            )
        step = ReplayCounts()
        contracts = deps.contracts()
        for dead in rows:
            try:
                plan = plan_replay(dead, dead.raw, deps.topics, deps.partitions,
                                   contracts=contracts)  # fmt: skip
                result = summarize(dead, plan, True)
            except ReplayError:
                step.failed += 1
                continue
            step.replayed += result.outcome == "valid"
            step.still_invalid += result.outcome == "invalid"
        total.add(step)
        if progress is not None:
            await progress(step)
        if cursor is None:
            return total
