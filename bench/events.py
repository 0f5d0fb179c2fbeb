"""Synthetic native events: every id unique per phase, bodies built from a byte template.

Building a body costs about a microsecond per event, so the load generator can
make bodies as it goes without stealing much CPU from the processes it measures.
"""

from __future__ import annotations

from collections.abc import Iterator

_EVENT = (
    b'{"id":"%s-%d","type":"usage.api_call","source":"/bench/%d","time":"2024-11-23T10:00:00Z",'
    b'"subject":"customer-%d","data":{"units":%d,"customer":"c%d","region":"eu-west-1",'
    b'"ok":true,"latency_ms":%d}}'
)


def event_bytes(phase: str, index: int) -> bytes:
    """One valid native event whose id is `<phase>-<index>`."""
    return _EVENT % (phase.encode(), index, index % 7, index % 997, index, index % 97, index % 250)


def body(phase: str, start: int, count: int) -> bytes:
    """A JSON array of `count` events, ids `<phase>-<start>` onwards."""
    return b"[" + b",".join(event_bytes(phase, i) for i in range(start, start + count)) + b"]"


def bodies(phase: str, total: int, batch: int) -> list[bytes]:
    """`total` events in requests of at most `batch` events."""
    return [body(phase, s, min(batch, total - s)) for s in range(0, total, batch)]


def endless_bodies(phase: str, batch: int) -> Iterator[bytes]:
    """Bodies of `batch` events with ids counting up for as long as they are asked for."""
    start = 0
    while True:
        yield body(phase, start, batch)
        start += batch
