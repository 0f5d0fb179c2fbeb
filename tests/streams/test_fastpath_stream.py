"""The compiled stream path (`fastpath/src/stream.rs`) against the Python one it stands in for.

`forward_compiled` may decline any envelope (the worker then runs `process_envelope` and
`to_messages`), but the messages it returns must be the ones the Python path makes of the
same envelope: the same topics, partitions, keys, headers and Avro bytes, in order. And it
must decline every envelope the Python path treats specially: deletes, replays, dead
letters, other families, route parameters, schemas it does not know.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.events import event_bytes
from runtime.kafka import OutgoingMessage
from schemas.codec import decode, encode
from schemas.history import REQUEST_HEADER
from schemas.topics import TopicNames
from schemas.validators import may_be_unstorable
from schemas.writers import encode_envelope, envelope_head, item, upsert_item
from streams.compiled import COMPILED, forward_compiled
from streams.outputs import to_messages
from streams.process import Position, process_envelope
from tests.ingest.test_fastpath import _event, _odd_data, _odd_json, _string_json

pytestmark = pytest.mark.skipif(not COMPILED, reason="the compiled extension is not built")

TOPICS = TopicNames.for_prefix("t.")
TOPIC = TOPICS.ingest_raw
RECEIVED = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)


def _envelope(
    raws: list[bytes],
    *,
    ids: list[str] | None = None,
    tenant: str = "acme",
    family: str = "native",
    route: dict[str, str] | None = None,
    request_id: str = "req-1",
    received_at: datetime = RECEIVED,
) -> bytes:
    head = envelope_head(request_id, tenant, family, route or {}, "application/json", received_at)
    ids = ids or [f"e-{i}" for i in range(len(raws))]
    return encode_envelope(
        head, [upsert_item(i.encode(), raw) for i, raw in zip(ids, raws, strict=True)]
    )


def _python(value: bytes, offset: int, partition: int) -> list[OutgoingMessage]:
    _, envelope = decode(value, "IngestEnvelope")
    processed = process_envelope(envelope, Position(TOPIC, partition, offset))
    return to_messages(processed, partition, TOPICS)


def _plain(messages: list[OutgoingMessage]) -> list[tuple[object, ...]]:
    """Messages with their headers as plain lists, for comparison."""
    return [(t, p, k, v, None if h is None else list(h)) for t, p, k, v, h in messages]


def _check(value: bytes, offset: int = 40, partition: int = 2) -> bool:
    """Whether the compiled path took `value`; when it did, that it matched Python exactly."""
    fast = forward_compiled(value, offset, partition, TOPICS)
    if fast is None:
        return False
    _, envelope = decode(value, "IngestEnvelope")
    assert (fast[0], fast[1]) == (envelope["tenant"], envelope["family"])
    assert _plain(fast[2]) == _plain(_python(value, offset, partition))
    return True


def test_the_bench_envelope_takes_the_compiled_path_and_matches() -> None:
    raws = [event_bytes("sf", i) for i in range(42)]
    assert _check(_envelope(raws))
    fast = forward_compiled(_envelope(raws), 40, 2, TOPICS)
    assert fast is not None and len(fast[2]) == 42
    assert fast[2][0][4] is not None and all(m[4] is None for m in fast[2][1:])


PLAIN = [
    b'{"id":"a-1","type":"t","source":"/s","time":"2024-02-29T23:59:59.5+05:30","data":{}}',
    b'{"type":"t\\u00e9","source":"s","time":"2024-11-23T10:00:00","data":{"n":1e5},'
    b'"id":"b\\"2","subject":"\xc3\xa9","extra":[1,{"x":null}]}',
    b'{"type":"t","source":"s","time":"1969-12-31T23:59:59.000001-23:59","data":{"a":[]}}',
    b'{"type":"t","source":"s","time":"0002-01-01T00:00:00+23:59","data":{},"subject":null}',
    b'{"type":"t","source":"s","time":"9998-12-31T23:59:59.999999Z","data":{},"id":null}',
]


def test_escapes_offsets_naive_times_and_odd_years_take_the_compiled_path() -> None:
    for raw in PLAIN:
        assert _check(_envelope([raw])), raw
    assert _check(_envelope(PLAIN, ids=["a-1", "b", "c", "d", "é😀|x"]))


def test_number_like_text_in_strings_takes_the_compiled_path() -> None:
    """Ids such as `<tag>-e2e-65284` (the bench's half-rate phase) and digits as text read
    like long numbers to the byte scans; with no long number outside strings, the compiled
    path takes the envelope (it sent every one to Python before) and matches Python."""
    raws = [event_bytes("0f932a-e2e", 65_284 + i) for i in range(40)]
    assert _check(_envelope(raws, ids=[f"0f932a-e2e-{65_284 + i}" for i in range(40)]))
    digits = GOOD[:-2] + b'"s":"' + b"1" * 3001 + b'","u":"a\\"2e-12345"}}'
    assert _check(_envelope([digits], ids=["3f2e-1234-8e91"]))
    # The declined case below differs from this one by its long number alone.
    beside = GOOD[:-2] + b'"x":"e2e-65284","y":1e99,"z":"a\\"2e-12345"}}'
    assert _check(_envelope([beside]))


def test_an_empty_request_id_sends_no_header() -> None:
    fast = forward_compiled(_envelope(PLAIN[:2], request_id=""), 7, 0, TOPICS)
    assert fast is not None and [m[4] for m in fast[2]] == [None, None]
    assert _check(_envelope(PLAIN[:2], request_id=""), 7, 0)


GOOD = PLAIN[0]
_DELETE = item("delete", "gone", b"", receipt_id="rcpt")
_REPLAY = item("upsert", "e-1", GOOD, attempt=2, replay_of="dl-1")
_FILTER = item("delete", "", b"", delete_filter={"types": ["t"]})


def _raw_envelope(*items: bytes, family: str = "native") -> bytes:
    head = envelope_head("r", "acme", family, {}, "application/json", RECEIVED)
    return encode_envelope(head, list(items))


_OLDER = encode("IngestEnvelope", {
    "request_id": "r", "tenant": "acme", "family": "native", "route": {},
    "content_type": "application/json", "received_at": RECEIVED, "items": [],
}).replace(b"\x00\x00\x00\x00\x04", b"\x00\x00\x00\x00\x01", 1)  # fmt: skip
"""An envelope written with schema id 1 (`ingest_envelope.v1.avsc`): the same bytes here."""

DECLINED = {
    "a delete by id": _raw_envelope(upsert_item(b"a", GOOD), _DELETE),
    "a delete by filter": _raw_envelope(_FILTER),
    "a replay": _raw_envelope(_REPLAY),
    "another family": _envelope([GOOD], family="dashdive"),
    "an unknown family": _envelope([GOOD], family="nope"),
    "route parameters": _envelope([GOOD], route={"ce-type": "t"}),
    "an invalid event": _envelope([GOOD, b'{"type":"t"}']),
    "a CloudEvent": _envelope([b'{"specversion":"1.0","id":"x","type":"t","source":"s"}']),
    "not JSON": _envelope([b"not json"]),
    "a NUL escape": _envelope([GOOD[:-2] + b',"x":"\\u0000"}}']),
    "a long number": _envelope([GOOD[:-2] + b',"x":1e999}}']),
    "a long number beside number-like strings": _envelope(
        [GOOD[:-2] + b'"x":"e2e-65284","y":1e99999,"z":"a\\"2e-12345"}}']
    ),
    "an escaped time": _envelope([GOOD.replace(b"2024-02", b"2024\\u002d02")]),
    "space around the event": _envelope([b" " + GOOD]),
    "an older schema id": _OLDER,
    "trailing bytes": _envelope([GOOD]) + b"\x00",
    "truncated": _envelope([GOOD])[:-3],
    "not an envelope": b"\x00\x00\x00\x00\x07garbage",
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(DECLINED))
def test_what_the_compiled_path_declines(name: str) -> None:
    assert forward_compiled(DECLINED[name], 40, 2, TOPICS) is None


def test_python_treats_the_declined_envelopes_specially() -> None:
    """Each declined envelope the Python path can read makes something the compiled path never
    writes: a tombstone, a deletion, a dead letter, a replay's header, or nothing valid."""
    special = ("a delete by id", "a delete by filter", "another family", "an unknown family",
               "an invalid event", "not JSON", "a NUL escape", "a long number")  # fmt: skip
    for name in special:
        messages = _python(DECLINED[name], 40, 2)
        odd = [m for m in messages if m[0] != TOPICS.events or m[3] is None
               or not m[3].startswith(b"\x00\x00\x00\x00\x07")]  # fmt: skip
        assert odd, name
    replayed = _python(DECLINED["a replay"], 40, 2)
    assert any(h and any(k != REQUEST_HEADER for k, _ in h) for *_, h in replayed)


# Envelopes built from the door test's events (valid, invalid and odd: unicode, escapes, long
# numbers, nested data, subjects, timestamps), with the ids and envelope fields varied too.
_ids = st.one_of(st.text(max_size=10), st.sampled_from(["", "a|b", "é😀", "x" * 300]))
_moments = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
)


