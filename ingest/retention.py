"""Retention: a tenant's events and dead letters expire, in bounded steps (issue 20).

The rules of a tenant (`rules_for`): each policy row (`store.retention`), and for every
family without a row the settings' default (`SLUICE_RETENTION_EVENTS_DAYS`,
`SLUICE_RETENTION_DEAD_LETTERS_DAYS`; 0 keeps forever). A family-wide events rule leaves
out the types that have a rule of their own, which may keep them longer or shorter.

* **Events** expire by their event `time`: everything older than `now - keep`. They go
  through the pipeline's own delete by filter (`ingest.entry.delete_matching`), so they
  leave PostgreSQL *and* the compacted `events` topic (the sink tombstones each removed
  identity), each step gets a deletion receipt, and a redelivered older version stays
  gone (the sink's filter check, `schemas/versions.py`). Each step covers at most
  `SLUICE_RETENTION_STEP_ROWS` stored events (the cut of a step is the time of the next
  event past that many) and the runner waits for the sink to finish it before the next,
  so the sink never holds one huge delete and keeps storing new events between steps;
  after each step it rests `SLUICE_RETENTION_PAUSE_FACTOR` times as long as the step
  took, so an expiry takes at most 1 / (1 + factor) of the sink's time.
* **Dead letters** expire by `received_at`, deleted from PostgreSQL in batches of the
  same size, one transaction each (`events.dlq` keeps them for its own topic retention).

After each pass it prunes the deletion records that can no longer matter
(`ingest.pruning`: tied to the topics' own retention).

One runner works at a time across every API process: the one holding the PostgreSQL
advisory lock `RUNNER_LOCK` (taken on a connection of its own; a dead process's lock goes
with its connection, and another API process takes over).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from confluent_kafka import KafkaException
from psycopg_pool import AsyncConnectionPool

from ingest.entry import IngestDeps, delete_matching
from ingest.plan import RequestContext
from ingest.pruning import prune_now
from runtime.settings import Settings
from schemas.deletes import DeleteFilter
from schemas.identity import FAMILIES
from store import retention as store
from store.deletions import get_receipt
from store.retention import Policy
from store.tenancy import tenant_connection

log = logging.getLogger(__name__)

RUNNER_LOCK = 0x51_7E_7E_17
"""`pg_try_advisory_lock` key of the one retention runner."""
MAX_STEPS = 100_000
"""Steps one rule may take in one run (a bound against a runaway loop)."""


MAX_KEEP_DAYS = 36_500
MAX_TYPE = 200


class BadPolicy(ValueError):
    """A policy the API cannot take; answered 400 with the message."""


def parse_target(given: Mapping[str, Any]) -> tuple[str, str, str]:
    """(kind, family, type or '') from a body or a query, checked."""
    kind, family, event_type = given.get("kind"), given.get("family"), given.get("type") or ""
    if kind not in store.KINDS:
        raise BadPolicy(f"kind: one of {list(store.KINDS)}")
    if family not in FAMILIES:
        raise BadPolicy(f"family: one of {list(FAMILIES)}")
    if not isinstance(event_type, str) or len(event_type) > MAX_TYPE:
        raise BadPolicy(f"type: an event type of at most {MAX_TYPE} characters")
    if event_type and kind != "events":
        raise BadPolicy("type: only events are kept per type (dead letters per family)")
    return str(kind), str(family), event_type


def parse_keep_days(value: Any) -> int:
    """`keep_days` (a number of days, fractions allowed) as whole seconds, checked."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadPolicy("keep_days: a number of days")
    if not 0 < value <= MAX_KEEP_DAYS:
        raise BadPolicy(f"keep_days: more than 0 and at most {MAX_KEEP_DAYS}")
    seconds = round(value * 86400)
    if seconds < 60:
        raise BadPolicy("keep_days: at least a minute")
    return seconds


@dataclass(frozen=True)
class Rule:
    """One expiry to apply: records of `kind` of `family` (of `event_type`, '' for all
    but `excepted`) older than `keep_seconds`."""

    kind: str
    family: str
    event_type: str
    keep_seconds: int
    excepted: tuple[str, ...] = ()
    from_policy: bool = True
    """False: the settings' default, which has no row to mark."""

    def cut(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.keep_seconds)


