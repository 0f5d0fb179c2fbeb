"""Splitting a request body into raw events, each its exact original bytes.

A splitter is a function of the body that returns its events or raises
`Unsplittable`; each API family has its own (a JSON body for the native API, an
`{"events": [...]}` object for DataHub, …). `split_body` is the one place that
calls them, so every family treats a body nesting past the decoder's recursion
limit the same way: as unsplittable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

_list_of_raw = msgspec.json.Decoder(list[msgspec.Raw])


class Unsplittable(ValueError):
    """A body that cannot be split into events (not JSON, or not an object/array)."""


Splitter = Callable[[bytes], Sequence[bytes]]
"""A family's way from a body to its raw events; raises `Unsplittable`."""


def split_body(splitter: Splitter, body: bytes) -> Sequence[bytes]:
    """`splitter(body)`, with a `RecursionError` (a decoder's depth limit, far past
    `schemas.nesting.MAX_DEPTH`) raised as `Unsplittable` like any other refusal."""
    try:
        return splitter(body)
    except RecursionError as exc:
        raise Unsplittable("body nests too deeply to be split into events") from exc


def one_event(body: bytes) -> Sequence[bytes]:
    """The splitter of a route whose body is one event."""
    return [body]


def given(events: Sequence[bytes]) -> Splitter:
    """The splitter of events the route already split (a CSV slice, a validated batch)."""
    return lambda _body: events


def refuse(reason: str) -> Splitter:
    """The splitter of a body the route already knows cannot be ingested as events: it is
    recorded whole as one dead letter with `reason` (e.g. its dataset does not exist)."""

    def refused(_body: bytes) -> Sequence[bytes]:
        raise Unsplittable(reason)

    return refused


def split_json_events(body: bytes) -> list[bytes]:
    """The events of a JSON body, each as its exact original bytes.

    A body is one object or an array of values. Array elements are sliced out
    of the body unchanged, so a rejected one can be stored byte for byte.
    """
    stripped = body.lstrip()
    if stripped.startswith(b"["):
        try:
            return [bytes(item) for item in _list_of_raw.decode(body)]
        except msgspec.DecodeError as exc:
            raise Unsplittable(f"body is not a valid JSON array: {exc}") from exc
    if stripped.startswith(b"{"):
        return [body]
    raise Unsplittable("body must be a JSON object or an array of objects")