@st.composite
def _envelopes(draw: st.DrawFn) -> tuple[bytes, int, int]:
    raws = [e.encode() for e in draw(st.lists(_event(), min_size=1, max_size=4))]
    if draw(st.sampled_from(range(8))) == 7:
        odd = draw(st.sampled_from([_odd_data, _odd_json, _string_json]))
        raws.append(draw(odd).encode())
    ids = [draw(_ids) for _ in raws]
    value = _envelope(
        raws, ids=ids, tenant=draw(st.sampled_from(["acme", "t-2", "x"])),
        request_id=draw(st.sampled_from(["req-1", "", "é"])), received_at=draw(_moments),
    )  # fmt: skip
    return value, draw(st.integers(0, 2**40)), draw(st.integers(0, 63))


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(_envelopes())
@example((_envelope(PLAIN), 0, 0))
def test_whatever_the_compiled_path_forwards_python_writes_the_same(
    case: tuple[bytes, int, int],
) -> None:
    _check(*case)


_plain_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00eE\\"),
                      min_size=1, max_size=40)  # fmt: skip
"""Any text but NUL, backslashes and exponent marks (where the compiled path declines more
than it must: see `crate::may_be_unstorable`)."""


@given(
    st.lists(st.fixed_dictionaries({
        "id": _plain_text, "type": _plain_text, "source": _plain_text, "subject": _plain_text,
        "time": st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31),
                             timezones=st.sampled_from([UTC, None])).map(
                                 lambda d: d.isoformat()),
        "data": st.dictionaries(_plain_text, st.integers(-(10**30), 10**30), max_size=3),
    }), min_size=1, max_size=8),
    st.sampled_from([timedelta(0), timedelta(hours=5, minutes=30), -timedelta(hours=23)]),
)  # fmt: skip
def test_plainly_valid_envelopes_take_the_compiled_path(
    events: list[dict[str, object]], zone: timedelta
) -> None:
    raws = [json.dumps(e, ensure_ascii=False).encode() for e in events]
    assert _check(_envelope(raws)), raws
    shifted = [r.replace(b'+00:00"', _offset(zone)) for r in raws]
    if all(_in_range(e, zone) for e in events):
        assert _check(_envelope(shifted)), shifted


