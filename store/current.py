"""What is stored right now, asked once per request: which of these ids have a version."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

STORED_IDS = (
    "SELECT event_id, version FROM"
    " sluice_stored_ids(%s, %s, ARRAY(SELECT jsonb_array_elements_text(%s::text::jsonb)))"
)
"""One round trip (migration 0006): sets the caller's tenant for row-level security and reads.

The ids travel as one JSON array, encoded by msgspec and parsed by PostgreSQL: psycopg
dumps a list parameter element by element in Python (~0.3 µs per id, text or binary).
"""


async def stored_ids(
    conn: AsyncConnection[Any], tenant: str, family: str, event_ids: Sequence[str]
) -> dict[str, int]:
    """The ids among `event_ids` that have a current version for `tenant` and `family`,
    with that version.

    `conn` should be in autocommit mode (the door's lookup pool): the call is then its
    own transaction, and the tenant setting it makes ends with it.
    """
    if not event_ids:
        return {}
    ids = msgspec.json.encode(list(event_ids)).decode()
    cur = await conn.execute(STORED_IDS, (tenant, family, ids), prepare=True)
    return {row[0]: row[1] for row in await cur.fetchall()}


_Waiting = tuple[frozenset[str], "asyncio.Future[dict[str, int]]"]


class StoredIdLookups:
    """`stored_ids` for concurrent requests, coalesced: a few queries per tenant and family.

    A request asks at once when fewer than `parallel` queries of its tenant and
    family are running; otherwise it waits, and the next query to finish takes every
    waiting request into one query for all their ids. Each still learns only about
    its own ids, and always from a query that began after it asked (so before it
    publishes anything). Under a burst this turns ~180 µs of the door's CPU per
    request into one query's worth per round; more than one round in flight keeps
    the wait short when a round carries many thousands of ids.

    With `gather_seconds`, a round waits that long before it takes the waiting requests,
    so more of them share its query. The door passes half its producer's linger: the
    lookup runs while Kafka acknowledges, so the wait costs no request any time, and
    under load it turned ~800 queries a second (~15 % of the door's main thread, most of
    it psycopg's per-query work) into a few hundred.
    """

    def __init__(
        self, pool: AsyncConnectionPool, parallel: int = 2, gather_seconds: float = 0.0
    ) -> None:
        self.pool = pool
        self.parallel = parallel
        self.gather_seconds = gather_seconds
        self._waiting: dict[tuple[str, str], list[_Waiting]] = defaultdict(list)
        self._rounds: dict[tuple[str, str], set[asyncio.Task[None]]] = {}
        """Running rounds per tenant and family (held, so none is garbage-collected mid-query)."""
        self.queries = 0
        """Queries run so far (what coalescing saves shows as queries < requests)."""

    async def stored(self, tenant: str, family: str, event_ids: Sequence[str]) -> dict[str, int]:
        """The ids among `event_ids` with a current version for `tenant` and `family`, and it."""
        if not event_ids:
            return {}
        answer: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        key = (tenant, family)
        self._waiting[key].append((frozenset(event_ids), answer))
        rounds = self._rounds.setdefault(key, set())
        if len(rounds) < self.parallel:
            rounds.add(asyncio.create_task(self._serve(key)))
        return await answer

    async def _serve(self, key: tuple[str, str]) -> None:
        """Answer the waiting requests of `key`, a round at a time, until none are left."""
        waiting: list[_Waiting] = []
        current = asyncio.current_task()
        try:
            while True:
                if self.gather_seconds > 0:
                    await asyncio.sleep(self.gather_seconds)
                if not (waiting := self._waiting.pop(key, [])):
                    break
                asked = frozenset().union(*(ids for ids, _ in waiting))
                try:
                    async with self.pool.connection() as conn:
                        self.queries += 1
                        found = await stored_ids(conn, key[0], key[1], list(asked))
                except Exception as exc:  # every waiter gets the failure, none hangs
                    for _, answer in waiting:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                for ids, answer in waiting:
                    if not answer.done():
                        answer.set_result({i: found[i] for i in ids & found.keys()})
        finally:
            rounds = self._rounds[key]
            rounds.discard(current)
            if not rounds:
                del self._rounds[key]
            # Only when this task is cancelled (shut-down) can anyone still be waiting.
            for _, answer in waiting + self._waiting.pop(key, []):
                answer.cancel()
