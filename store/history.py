"""Where is my event? The history of an identity, or of every event a request carried.

Read as the caller's tenant (`tenant_connection`), the API's routes and the CLI's
`sluice events history` / `sluice requests show` call these same functions. A history is
derived from what the pipeline records anyway, plus one row per stored version:

* `events` and `event_history` (migration 0011): each version, the current one and those
  that left `events` (kept by a trigger when replaced or deleted): version (its position in
  `ingest.raw`, `schemas.versions.position_of`), partition, received and stored times;
* `ingest_envelopes` (migration 0011, written by the sink once per envelope): the request
  (or replay of a dead letter) at each position, and the ids each request carried;
* `dead_letters`: each rejection, at the door or in the stream (the stream's carry their
  `ingest.raw` position: the door had accepted them), its request, reasons, and its
  resolution (`replayed` with the job that did it, or `discarded`);
* `event_deletions`: the deletion that removed the identity, at which version, by which
  receipt.

The steps are then put in time order (`build_steps`, pure). A dead letter's own id and
reasons are detail that only a key with `deadletters:read` sees (`detail=False` leaves
them out); the rest is `events:read`'s.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from schemas.versions import position_of

Identity = tuple[str, str]
"""(family, event id) within the caller's tenant."""

_IDENTITIES = "unnest(%(families)s::text[], %(ids)s::text[]) AS i(family, event_id)"

_VERSIONS = f"""
WITH v AS (
    SELECT h.family, h.event_id, h.version, h.kafka_partition, h.received_at, h.stored_at,
           false AS current
    FROM event_history h JOIN {_IDENTITIES} USING (family, event_id)
    WHERE h.tenant = %(tenant)s
    UNION
    SELECT e.family, e.event_id, e.version, e.kafka_partition, e.received_at, e.stored_at,
           true AS current
    FROM events e JOIN {_IDENTITIES} USING (family, event_id)
    WHERE e.tenant = %(tenant)s
)
SELECT DISTINCT ON (v.family, v.event_id, v.version)
       v.family, v.event_id, v.version, v.kafka_partition, v.received_at, v.stored_at,
       v.current, r.request_id, p.replay_of::text AS replay_of
FROM v LEFT JOIN LATERAL (
    SELECT g.request_id FROM ingest_envelopes g
    WHERE g.tenant = %(tenant)s AND g.kafka_partition = v.kafka_partition
      AND g.envelope_offset = v.version >> 20 AND g.request_id IS NOT NULL
    LIMIT 1
) r ON true LEFT JOIN LATERAL (
    SELECT g.replay_of FROM ingest_envelopes g
    WHERE g.tenant = %(tenant)s AND g.kafka_partition = v.kafka_partition
      AND g.envelope_offset = v.version >> 20 AND g.replay_of IS NOT NULL
      AND v.event_id = ANY(g.event_ids)
    LIMIT 1
) p ON true
ORDER BY v.family, v.event_id, v.version, v.stored_at
"""
"""Each version once, the current one from `events`, the ones that left it from
`event_history`; its request from the envelope at its position (`version >> 20` is the
offset, `schemas.versions`): of the rows there (an envelope split across sink batches,
or replaying several dead letters, has several; only its first names the request), one
that names it, and the dead letter replayed from the row that carried this event."""

_LETTERS = f"""
SELECT d.family, d.event_id, d.dead_letter_id::text, d.stage, d.reasons, d.received_at,
       d.request_id, d.source_partition, d.source_offset, d.attempt, d.replay_of::text,
       d.status, d.resolved_at, d.outcome, d.stored_at
FROM dead_letters d JOIN {_IDENTITIES} USING (family, event_id)
WHERE d.tenant = %(tenant)s
ORDER BY d.received_at, d.dead_letter_id
"""

_DELETIONS = f"""
SELECT x.family, x.event_id, x.version, x.deleted_at, x.requested_at, x.deletion_id
FROM event_deletions x JOIN {_IDENTITIES} USING (family, event_id)
WHERE x.tenant = %(tenant)s
"""

_REQUEST_IDENTITIES = """
SELECT family, event_id FROM (
    SELECT g.family, unnest(g.event_ids) AS event_id FROM ingest_envelopes g
    WHERE g.tenant = %(tenant)s AND (g.kafka_partition, g.envelope_offset) IN (
        SELECT r.kafka_partition, r.envelope_offset FROM ingest_envelopes r
        WHERE r.tenant = %(tenant)s AND r.request_id = %(rid)s)
    UNION
    SELECT family, event_id FROM dead_letters
    WHERE tenant = %(tenant)s AND request_id = %(rid)s AND event_id IS NOT NULL
) AS carried
WHERE (family, event_id) > (%(after_family)s, %(after_id)s)
ORDER BY family, event_id
LIMIT %(limit)s
"""

