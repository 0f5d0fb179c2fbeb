"""The load generator: aiohttp on 127.0.0.1, closed loop (N in flight) or open loop (a rate).

Every request is recorded (send time, answer time, status, events accepted) so the
harness can derive throughput, latency percentiles and time series afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import aiohttp
import msgspec


class _Answer(msgspec.Struct):
    accepted: int = 0


_answer = msgspec.json.Decoder(_Answer)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request: wall-clock send and answer times (time.time()), status, events accepted."""

    sent: float
    done: float
    status: int
    events: int
    accepted: int
    first: int = -1
    """Index of the request's first event id, where the generator numbers them (open loop)."""


CONNECTION_ERROR = 0
"""Status recorded when the request got no HTTP answer at all."""


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    data: bytes,
    events: int,
    first: int = -1,
) -> RequestRecord:
    sent = time.time()
    try:
        async with session.post(url, data=data, headers=headers) as resp:
            payload = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, OSError):
        return RequestRecord(sent, time.time(), CONNECTION_ERROR, events, 0, first)
    accepted = _answer.decode(payload).accepted if status == 202 else 0
    return RequestRecord(sent, time.time(), status, events, accepted, first)


def _headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key, "Content-Type": "application/json"}


def _session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))


async def closed_loop(
    base_url: str, key: str, bodies: Sequence[tuple[bytes, int]], concurrency: int
) -> list[RequestRecord]:
    """Post every (body, event count) with `concurrency` requests in flight.

    A 429/503 answer is retried after a short pause, so every event is accepted
    in the end; every attempt is recorded.
    """
    url = f"{base_url}/v1/events"
    headers = _headers(key)
    records: list[RequestRecord] = []
    pending = iter(bodies)

    async def worker(session: aiohttp.ClientSession) -> None:
        for data, events in pending:
            for _attempt in range(100):
                record = await _post(session, url, headers, data, events)
                records.append(record)
                if record.status not in (429, 503, CONNECTION_ERROR):
                    break
                await asyncio.sleep(0.05)

    async with _session(concurrency) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return records


@dataclass
class OpenLoopResult:
    """What an open-loop run offered and got back."""

    records: list[RequestRecord]
    offered_requests: int
    skipped_requests: int
    """Slots where `max_inflight` requests were already open, so nothing was sent."""


async def open_loop(
    base_url: str,
    key: str,
    bodies: Iterator[bytes],
    events_per_body: int,
    rate: float,
    duration: float,
    max_inflight: int,
) -> OpenLoopResult:
    """Offer `rate` events/s for `duration` seconds, one request per slot, never retrying.

    `bodies` must number its events consecutively from 0 in `events_per_body` steps
    (see `bench.events.endless_bodies`), so each record knows its first event's index.
    """
    url = f"{base_url}/v1/events"
    headers = _headers(key)
    interval = events_per_body / rate
    records: list[RequestRecord] = []
    tasks: set[asyncio.Task[None]] = set()
    offered = skipped = 0

    async def send(session: aiohttp.ClientSession, data: bytes, first: int) -> None:
        records.append(await _post(session, url, headers, data, events_per_body, first))

    async with _session(max_inflight) as session:
        start = time.perf_counter()
        while (due := start + offered * interval) < start + duration:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            offered += 1
            if len(tasks) >= max_inflight:
                skipped += 1
                continue
            first = (offered - skipped - 1) * events_per_body
            task = asyncio.create_task(send(session, next(bodies), first))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    return OpenLoopResult(records, offered, skipped)
