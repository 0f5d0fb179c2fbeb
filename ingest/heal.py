"""Dead letters that heal (issue 17 part 3): a corrected data contract replays what it fixes.

A *heal* of a subject (`native.usage.api_call`, `dakkio.<dataSourceId>`, …) takes the
tenant's pending dead letters that a `schema_violation` of that subject refused, checks
each against the subject's **current** version (read from the registry when the heal
starts, not from a cache that may lag a second behind) and every other contract in force,
and then:

* replays those that pass now through the replay core (`ingest.replay`): claimed before
  anything is published, marked `replayed` only after Kafka acknowledged, lineage kept,
  blocked when the event was deleted or stored anew since: exactly once;
* leaves the rest pending with their reasons replaced by what the current version says
  (no new dead letter is made for them, unlike a plain replay of an invalid body).

`would_heal` counts, without changing anything, how many would be replayed: the registry
answers it when a version is registered, within a time bound (`WOULD_HEAL_SECONDS`);
past it the count continues as a dry-run heal job.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool

from ingest import registry
from ingest.plan import IngestPlan
from ingest.publish import Overloaded
from ingest.replay import (
    Progress,
    Refusal,
    ReplayCounts,
    ReplayDeps,
    ReplayError,
    drain_claimed,
    plan_replay,
    publish_and_mark,
)
from runtime.kafka import ProduceFailed
from schemas.contracts import (
    Contract,
    Contracts,
    InvalidContract,
    compile_schema,
    is_contract_subject,
)
from store import dead_letters as store
from store.dead_letters import DeadLetterFilter, StoredDeadLetter
from store.tenancy import tenant_connection

WOULD_HEAL_SECONDS = 2.0
"""How long registering a version may spend counting `would_heal` before a job takes over."""
BATCH = 200


@dataclass(frozen=True)
class Heal:
    """A heal about to run: the subject's current version and what it is checked with."""

    tenant: str
    contract: Contract
    contracts: Contracts
    """Every contract in force, the subject's current version over the cache's."""

    def filter(self, until: datetime | None = None) -> DeadLetterFilter:
        """The candidates: pending dead letters this subject refused, received before now."""
        return DeadLetterFilter(status="pending", subject=self.contract.subject,
                                time_to=until or datetime.now(UTC))  # fmt: skip


async def prepare(
    pool: AsyncConnectionPool, tenant: str, subject: str, in_force: Contracts
) -> Heal:
    """The heal of `tenant`'s `subject` against its latest live version; ReplayError
    NOT_FOUND when the subject is not a data contract of the tenant's."""
    if not is_contract_subject(subject):
        raise ReplayError(Refusal.INVALID, "not_a_contract", f"{subject[:200]!r} is not a "
                          "data-contract subject (native.<type>, baselime.<dataset>, "
                          "dakkio.<dataSourceId>, dynatrace.<type>)")  # fmt: skip
    try:
        latest = await registry.get_version(pool, tenant, subject, None, False)
    except registry.RegistryError as exc:
        raise ReplayError(Refusal.NOT_FOUND, "no_such_subject", exc.message) from exc
    if latest.schema_type != "JSON":
        raise ReplayError(Refusal.INVALID, "not_a_contract", "a data contract is a JSON Schema")
    try:
        validator = await asyncio.to_thread(compile_schema, latest.schema)
    except InvalidContract as exc:
        raise ReplayError(Refusal.CANNOT_VALIDATE, "cannot_validate", str(exc)) from exc
    contract = Contract(subject, latest.version, latest.id, validator)
    merged = Contracts({**in_force.by_subject, (tenant, subject): contract}, in_force.generation)
    return Heal(tenant, contract, merged)


def _judge(deps: ReplayDeps, heal: Heal, rows: Sequence[StoredDeadLetter]) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for dead in rows:
        try:
            plan = plan_replay(dead, dead.raw, deps.topics, deps.partitions, deps.max_events,
                               heal.contracts)  # fmt: skip
        except ReplayError:
            verdicts.append(Verdict(dead, None))
            continue
        verdicts.append(Verdict(dead, plan))
    return verdicts


