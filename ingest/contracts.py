"""Every tenant's data contracts in memory, kept current by a cheap poll of the registry.

Each API process and each stream worker holds one `ContractCache`. Every
`SLUICE_CONTRACTS_POLL_SECONDS` it reads the registry's change counter (one
`SELECT sluice_registry_generation()`, migration 0017); only when that moved does it
load the latest version of every contract subject and compile the schemas it has not
compiled yet (validators are kept per schema id, so a reload recompiles nothing that
stayed). A new version is therefore enforced everywhere within about one poll interval,
without a restart, and no event costs a database round trip: `current` is a plain
in-memory map (`schemas.contracts.Contracts`).

The poll's second is a window in which a process may still hold the previous version, so
a stream worker about to dead-letter an event for a `schema_violation` first makes sure
its contracts are not older than the event (`refresh_if_older`, one read, only on that
path): an event accepted after a version was registered (a heal's replay, above all) is
judged by that version or a newer one, as the stream must be the authority.

A poll that fails (PostgreSQL away) keeps the contracts it had and tries again: the
pipeline is not stopped by the registry's database, and nothing is dead-lettered for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg import AsyncConnection

from schemas.contracts import NO_CONTRACTS, Contract, Contracts, InvalidContract, compile_schema
from store.contracts import ContractRow, latest_contracts, registry_generation

log = logging.getLogger(__name__)

Connect = Callable[[], Any]
"""Opens a connection for one poll: an async context manager yielding an `AsyncConnection`
(a pool's `connection`, or `psycopg.AsyncConnection.connect` with a URL)."""


class ContractCache:
    """The contracts to enforce now (`current`), refreshed by `refresh` / `run`."""

    def __init__(self, connect: Connect, poll_seconds: float = 1.0) -> None:
        self._connect = connect
        self._poll = poll_seconds
        self._compiled: dict[int, Any] = {}
        self.current: Contracts = NO_CONTRACTS
        self.checked_at = 0.0
        """When (wall clock, seconds) the last successful read of the registry began:
        `current` is at least as new as the registry was then."""
        self.loaded = asyncio.Event()
        """Set once the first load succeeded: before it, `current` is not known."""

    async def refresh(self) -> bool:
        """Reload when the registry changed since the last load; whether it reloaded."""
        began = time.time()
        async with self._connect() as conn:
            generation = await registry_generation(conn)
            if generation == self.current.generation:
                self.checked_at = began
                return False
            rows = await _rows(conn)
        self.current = await asyncio.to_thread(self._build, rows, generation)
        self.checked_at = began
        self.loaded.set()
        log.info("data contracts: %d subject(s) at registry generation %d",
                 len(self.current.by_subject), generation)  # fmt: skip
        return True

    def _build(self, rows: Iterable[ContractRow], generation: int) -> Contracts:
        by_subject: dict[tuple[str, str], Contract] = {}
        compiled: dict[int, Any] = {}
        for row in rows:
            validator = self._compiled.get(row.schema_id) or compiled.get(row.schema_id)
            if validator is None:
                try:
                    validator = compile_schema(row.schema)
                except InvalidContract as exc:  # registered before it was a contract subject
                    log.warning("data contract %s/%s v%d not enforced: %s", row.tenant,
                                row.subject, row.version, exc)  # fmt: skip
                    continue
            compiled[row.schema_id] = validator
            by_subject[(row.tenant, row.subject)] = Contract(
                row.subject, row.version, row.schema_id, validator
            )
        self._compiled = compiled  # only the live ones: a replaced version is let go
        return Contracts(by_subject, generation)

    async def refresh_if_older(self, moment: float) -> bool:
        """Reload now when the contracts were last checked before `moment` (wall clock,
        seconds) and the registry changed since; whether it reloaded. Never raises: a
        registry it cannot read leaves the contracts it had (the poll retries)."""
        if self.checked_at >= moment:
            return False
        try:
            return await self.refresh()
        except (psycopg.Error, OSError) as exc:
            log.warning("data contracts not refreshed on demand: %s", exc)
            return False

    async def run(self) -> None:
        """Poll until cancelled (a task of the process that owns the cache)."""
        while True:
            try:
                await self.refresh()
            except (psycopg.Error, OSError) as exc:
                log.warning("data contracts not refreshed (kept %d): %s",
                            len(self.current.by_subject), exc)  # fmt: skip
            except Exception:  # a bug on one load must not end the poll for every tenant
                log.exception("data contracts not refreshed (kept %d)",
                              len(self.current.by_subject))  # fmt: skip
            await asyncio.sleep(self._poll)


async def _rows(conn: AsyncConnection[Any]) -> list[ContractRow]:
    return await latest_contracts(conn)