def _offset(zone: timedelta) -> bytes:
    minutes = int(zone.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f'{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"'.encode()


def _in_range(event: dict[str, object], zone: timedelta) -> bool:
    moment = datetime.fromisoformat(str(event["time"]))
    return (
        datetime(2, 1, 1, tzinfo=UTC)
        < moment.replace(tzinfo=UTC) - zone
        < datetime(9998, 12, 31, tzinfo=UTC)
    )


def test_a_tenant_with_a_data_contract_gets_its_schema_id_from_the_compiled_path() -> None:
    """Contracts in force are applied (more in `test_fastpath_contracts.py`): a pass carries
    the contract's schema id, exactly as `process_envelope` with `enforce` writes it."""
    from schemas.contracts import Contract, Contracts, compile_schema

    schema = compile_schema('{"type":"object"}')
    contracts = Contracts({("acme", "native.t"): Contract("native.t", 1, 1042, schema)})
    value = _envelope([GOOD])
    fast = forward_compiled(value, 40, 2, TOPICS, contracts)
    assert fast is not None and decode(fast[2][0][3], "CanonicalEvent")[1]["schema_id"] == 1042
    _, envelope = decode(value, "IngestEnvelope")
    python = to_messages(process_envelope(envelope, Position(TOPIC, 2, 40), contracts), 2, TOPICS)
    assert _plain(fast[2]) == _plain(python)
    other = forward_compiled(_envelope([GOOD], tenant="other"), 40, 2, TOPICS, contracts)
    assert other is not None and decode(other[2][0][3], "CanonicalEvent")[1]["schema_id"] is None


async def _sent_by_forwarder(tmp_path: Path, values: list[bytes]) -> tuple[list[Any], Any]:
    """What `Forwarder.handle` sends for `values` (envelopes at offsets 0.. of partition 1),
    and its breaker's windows (each key's valid and invalid counts) and open keys after."""
    from tests.streams.test_forwarder import Event, Message, _forwarder

    forwarder, held = _forwarder(tmp_path)
    events = [Event(Message(TOPIC, 1, offset, v)) for offset, v in enumerate(values)]
    handling = asyncio.create_task(forwarder.handle(events))
    messages, batch = await held.next_batch()
    for _ in messages:
        batch.on_delivery(None, None)  # type: ignore[arg-type]
    await asyncio.wait_for(handling, 5)
    breaker = forwarder._gate.breaker
    return _plain(messages), (dict(breaker._windows), forwarder.breaker_status()["open"])


async def test_the_worker_sends_and_the_breaker_sees_the_same_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through `Forwarder.handle`, a mix of envelopes the compiled path takes and declines
    gives the same messages, in the same order, and the same breaker state, as with the
    compiled path off."""
    import streams.app

    values = [_envelope(PLAIN), DECLINED["an invalid event"], _envelope([GOOD], tenant="b"),
              DECLINED["a delete by id"], _envelope([GOOD] * 3, request_id="")]  # fmt: skip
    taken: list[bytes] = []

    def spy(value: bytes | None, *args: Any) -> Any:
        found = forward_compiled(value, *args)
        if found is not None and value is not None:
            taken.append(value)
        return found

    monkeypatch.setattr(streams.app, "forward_compiled", spy)
    compiled = await _sent_by_forwarder(tmp_path / "compiled", values)
    assert len(taken) == 3
    assert len(compiled[1][0]) == 2  # two keys: acme/native and b/native
    monkeypatch.setattr(streams.app, "forward_compiled", lambda *_: None)
    python = await _sent_by_forwarder(tmp_path / "python", values)
    assert compiled == python


_kinds = st.sampled_from(["event", "event", "event", "delete", "replay", "filter"])


@st.composite
def _mixed(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """A native envelope of generated events with deletes, replays and filters among them."""
    kinds = draw(st.lists(_kinds, min_size=1, max_size=4))
    raws = {"delete": _DELETE, "replay": _REPLAY, "filter": _FILTER}
    items = [raws[k] if k in raws else upsert_item(b"e", draw(_event()).encode()) for k in kinds]
    return _raw_envelope(*items), kinds


def _only_declined_for_caution(value: bytes) -> bool:
    """Whether an envelope the Python path forwards plainly (events only, no header but the
    request's) holds an event the compiled path declines out of caution: what may be
    unstorable by the quick scan, a time msgspec reads that is not written plainly (escaped,
    a space for the `T`, a year by 1 or 9999, `-00:00`, ...), space around the event, or a
    field given twice (serde refuses it; msgspec takes the last)."""
    _, envelope = decode(value, "IngestEnvelope")
    raws = [item["raw"] for item in envelope["items"]]
    return any(
        may_be_unstorable([raw], {}) or raw != raw.strip() or not _plain_time(raw) or _twice(raw)
        for raw in raws
    )


def _twice(raw: bytes) -> bool:
    pairs = json.loads(raw, object_pairs_hook=lambda found: found)
    names = [name for name, _ in pairs]
    return len(names) != len(set(names))


_PLAIN_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)?")


def _plain_time(raw: bytes) -> bool:
    found = json.loads(raw).get("time")
    return (
        isinstance(found, str)
        and f'"{found}"'.encode() in raw
        and _PLAIN_TIME.fullmatch(found) is not None
        and 2 <= int(found[:4]) <= 9998
        and not found.endswith("-00:00")
    )


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(_mixed())
def test_the_compiled_path_declines_what_python_treats_specially_and_little_else(
    case: tuple[bytes, list[str]],
) -> None:
    value, kinds = case
    fast = forward_compiled(value, 40, 2, TOPICS)
    if set(kinds) != {"event"}:
        assert fast is None, kinds  # a delete, a replay or a filter: the Python path's
        return
    if fast is not None:
        assert _check(value)
        return
    messages = _python(value, 40, 2)
    plain = all(m[0] == TOPICS.events and m[3] is not None for m in messages)
    if plain and len(messages) == len(kinds):  # Python made an event of every item
        assert _only_declined_for_caution(value), [i["raw"] for i in decode(value)[1]["items"]]