_REQUEST_UNIDENTIFIED = """
SELECT family, event_id, dead_letter_id::text, stage, reasons, received_at, request_id,
       source_partition, source_offset, attempt, replay_of::text, status, resolved_at, outcome,
       stored_at
FROM dead_letters
WHERE tenant = %s AND request_id = %s AND event_id IS NULL
ORDER BY received_at, dead_letter_id
LIMIT 1000
"""
"""A body that could not be split into events is one dead letter without an event id."""

_RANK = {"replayed": 0, "accepted": 1, "rejected": 2, "stored": 3, "replaced": 4,
         "discarded": 5, "deleted": 6}  # fmt: skip
"""Order of steps recorded at the same instant."""


@dataclass(frozen=True)
class Recorded:
    """What the tables hold about one identity."""

    versions: Sequence[dict[str, Any]]
    letters: Sequence[dict[str, Any]]
    deletion: dict[str, Any] | None
    current_version: int | None

    @property
    def empty(self) -> bool:
        return not (self.versions or self.letters or self.deletion)


def build_steps(recorded: Recorded, *, detail: bool) -> list[dict[str, Any]]:
    """The identity's steps in time order (pure). `detail`: include dead-letter ids and
    reasons (the caller holds `deadletters:read`)."""
    steps: list[tuple[datetime, int, int, dict[str, Any]]] = []

    def add(at: datetime, kind: str, order: int, **fields: Any) -> None:
        steps.append((at, _RANK[kind], order, {"step": kind, "at": at.isoformat(), **fields}))

    letters = {d["dead_letter_id"]: d for d in recorded.letters}
    deletion = recorded.deletion
    versions = list(recorded.versions)
    for n, v in enumerate(versions):
        offset, index = position_of(v["version"])
        replay_of = v["replay_of"]
        if replay_of is not None:
            letter = letters.get(replay_of)
            job = ((letter or {}).get("outcome") or {}).get("job_id")
            lineage = {"dead_letter_id": replay_of, "job_id": job} if detail else {}
            add(v["received_at"], "replayed", v["version"], request_id=v["request_id"], **lineage)
        add(v["received_at"], "accepted", v["version"], request_id=v["request_id"],
            partition=v["kafka_partition"], offset=offset, index=index)  # fmt: skip
        refused = (deletion is not None and deletion["version"] > v["version"]
                   and deletion["deleted_at"] <= v["stored_at"])  # fmt: skip
        if not refused:
            add(v["stored_at"], "stored", v["version"], version=v["version"])
        if n + 1 < len(versions):
            newer = versions[n + 1]
            add(newer["stored_at"], "replaced", v["version"], version=v["version"],
                by_version=newer["version"], by_request_id=newer["request_id"])  # fmt: skip
    replayed_here = {v["replay_of"] for v in versions if v["replay_of"] is not None}
    # A replay's new dead letter is received before its parent is marked replayed (the mark
    # waits for Kafka): the replay happened when its child was received.
    children = {d["replay_of"]: d["received_at"] for d in recorded.letters if d["replay_of"]}
    for d in recorded.letters:
        _letter_steps(d, add, detail=detail, replay_recorded=d["dead_letter_id"] in replayed_here,
                      child_received=children.get(d["dead_letter_id"]))  # fmt: skip
    if deletion is not None:
        add(deletion["deleted_at"], "deleted", deletion["version"], version=deletion["version"],
            deletion_id=deletion["deletion_id"],
            requested_at=_iso(deletion["requested_at"]))  # fmt: skip
    steps.sort(key=lambda s: (s[0], s[1], s[2]))
    return [s[3] for s in steps]


def _letter_steps(
    d: dict[str, Any],
    add: Any,
    *,
    detail: bool,
    replay_recorded: bool,
    child_received: datetime | None,
) -> None:
    """A dead letter's steps: accepted first when the stream rejected it, rejected, and its
    resolution (a replay the sink stored a version of is told by that version)."""
    order = d["source_offset"] << 20 if d["source_offset"] is not None else -1
    if d["stage"] == "stream" and d["source_offset"] is not None:
        add(d["received_at"], "accepted", order, request_id=d["request_id"],
            partition=d["source_partition"], offset=d["source_offset"], index=None)  # fmt: skip
    ids = {"dead_letter_id": d["dead_letter_id"]} if detail else {}
    shown = {"reasons": d["reasons"], "status": d["status"]} if detail else {}
    add(d["received_at"] if d["stage"] == "door" else d["stored_at"], "rejected", order,
        stage=d["stage"], request_id=d["request_id"], attempt=d["attempt"], **ids,
        **shown)  # fmt: skip
    resolved = d["resolved_at"]
    if resolved is None:
        return
    if d["status"] == "discarded":
        add(resolved, "discarded", order, **ids)
    elif d["status"] == "replayed" and not replay_recorded:
        outcome = d["outcome"] or {}
        extra = {"job_id": outcome.get("job_id"), "outcome": outcome.get("outcome"),
                 "new_dead_letter_ids": outcome.get("new_dead_letter_ids", [])}  # fmt: skip
        at = min(resolved, child_received) if child_received is not None else resolved
        add(at, "replayed", order, **ids, **(extra if detail else {}))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


