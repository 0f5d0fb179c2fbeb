"""Sluice's compiled door path for native events (see src/lib.rs)."""

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

def plan_native(
    body: bytes, key_prefix: bytes, partitions: int, head: bytes, max_events: int
) -> tuple[list[str], list[tuple[int, bytes]]] | None:
    """The ids of a native body's events and one (partition, envelope) per partition that got
    events; None when any event is not plainly valid with an id (the Python path decides)."""

def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition for `key`: murmur2, made positive, modulo `partitions`."""

def too_deep(raws: Sequence[bytes], cap: int) -> list[int]:
    """The indexes of `raws` that nest containers deeper than `cap`, read exactly as
    `schemas.nesting.json_depth` reads them (any bytes, valid JSON or not)."""

def too_many_items(raw: bytes, cap: int) -> bool:
    """Whether an outermost array of `raw` holds more than `cap` items, read exactly as
    `schemas.nesting.outer_items_past` reads it (any bytes, valid JSON or not)."""

class CompiledContract:
    """One data contract version compiled in Rust, as `schemas.contracts.compile_schema`
    compiles it (see src/contracts.rs); ValueError when Rust cannot build it alike."""

    def __init__(self, schema_id: int, schema: str, draft: str) -> None: ...
    def is_valid(self, document: str) -> bool | None:
        """The verdict on `document` (JSON text); None when Rust does not answer."""

def forward_native(
    message: bytes,
    offset: int,
    partition: int,
    topic: str,
    request_header: str,
    envelope_header: bytes,
    canonical_header: bytes,
    contracts: Callable[[str, str], Mapping[str, CompiledContract | None] | None],
) -> tuple[str, str, list[tuple[str, int, bytes, bytes, list[tuple[str, bytes]] | None]]] | None:
    """(tenant, family, messages to `topic`) for a plainly valid native envelope read at
    `offset` of `partition`: what `to_messages(process_envelope(...))` makes of it, byte for
    byte, data contracts applied; None when any item is not a fresh upsert of a plainly
    valid event, or one fails its contract (see src/stream.rs)."""

def canonical_event(
    payload: bytes, head: bytes
) -> tuple[str, str, str, str, str, str | None, int, str, int, int, str | None, int | None] | None:
    """The fields of a `CanonicalEvent` message whose wire header is `head`, in schema order
    (times as int microseconds), as `schemas.codec.decode_underlying` reads them; None for
    anything it does not read exactly (the Python path decides)."""

class EncodedEvent:
    """A version read by the compiled reader, its row of `events` encoded for binary COPY
    (`row`: the tuple psycopg's `write_row` makes of its columns and partition on a UTF-8
    connection); the columns the sink does not decide by are only in `row` (`fields()`)."""

    @property
    def tenant(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def partition(self) -> int: ...
    @property
    def received_at(self) -> datetime: ...
    @property
    def from_sink(self) -> bool: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def replay_of(self) -> str | None: ...
    @property
    def row(self) -> bytes: ...
    @property
    def identity(self) -> tuple[str, str, str]: ...
    def fields(
        self,
    ) -> tuple[str, str, str, str, str, str | None, int, str, int, int, str | None, int | None]:
        """The record's fields in schema order, times as int microseconds, read from `row`:
        what `canonical_event` answers of the message it came from."""

class EventReader:
    """Reads current `CanonicalEvent` messages into `EncodedEvent`s (see src/sink.rs): the
    header names of a version's request, replayed dead letter and origin, the origin value
    of the sink's own write-backs, and `moment`, which makes the datetime of a receipt time
    in microseconds (called once per run of equal times)."""

    def __init__(
        self,
        request_header: str,
        replay_header: str,
        origin_header: str,
        own_origin: bytes,
        moment: Callable[[int], datetime],
    ) -> None: ...
    def read(
        self,
        payload: bytes,
        head: bytes,
        partition: int,
        headers: object,
    ) -> EncodedEvent | None:
        """The version `payload` (of `partition`, with `headers`: a message's list of (name,
        value) pairs, or None) holds, its row encoded; None for what `canonical_event`
        declines, a time no datetime holds, a schema id past int4, or headers that
        `sinks.records.version_headers` reads otherwise (another container, text values,
        bytes that are not UTF-8)."""