def rules_for(policies: Sequence[Policy], settings: Settings) -> list[Rule]:
    """Every rule of a tenant from its policies and the defaults (see the module)."""
    defaults = {"events": round(settings.retention_events_days * 86400),
                "dead_letters": round(settings.retention_dead_letters_days * 86400)}  # fmt: skip
    rules: list[Rule] = []
    for kind in store.KINDS:
        own = [p for p in policies if p.kind == kind]
        for family in FAMILIES:
            typed = [p for p in own if p.family == family and p.event_type]
            whole = next((p for p in own if p.family == family and not p.event_type), None)
            excepted = tuple(sorted(p.event_type for p in typed))
            if whole is not None:
                rules.append(Rule(kind, family, "", whole.keep_seconds, excepted))
            elif defaults[kind] > 0:
                rules.append(Rule(kind, family, "", defaults[kind], excepted, False))
            rules += [Rule(kind, family, p.event_type, p.keep_seconds) for p in typed]
    return rules


def expiry_cut(
    policies: Sequence[Policy], default_days: float, family: str, event_type: str, now: datetime
) -> datetime | None:
    """Before which `time` an event of `family` and `event_type` is expired now: its type's
    policy, else its family's, else the default (None: kept forever)."""
    events = [p for p in policies if p.kind == "events" and p.family == family]
    chosen = next((p for p in events if p.event_type == event_type), None) or next(
        (p for p in events if not p.event_type), None
    )
    if chosen is not None:
        return now - timedelta(seconds=chosen.keep_seconds)
    return now - timedelta(days=default_days) if default_days > 0 else None


@dataclass
class RunReport:
    events_removed: int = 0
    dead_letters_removed: int = 0
    receipts: list[str] = field(default_factory=list)


class StepNotFinished(Exception):
    """The sink did not finish a step's delete in time (it may be down): the run stops."""