async def recorded_for(
    conn: AsyncConnection[Any], tenant: str, identities: Sequence[Identity]
) -> dict[Identity, Recorded]:
    """What the tables hold about each of `identities` of `tenant` (three queries in all)."""
    params = {"families": [f for f, _ in identities], "ids": [i for _, i in identities],
              "tenant": tenant}  # fmt: skip
    found: dict[str, dict[Identity, list[dict[str, Any]]]] = {}
    async with conn.cursor(row_factory=dict_row) as cur:
        for name, query in (("versions", _VERSIONS), ("letters", _LETTERS),
                            ("deletions", _DELETIONS)):  # fmt: skip
            await cur.execute(query, params)
            grouped: dict[Identity, list[dict[str, Any]]] = defaultdict(list)
            for row in await cur.fetchall():
                grouped[(row["family"], row["event_id"])].append(row)
            found[name] = grouped
    recorded: dict[Identity, Recorded] = {}
    for key in identities:
        versions = found["versions"].get(key, [])
        recorded[key] = Recorded(
            versions=versions,
            letters=found["letters"].get(key, []),
            deletion=next(iter(found["deletions"].get(key, [])), None),
            current_version=next((v["version"] for v in versions if v["current"]), None),
        )
    return recorded


def _history(key: Identity, recorded: Recorded, detail: bool) -> dict[str, Any]:
    return {
        "family": key[0],
        "event_id": key[1],
        "current_version": recorded.current_version,
        "steps": build_steps(recorded, detail=detail),
    }


async def event_history(
    conn: AsyncConnection[Any], tenant: str, family: str, event_id: str, *, detail: bool
) -> dict[str, Any] | None:
    """The history of one event of `tenant`, or None when nothing at all is recorded of it
    (also for another tenant's id)."""
    key = (family, event_id)
    recorded = (await recorded_for(conn, tenant, [key]))[key]
    return None if recorded.empty else _history(key, recorded, detail)


class BadCursor(ValueError):
    """A request-history cursor this code did not write."""


def _encode_cursor(key: Identity) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_cursor(cursor: str) -> Identity:
    try:
        family, event_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise BadCursor("malformed cursor") from exc
    if not isinstance(family, str) or not isinstance(event_id, str):
        raise BadCursor("malformed cursor")
    return family, event_id


async def request_history(
    conn: AsyncConnection[Any],
    tenant: str,
    request_id: str,
    *,
    detail: bool,
    limit: int = 100,
    cursor: str | None = None,
) -> dict[str, Any] | None:
    """The history of every event request `request_id` of `tenant` carried, a page of
    `limit` events in (family, event id) order; None when the request is unknown here (or
    another tenant's). A body rejected whole (no event id) is listed under `unidentified`
    on the first page."""
    after = _decode_cursor(cursor) if cursor else ("", "")
    params = {"tenant": tenant, "rid": request_id, "after_family": after[0],
              "after_id": after[1], "limit": limit + 1}  # fmt: skip
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_REQUEST_IDENTITIES, params)
        keys = [(r["family"], r["event_id"]) for r in await cur.fetchall()]
        unidentified: list[dict[str, Any]] = []
        if cursor is None:
            await cur.execute(_REQUEST_UNIDENTIFIED, (tenant, request_id))
            unidentified = list(await cur.fetchall())
    if not keys and not unidentified:
        return None
    page, more = keys[:limit], len(keys) > limit
    recorded = await recorded_for(conn, tenant, page) if page else {}
    return {
        "request_id": request_id,
        "events": [_history(key, recorded[key], detail) for key in page],
        "unidentified": [
            {
                "family": d["family"],
                "steps": build_steps(Recorded([], [d], None, None), detail=detail),
            }
            for d in unidentified
        ],
        "next_cursor": _encode_cursor(page[-1]) if more else None,
    }
