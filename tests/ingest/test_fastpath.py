"""The compiled door path (`fastpath/src/lib.rs`) against the Python one it stands in for.

`plan_native_body` may decline any request (the Python path then runs), but a plan it
makes must be the plan `plan_events` makes from the same body: the same accepted ids in
the same order, and the same envelopes byte for byte.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.events import body as bench_body
from ingest.plan import IngestPlan, RequestContext, plan_events, plan_native_body
from ingest.split import Unsplittable, split_json_events
from schemas.topics import TopicNames
from schemas.validators import validator_for

TOPICS = TopicNames("t.ingest.raw", "t.events", "t.events.dlq")
PARTITIONS = 6
MAX_EVENTS = 1000


def _ctx(family: str = "native", route: dict[str, str] | None = None) -> RequestContext:
    return RequestContext("acme", family, route or {}, "application/json",
                          datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC))  # fmt: skip


def _python_plan(ctx: RequestContext, body: bytes) -> IngestPlan | None:
    try:
        raws = split_json_events(body)
    except Unsplittable:
        return None
    return plan_events(ctx, raws, validator_for("native"), TOPICS, PARTITIONS)


def _assert_same(fast: IngestPlan, ctx: RequestContext, body: bytes) -> None:
    slow = _python_plan(ctx, body)
    assert slow is not None, "compiled path planned a body Python cannot split"
    assert [(r.index, r.event_id, r.accepted, r.id_assigned) for r in fast.results] == [
        (r.index, r.event_id, r.accepted, r.id_assigned) for r in slow.results
    ]
    assert fast.messages == slow.messages


def test_the_bench_body_takes_the_compiled_path_and_matches() -> None:
    ctx, body = _ctx(), bench_body("fp", 0, 255)
    fast = plan_native_body(ctx, body, TOPICS, PARTITIONS, MAX_EVENTS)
    assert fast is not None
    assert len(fast.results) == 255 and {m[1] for m in fast.messages} == set(range(PARTITIONS))
    _assert_same(fast, ctx, body)


PLAIN = (
    b'[{"id":"a-1","type":"t","source":"/s","time":"2024-02-29T23:59:59.5+05:30","data":{}},'
    b' {"type":"t\\u00e9","source":"s","time":"2024-11-23T10:00:00","data":{"n":1e5},'
    b'"id":"b\\"2","subject":"\xc3\xa9","extra":[1,{"x":null}]}]'
)


def test_escapes_offsets_naive_times_and_unknown_fields_take_the_compiled_path() -> None:
    ctx = _ctx()
    fast = plan_native_body(ctx, PLAIN, TOPICS, PARTITIONS, MAX_EVENTS)
    assert fast is not None
    assert [r.event_id for r in fast.results] == ["a-1", 'b"2']
    _assert_same(fast, ctx, PLAIN)


def _one(**fields: str) -> bytes:
    event = {"id": '"x"', "type": '"t"', "source": '"s"', "time": '"2024-01-01T00:00:00Z"',
             "data": '{"a":1}'} | fields  # fmt: skip
    return ("[{" + ",".join(f'"{k}":{v}' for k, v in event.items() if v) + "}]").encode()


DECLINED = {
    "no id (the door assigns one)": _one(id=""),
    "null id": _one(id="null"),
    "invalid event": _one(type="5"),
    "data not an object": _one(data="[1]"),
    "NUL escape": _one(data='{"a":"\\u0000"}'),
    "long exponent": _one(data='{"a":1e1000}'),
    "long mantissa": _one(data='{"a":' + "1" * 3001 + "}"),
    "long exponent beside number-like strings": _one(
        id='"e2e-65284"', data='{"a":"x\\"1e5","b":1e99999,"c":"2e-12345"}'
    ),
    "seconds past 59": _one(time='"2024-01-01T00:00:60Z"'),
    "an offset of -00:00": _one(time='"2024-01-01T00:00:00-00:00"'),
    "seven fraction digits": _one(time='"2024-01-01T00:00:00.1234567Z"'),
    "year 1 (could leave Python's range in UTC)": _one(time='"0001-01-01T00:00:00+01:00"'),
    "duplicate key": b'[{"id":"x","id":"y","type":"t","source":"s","time":"2024-01-01T00:00:00Z",'
    b'"data":{}}]',
    "lone surrogate": _one(id='"\\ud800"'),
    "one object, not an array": _one()[1:-1],
    "empty array": b"[]",
    "not JSON": b"[{",
    "type too long": _one(type=json.dumps("x" * 1025)),
    "invalid UTF-8 in an unknown field": _one(extra='"\u00ff"').replace("\u00ff".encode(), b"\xff"),
    "a raw control character in an unknown field": _one(extra='"a\tb"'),
    "a trailing comma": _one()[:-1] + b",]",
    "something after the array": _one() + b" x",
    "two arrays": _one() + _one(),
    "a no-break space before the array": "\u00a0".encode() + _one(),
}


def test_what_the_compiled_path_declines() -> None:
    for reason, body in DECLINED.items():
        assert plan_native_body(_ctx(), body, TOPICS, PARTITIONS, MAX_EVENTS) is None, reason
    many = bench_body("fp", 0, 11)
    assert plan_native_body(_ctx(), many, TOPICS, PARTITIONS, 10) is None
    assert plan_native_body(_ctx(), many, TOPICS, PARTITIONS, 11) is not None
    assert plan_native_body(_ctx("dashdive"), many, TOPICS, PARTITIONS, 11) is None
    assert plan_native_body(_ctx(route={"k": "v"}), many, TOPICS, PARTITIONS, 11) is None


def test_number_like_text_in_strings_takes_the_compiled_path() -> None:
    """Text that reads like a long number to the byte scans, inside strings only (an id such
    as `e2e-65284`, a UUID with `e` and four digits, digits as text): no number is long, so
    the compiled path plans it, as Python does."""
    for body in (
        bench_body("0f932a-e2e", 65_284, 3),
        _one(id='"3f2e-1234-8e91"', data='{"s":"' + "1" * 3001 + '","u":"a\\"2e-12345"}'),
    ):
        ctx = _ctx()
        fast = plan_native_body(ctx, body, TOPICS, PARTITIONS, MAX_EVENTS)
        assert fast is not None, body[:80]
        _assert_same(fast, ctx, body)


def test_limits_are_counted_in_characters() -> None:
    wide = json.dumps("é" * 1024, ensure_ascii=False)  # 2,048 bytes, 1,024 characters
    ctx = _ctx()
    fast = plan_native_body(ctx, _one(type=wide), TOPICS, PARTITIONS, MAX_EVENTS)
    assert fast is not None
    _assert_same(fast, ctx, _one(type=wide))
    assert plan_native_body(_ctx(), _one(id=json.dumps("é" * 257)), TOPICS, PARTITIONS,
                            MAX_EVENTS) is None  # fmt: skip


_space = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])
_texts = st.one_of(
    st.text(max_size=12),
    st.text(alphabet='ab\\"/é\u2028😀0eE+-', max_size=6),
    st.sampled_from(
        [
            "",
            "x" * 1024,
            "x" * 1025,
            "é" * 256,
            "é" * 257,
            "1e0000",
            "\\u0000",
            "e2e-65284",
            "1" * 3001,
        ]
    ),
)
_plain_strings = st.text(alphabet="abc-/.é😀 ", min_size=1, max_size=8)
_string_json = st.builds(lambda t, a: json.dumps(t, ensure_ascii=a), _texts, st.booleans())
_odd_json = st.sampled_from(['"\\ud800"', '"\\u0000"', "null", "1", "true", '"a\\/b"', "[]"])


def _timestamps(fractions: list[str], zones: list[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda d, frac, zone: '"' + d.strftime("%Y-%m-%dT%H:%M:%S") + frac + zone + '"',
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
        st.sampled_from(fractions),
        st.sampled_from(zones),
    )


_times = _timestamps(["", ".5", ".123456"], ["", "Z", "+00:00", "+05:30", "-23:59"])
_odd_times = _timestamps(
    [".1234567", ".", ".123456789", ""], ["z", "-00:00", "+24:00", "+1:00", "Z"]
) | st.sampled_from(
    ['"2024-02-30T00:00:00Z"', '"2023-02-29T00:00:00Z"', '"2024-01-01 00:00:00Z"',
     '"2024-01-01t00:00:00Z"', '"2024-1-01T00:00:00Z"', '"24:00:00"', "null",
     '"2024-01-01T24:00:00Z"', '"2024-01-01"', "12", '"2024-01-01T00:00:60Z"']
)  # fmt: skip
_numbers = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e999", "1E+1000", "-0.5e-0001", "1" * 3001, "1" * 3000, "1.0e10", "2e0999"]),
)
_data = st.builds(lambda n, s: '{"n":' + n + ',"s":' + json.dumps(s) + "}",
                  st.integers().map(str), _plain_strings)  # fmt: skip
_odd_data = st.builds(
    lambda n, s: '{"n":' + n + ',"s":' + s + "}", _numbers, _string_json
) | st.sampled_from(["{}", "[]", '"x"', "null", '{"a":{"b":[1,2,{}]}}', '{"a":"\\u0000"}'])


def _mostly(draw: st.DrawFn, usual: st.SearchStrategy[str], odd: st.SearchStrategy[str]) -> str:
    """A value from `usual` nine times in ten: most bodies stay plain enough to be planned."""
    return draw(odd) if draw(st.sampled_from(range(10))) == 9 else draw(usual)


@st.composite
def _event(draw: st.DrawFn) -> str:
    plain = st.builds(json.dumps, _plain_strings)
    fields = {
        "id": _mostly(draw, plain, st.one_of(_string_json, _odd_json, st.just(""))),
        "type": _mostly(draw, plain, st.one_of(_string_json, _odd_json)),
        "source": _mostly(draw, plain, st.one_of(_string_json, _odd_json)),
        "time": _mostly(draw, _times, _odd_times),
        "data": _mostly(draw, _data, _odd_data),
        "subject": _mostly(draw, st.one_of(plain, st.just("")), st.one_of(_string_json, _odd_json)),
    }
    pairs = [(k, v) for k, v in fields.items() if v]
    if draw(st.sampled_from(range(5))) == 4:
        pairs += draw(st.lists(st.tuples(st.sampled_from(["extra", "id", "type"]), _string_json),
                               max_size=2))  # fmt: skip
    pairs = draw(st.permutations(pairs))
    sp = draw(_space)
    return "{" + sp + ("," + sp).join(f'"{k}"{sp}:{sp}{v}' for k, v in pairs) + sp + "}"


@st.composite
def _body(draw: st.DrawFn) -> bytes:
    events = draw(st.lists(_event(), min_size=1, max_size=3))
    sp = draw(_space)
    return ("[" + sp + ("," + sp).join(events) + sp + "]").encode()


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(_body())
@example(PLAIN)
def test_whatever_the_compiled_path_plans_python_plans_the_same(body: bytes) -> None:
    ctx = _ctx()
    fast = plan_native_body(ctx, body, TOPICS, PARTITIONS, MAX_EVENTS)
    if fast is not None:
        _assert_same(fast, ctx, body)


_plain_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00eE\\"),
                      min_size=1, max_size=40)  # fmt: skip
"""Any text but NUL (which cannot be stored), backslashes and exponent marks: `\\u0000` or a
digit, `e` and four digits anywhere is where the compiled path declines more than it must."""


@given(st.lists(st.fixed_dictionaries({
    "id": _plain_text, "type": _plain_text, "source": _plain_text,
    "time": st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31),
                         timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    "data": st.dictionaries(_plain_text, st.integers(-(10**30), 10**30), max_size=3),
}), min_size=1, max_size=8))  # fmt: skip
def test_plainly_valid_events_take_the_compiled_path(events: list[dict[str, object]]) -> None:
    ctx, body = _ctx(), json.dumps(events).encode()
    fast = plan_native_body(ctx, body, TOPICS, PARTITIONS, MAX_EVENTS)
    assert fast is not None, body
    _assert_same(fast, ctx, body)


# Adversarial `data`: what the issue-15 attack used (a lone surrogate, deep nesting) and its
# neighbours. `data` is skipped by serde as a raw value, so it is where the two paths' JSON
# readers differ most: anything the compiled path plans here, Python must accept the same.
_valid_escapes = st.sampled_from([
    "\\ud83d\\ude00", "\\uD83D\\uDE00", "\\u00e9", "\\u001f", "\\\\", "\\/", "\\b", "\\\\ud800",
    "\\\\\\ud83d\\ude00", "\u2028", "é", "😀", "\x7f", "a", "{", "]",
])  # fmt: skip
_bad_escapes = st.sampled_from([
    "\\ud800", "\\udc00", "\\uDBFF", "\\ud83d", "\\ude00x", "\\ud83d\\u0041", "\\u0000",
    "\\x", "\\u12", "\\u12g4", "\\u+d80", "\\", "\x01", "\x1f", "\t", "\n",
])  # fmt: skip
_escapes = st.one_of(*[_valid_escapes] * 12, _bad_escapes)  # most strings stay valid
_adversarial_strings = st.lists(_escapes, max_size=4).map(lambda parts: '"' + "".join(parts) + '"')
_adversarial_numbers = st.one_of(*[_numbers] * 8, st.sampled_from(
    ["0", "-0", "1e5", "1E+400", "0.0000", "01", "1.", "-", "1e", ".5", "+1", "1_0", "0x10",
     "NaN", "Infinity", "1e0999", "9" * 40, "-1.5e-5"]
))  # fmt: skip
_spaces = st.one_of(*[st.sampled_from(["", " ", "\n", "\r\n", "\t"])] * 12,
                    st.sampled_from(["\f", "\v", "\u00a0", "\u2028"]))  # fmt: skip
_leaves = st.one_of(_adversarial_strings, _adversarial_numbers,
                    st.sampled_from(["true", "false", "null"] * 4 + ["tru", "True"]))  # fmt: skip


def _container(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    keys = st.one_of(st.sampled_from(['"k"', '"k"', '"n"']), _adversarial_strings)
    pairs = st.lists(st.tuples(keys, children, _spaces), max_size=3)
    obj = pairs.map(lambda ps: "{" + ",".join(f"{s}{k}{s}:{s}{v}" for k, v, s in ps) + "}")
    arr = st.lists(children, max_size=3).map(lambda vs: "[" + ",".join(vs) + "]")
    return obj | arr


_values = st.recursive(_leaves, _container, max_leaves=8)


@st.composite
def _deep(draw: st.DrawFn) -> str:
    """Objects and arrays nested around the depth cap (the event adds one level)."""
    levels = draw(st.integers(60, 70))
    opens = draw(st.lists(st.sampled_from(['{"a":', "["]), min_size=levels, max_size=levels))
    inner = draw(_leaves)
    closes = "".join("}" if o.startswith("{") else "]" for o in reversed(opens))
    return "".join(opens) + inner + closes


_adversarial_data = st.one_of(
    _container(_values), _deep(), _values, st.builds(lambda v: '{"s":' + v + "}", _leaves)
)


@st.composite
def _adversarial_body(draw: st.DrawFn) -> bytes:
    events = []
    for i in range(draw(st.integers(1, 3))):
        data = draw(_adversarial_data)
        events.append(f'{{"id":"e{i}","type":"t","source":"s","time":"2024-11-23T10:00:00Z",'
                      f'"data":{data}}}')  # fmt: skip
    return ("[" + ("," + draw(_spaces)).join(events) + "]").encode("utf-8", "surrogatepass")


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(_adversarial_body())
@example(
    b'[{"id":"x","type":"t","source":"s","time":"2024-11-23T10:00:00Z","data":{"s":"\\ud800"}}]'
)
@example(b'[{"id":"x","type":"t","source":"s","time":"2024-11-23T10:00:00Z","data":'
         + b'{"a":' * 64 + b"1" + b"}" * 64 + b"}]")  # fmt: skip
def test_adversarial_data_the_compiled_path_plans_python_plans_the_same(body: bytes) -> None:
    ctx = _ctx()
    fast = plan_native_body(ctx, body, TOPICS, PARTITIONS, MAX_EVENTS)
    if fast is not None:
        _assert_same(fast, ctx, body)


_depth_bytes = st.lists(
    st.sampled_from([b"{", b"[", b"}", b"]", b'"', b"\\", b"a", b":", b","]), max_size=300
).map(b"".join)


@settings(max_examples=1000)
@given(st.lists(_depth_bytes, min_size=1, max_size=4), st.integers(0, 80))
@example([b"[" * 65, b"[" * 64, b'"' + b"[" * 70, b'"\\"' + b"[" * 70], 64)
def test_the_compiled_depth_check_reads_nesting_as_python_does(raws: list[bytes], cap: int) -> None:
    from sluice_fastpath import too_deep

    from schemas.nesting import json_depth, too_deep_python

    expected = [i for i, raw in enumerate(raws) if json_depth(raw) > cap]
    assert too_deep(raws, cap) == expected
    assert [i for i, raw in enumerate(raws) if too_deep_python(raw, cap)] == expected


def test_cloudevents_and_binary_mode_are_declined_for_the_python_path() -> None:
    plain = b'{"id":"a","type":"t","source":"/s","time":"2024-01-01T00:00:00Z","data":{}}'
    assert plan_native_body(_ctx(), b"[" + plain + b"]", TOPICS, PARTITIONS, MAX_EVENTS)
    for spec in (b'"1.0"', b'"0.3"', b"1.0", b'{"v":1}'):
        cloudevent = plain[:-1] + b',"specversion":' + spec + b"}"
        assert plan_native_body(_ctx(), b"[" + cloudevent + b"]", TOPICS, PARTITIONS,
                                MAX_EVENTS) is None  # fmt: skip
    escaped = plain[:-1] + b',"spec\\u0076ersion":"0.3"}'  # the key as msgspec reads it
    assert plan_native_body(_ctx(), b"[" + escaped + b"]", TOPICS, PARTITIONS, MAX_EVENTS) is None
    binary = _ctx(route={"ce-specversion": "1.0", "ce-id": "a", "ce-type": "t",
                         "ce-source": "/s", "ce-time": "2024-01-01T00:00:00Z"})  # fmt: skip
    assert plan_native_body(binary, b"[" + plain + b"]", TOPICS, PARTITIONS, MAX_EVENTS) is None