@dataclass
class RetentionRunner:
    """Applies every tenant's rules; `run` repeats that while it holds the runner lock."""

    deps: IngestDeps
    settings: Settings

    async def run_tenant(self, tenant: str, run_id: str | None = None) -> RunReport:
        """Apply `tenant`'s rules now, recording the run (`retention_runs`)."""
        run_id = run_id or str(uuid.uuid4())
        pool = self._pool()
        async with tenant_connection(pool, tenant) as conn:
            if not await store.get_run(conn, tenant, run_id):
                await store.start_run(conn, tenant, run_id)
            rules = rules_for(await store.policies(conn, tenant), self.settings)
        report = RunReport()
        try:
            for rule in rules:
                await self._apply(tenant, rule, run_id, report)
        except Exception as exc:
            async with tenant_connection(pool, tenant) as conn:
                await store.update_run(conn, tenant, run_id, state="failed", error=str(exc)[:500])
            raise
        async with tenant_connection(pool, tenant) as conn:
            await store.update_run(conn, tenant, run_id, state="done")
        return report

    async def run_all(self) -> None:
        """One pass over every tenant; a tenant's failure is logged, the rest still run."""
        async with self._pool().connection() as conn:
            everyone = await store.tenants(conn)
        for tenant in everyone:
            try:
                await self.run_tenant(tenant)
            except (psycopg.Error, StepNotFinished, OSError) as exc:
                log.warning("retention of tenant %s stopped: %s", tenant, exc)
        try:  # then the deletion records nothing can bring back what they keep out of
            await prune_now(self._pool(), self.settings, datetime.now(UTC))
        except (psycopg.Error, KafkaException, OSError) as exc:
            log.warning("deletion records not pruned: %s", exc)

    async def run(self) -> None:
        """Every `SLUICE_RETENTION_INTERVAL_SECONDS`, a pass, by whichever API process holds
        the runner lock; until cancelled."""
        interval = self.settings.retention_interval_seconds
        while True:
            try:
                url = self.settings.api_database_url or self.settings.database_url
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (RUNNER_LOCK,))
                    row = await cur.fetchone()
                    while row is not None and row[0]:  # the runner: pass, sleep, again
                        await self.run_all()
                        await asyncio.sleep(interval)
                        await conn.execute("SELECT 1")  # still connected, so still the runner
            except (psycopg.Error, OSError) as exc:
                log.warning("retention runner: %s", exc)
            await asyncio.sleep(interval)

    def _pool(self) -> AsyncConnectionPool:
        return self.deps.pool

    async def _apply(self, tenant: str, rule: Rule, run_id: str, report: RunReport) -> None:
        cut = rule.cut(datetime.now(UTC))
        if rule.kind == "events":
            await self._expire_events(tenant, rule, cut, run_id, report)
        else:
            await self._expire_dead_letters(tenant, rule, cut, run_id, report)
        if rule.from_policy:
            async with tenant_connection(self._pool(), tenant) as conn:
                await store.mark_run(conn, tenant, rule.kind, rule.family, rule.event_type, cut)

    async def _expire_events(
        self, tenant: str, rule: Rule, cut: datetime, run_id: str, report: RunReport
    ) -> None:
        excepted = list(rule.excepted)
        types: Iterable[str] = (rule.event_type,) if rule.event_type else ()
        if excepted:  # the same types for every step, so each step's filter covers the last
            async with tenant_connection(self._pool(), tenant) as conn:
                types = await store.types_before(conn, tenant, rule.family, cut, excepted)
            if not types:
                return
        last: datetime | None = None
        for _ in range(MAX_STEPS):
            async with tenant_connection(self._pool(), tenant) as conn:
                end = await store.step_cut(conn, tenant, rule.family, cut,
                                           rule.event_type or None, excepted,
                                           self.settings.retention_step_rows)  # fmt: skip
            if end is None or end == last:  # none left, or none this rule's filter takes
                return
            last = end
            began = asyncio.get_running_loop().time()
            receipt = await self._delete_step(tenant, rule.family, DeleteFilter(
                types=tuple(types), time_to=end))  # fmt: skip
            removed = await self._wait_finished(tenant, receipt)
            took = asyncio.get_running_loop().time() - began
            await asyncio.sleep(took * self.settings.retention_pause_factor)
            report.events_removed += removed
            report.receipts.append(receipt)
            async with tenant_connection(self._pool(), tenant) as conn:
                await store.update_run(conn, tenant, run_id, events=removed, receipt=receipt)
            if end >= cut:
                return

    async def _delete_step(self, tenant: str, family: str, flt: DeleteFilter) -> str:
        ctx = RequestContext(tenant, family, {}, "application/json", datetime.now(UTC),
                             request_id=f"retention-{uuid.uuid4()}")  # fmt: skip
        deleted = await delete_matching(self.deps, ctx, flt)
        log.info("retention: %s/%s events before %s (types %s): receipt %s", tenant, family,
                 flt.time_to, list(flt.types) or "all", deleted.receipt_id)  # fmt: skip
        return deleted.receipt_id

    async def _wait_finished(self, tenant: str, receipt_id: str) -> int:
        """Until the sink applied every partition of the step; the events it removed."""
        deadline = asyncio.get_running_loop().time() + self.settings.retention_step_timeout_seconds
        while True:
            async with tenant_connection(self._pool(), tenant) as conn:
                receipt = await get_receipt(conn, tenant, receipt_id)
            if receipt is not None and receipt["status"] == "finished":
                return int(receipt["removed"]["events"])
            if asyncio.get_running_loop().time() > deadline:
                raise StepNotFinished(f"deletion {receipt_id} not applied by the sink in time")
            await asyncio.sleep(0.2)

    async def _expire_dead_letters(
        self, tenant: str, rule: Rule, cut: datetime, run_id: str, report: RunReport
    ) -> None:
        rows = self.settings.retention_step_rows
        for _ in range(MAX_STEPS):
            async with tenant_connection(self._pool(), tenant) as conn:
                gone = await store.expire_dead_letters(conn, tenant, rule.family, cut, rows)
                await store.update_run(conn, tenant, run_id, dead_letters=gone)
            report.dead_letters_removed += gone
            if gone < rows:
                return
