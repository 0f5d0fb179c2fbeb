from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from ingest.plan import RequestContext, plan_deletes, plan_events, plan_unsplittable
from schemas.codec import decode
from schemas.identity import Identity, partition_for
from schemas.outcome import Outcome
from schemas.topics import TopicNames
from schemas.validators import validator_for

TOPICS = TopicNames.for_prefix("t.")
CTX = RequestContext("acme", "native", {}, "application/json", datetime(2024, 1, 1, tzinfo=UTC))


def _event(i: int, with_id: bool = True) -> bytes:
    ident = f'"id":"e{i}",' if with_id else ""
    return (
        f'{{{ident}"type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{{"i":{i}}}}}'
    ).encode()


def test_valid_events_are_enveloped_once_per_partition() -> None:
    raws = [_event(i) for i in range(50)]
    plan = plan_events(CTX, raws, validator_for("native"), TOPICS, 4)
    assert plan.accepted == 50
    partitions = [m[1] for m in plan.messages]
    assert all(m[0] == TOPICS.ingest_raw for m in plan.messages)
    assert len(partitions) == len(set(partitions)) <= 4
    seen = []
    for _topic, partition, _key, value, _headers in plan.messages:
        assert value is not None
        _, envelope = decode(value, "IngestEnvelope")
        assert envelope["tenant"] == "acme"
        for item in envelope["items"]:
            key = Identity("acme", "native", item["event_id"]).key()
            assert partition_for(key, 4) == partition
            seen.append(item["raw"])
    assert sorted(seen) == sorted(raws)


def test_missing_ids_are_assigned_and_reported() -> None:
    plan = plan_events(CTX, [_event(1, with_id=False)], validator_for("native"), TOPICS, 4)
    (result,) = plan.results
    assert result.accepted and result.event_id and len(result.event_id) == 36


def test_rejected_events_become_dead_letters_with_their_bytes() -> None:
    bad = b'{"type": 1}'
    plan = plan_events(CTX, [_event(1), bad], validator_for("native"), TOPICS, 4)
    assert [r.accepted for r in plan.results] == [True, False]
    dlq = [m for m in plan.messages if m[0] == TOPICS.dlq]
    assert len(dlq) == 1
    value = dlq[0][3]
    assert value is not None
    _, record = decode(value, "DeadLetter")
    assert record["raw"] == bad
    assert record["stage"] == "door"
    assert record["dead_letter_id"] == plan.results[1].dead_letter_id
    assert {r["code"] for r in record["reasons"]} >= {"wrong_type", "missing_field"}
    assert dict(dlq[0][4] or [])["__sluice.errors.stage"] == b"door"


def test_unsplittable_body_is_one_dead_letter() -> None:
    plan = plan_unsplittable(CTX, b"<xml/>", "not JSON", TOPICS, 4)
    assert len(plan.messages) == 1 and plan.accepted == 0
    value = plan.messages[0][3]
    assert value is not None
    assert decode(value, "DeadLetter")[1]["raw"] == b"<xml/>"


def test_deletes_go_to_the_ids_partition() -> None:
    plan = plan_deletes(CTX, ["e1"], "receipt", TOPICS, 4)
    ((topic, partition, _k, value, _h),) = plan.messages
    assert topic == TOPICS.ingest_raw
    assert partition == partition_for(Identity("acme", "native", "e1").key(), 4)
    assert value is not None
    (item,) = decode(value, "IngestEnvelope")[1]["items"]
    assert item["op"] == "delete" and item["receipt_id"] == "receipt"


def test_all_or_nothing_dead_letters_every_event_when_one_is_invalid() -> None:
    bad = b'{"type": 1}'
    raws = [_event(1), bad, _event(2)]
    plan = plan_events(CTX, raws, validator_for("native"), TOPICS, 4, all_or_nothing=True)
    assert plan.accepted == 0
    assert all(m[0] == TOPICS.dlq for m in plan.messages) and len(plan.messages) == 3
    stored = [decode(m[3] or b"", "DeadLetter")[1] for m in plan.messages]
    assert [d["raw"] for d in stored] == raws
    assert [d["event_id"] for d in stored] == ["e1", None, "e2"]
    assert stored[0]["reasons"][0]["code"] == "batch_rejected"
    assert stored[1]["reasons"][0]["code"] != "batch_rejected"