@dataclass(frozen=True)
class Verdict:
    """One candidate checked: `plan` None when this build cannot validate it."""

    dead: StoredDeadLetter
    plan: IngestPlan | None

    @property
    def passes(self) -> bool:
        return self.plan is not None and not self.plan.rejected()

    def reasons(self) -> list[dict[str, str]]:
        assert self.plan is not None
        return [v.as_dict() for r in self.plan.rejected() for v in r.reasons]


async def heal(
    deps: ReplayDeps, heal: Heal, *, dry_run: bool = False, progress: Progress | None = None,
    job_id: str | None = None, until: datetime | None = None,
) -> ReplayCounts:  # fmt: skip
    """Run `heal` to its end, a claimed batch at a time; `replayed` counts the healed ones
    (dry run: those that would be), `still_invalid` those left pending with new reasons."""
    flt = heal.filter(until)
    if dry_run:
        counted = await _count(deps, heal, flt, progress)  # no deadline: it always ends
        assert counted is not None
        return counted

    async def step(rows: Sequence[StoredDeadLetter], given_up: list[uuid.UUID]) -> ReplayCounts:
        return await _heal_claimed(deps, heal, rows, given_up, job_id)

    return await drain_claimed(deps, heal.tenant, flt, BATCH, step, progress)


async def _heal_claimed(
    deps: ReplayDeps, heal: Heal, rows: Sequence[StoredDeadLetter], given_up: list[uuid.UUID],
    job_id: str | None,
) -> ReplayCounts:  # fmt: skip
    verdicts = await asyncio.to_thread(_judge, deps, heal, rows)
    counts = ReplayCounts()
    passing = [(v.dead, v.plan) for v in verdicts if v.passes and v.plan is not None]
    failing = [(v.dead.dead_letter_id, v.reasons()) for v in verdicts
               if not v.passes and v.plan is not None]  # fmt: skip
    unknown = [v.dead.dead_letter_id for v in verdicts if v.plan is None]
    given_up += [i for i, _r in failing] + unknown
    async with tenant_connection(deps.pool, heal.tenant) as conn:
        counts.still_invalid = await store.refresh_reasons(conn, heal.tenant, deps.owner, failing)
        await store.release(conn, heal.tenant, deps.owner, unknown)
    counts.failed = len(unknown)
    try:
        results = await publish_and_mark(deps, heal.tenant, passing, job_id)
    except (ProduceFailed, Overloaded) as exc:
        raise ReplayError(
            Refusal.UNAVAILABLE, "kafka_unavailable", f"Kafka did not acknowledge: {exc}"
        ) from exc
    done = {r.dead_letter_id for r in results}
    for dead, _plan in passing:
        if dead.id not in done:  # deleted or stored anew since: released, stays pending
            counts.skipped += 1
            given_up.append(dead.dead_letter_id)
    counts.replayed = len(done)
    return counts


async def _count(
    deps: ReplayDeps, heal: Heal, flt: DeadLetterFilter, progress: Progress | None,
    deadline: float = math.inf,
) -> ReplayCounts | None:  # fmt: skip
    """How many of the candidates pass (`replayed`) and fail (`still_invalid`); None when
    more are left past `deadline` (time.monotonic)."""
    total = ReplayCounts()
    cursor: str | None = None
    while True:
        async with tenant_connection(deps.pool, heal.tenant) as conn:
            rows, cursor = await store.find_dead_letters(conn, heal.tenant, flt, limit=BATCH,
                                                         cursor=cursor)  # fmt: skip
        verdicts = await asyncio.to_thread(_judge, deps, heal, rows)
        step = ReplayCounts(
            replayed=sum(v.passes for v in verdicts),
            still_invalid=sum(1 for v in verdicts if v.plan is not None and not v.passes),
            failed=sum(1 for v in verdicts if v.plan is None),
        )
        total.add(step)
        if progress is not None:
            await progress(step)
        if cursor is None:
            return total
        if time.monotonic() > deadline:
            return None


async def would_heal(
    deps: ReplayDeps, heal: Heal, seconds: float = WOULD_HEAL_SECONDS
) -> int | None:
    """How many pending dead letters of the subject its current version would heal; None
    when counting them takes longer than `seconds` (then a dry-run heal job counts them)."""
    counted = await _count(deps, heal, heal.filter(), None, time.monotonic() + seconds)
    return None if counted is None else counted.replayed