def test_all_or_nothing_changes_nothing_when_every_event_is_valid() -> None:
    raws = [_event(i) for i in range(3)]
    plan = plan_events(CTX, raws, validator_for("native"), TOPICS, 4, all_or_nothing=True)
    assert plan.accepted == 3
    assert all(m[0] == TOPICS.ingest_raw for m in plan.messages)


def test_a_validator_exception_dead_letters_only_that_event() -> None:
    def fragile(raw: bytes, route: Mapping[str, str]) -> Outcome:
        if b"boom" in raw:
            raise UnicodeDecodeError("utf-8", raw, 0, 1, "bad byte")
        return validator_for("native")(raw, route)

    plan = plan_events(CTX, [b'{"boom":1}', _event(2)], fragile, TOPICS, 4)
    assert [r.accepted for r in plan.results] == [False, True]
    assert plan.results[0].reasons[0].code == "processing_error"


def test_one_unstorable_event_in_a_batch_is_refused_alone() -> None:
    """The door scans a request for NUL and huge numbers once, then checks each event only
    when the scan fires: the event that holds one is refused, its neighbours are not."""
    raws = [_event(i) for i in range(20)]
    raws[7] = raws[7].replace(b'"i":7', b'"i":1e5000')
    raws[12] = raws[12].replace(b'"type":"t"', b'"type":"t\\u0000"')
    plan = plan_events(CTX, raws, validator_for("native"), TOPICS, 4)
    refused = {r.index: r.reasons[0].code for r in plan.results if not r.accepted}
    assert refused == {7: "unsupported_number", 12: "unsupported_character"}
    assert plan.accepted == 18


def test_an_idempotency_key_derives_the_ids_the_door_assigns() -> None:
    no_id = b'{"type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{}}'
    carried = no_id.replace(b'{"type"', b'{"id":"own","type"')
    raws = [no_id, carried, no_id]
    native = validator_for("native")
    topics = TopicNames.for_prefix("p.")

    def ids(ctx: RequestContext) -> list[str]:
        return plan_events(ctx, raws, native, topics, 4).accepted_ids()

    keyed = replace(CTX, idempotency_key="retry-me")
    first, again = ids(keyed), ids(replace(keyed, request_id="another"))
    assert first == again and first[1] == "own" and len(set(first)) == 3
    assert ids(replace(keyed, idempotency_key="other"))[0] != first[0]
    assert ids(replace(keyed, tenant="else"))[0] != first[0]  # derived per tenant
    assert ids(CTX)[0] != ids(CTX)[0]  # without the key, new ids each time


def test_the_door_applies_contracts_and_the_compiled_path_declines_for_them() -> None:
    from ingest.plan import COMPILED, plan_native_body
    from schemas.contracts import Contract, Contracts, compile_schema

    schema = '{"type":"object","properties":{"i":{"type":"integer","maximum":1}}}'
    contracts = Contracts({("acme", "native.t"): Contract("native.t", 1, 1001,
                                                          compile_schema(schema))})  # fmt: skip
    plan = plan_events(CTX, [_event(1), _event(2)], validator_for("native"), TOPICS, 4,
                       contracts=contracts)  # fmt: skip
    assert [r.accepted for r in plan.results] == [True, False]
    (reason,) = plan.results[1].reasons
    assert (reason.code, reason.path) == ("schema_violation", "/i")
    (dead,) = [m for m in plan.messages if m[0] == TOPICS.dlq]
    assert decode(dead[3], "DeadLetter")[1]["raw"] == _event(2)
    body = b"[" + _event(1) + b"," + _event(2) + b"]"
    assert plan_native_body(CTX, body, TOPICS, 4, 100, contracts) is None
    other = replace(CTX, tenant="globex")  # another tenant's requests keep the fast path
    assert (plan_native_body(other, body, TOPICS, 4, 100, contracts) is not None) == COMPILED
