"""CloudEvents validation (`schemas.cloudevents`), through the native validator."""

from __future__ import annotations

import json
from typing import Any

from schemas.cloudevents import binary_route, is_json_type
from schemas.native import validate_native
from schemas.outcome import Rejected, ValidEvent
from schemas.validators import validate_all

EVENT = {"specversion": "1.0", "id": "e1", "type": "t", "source": "/s",
         "time": "2024-01-01T01:00:00+01:00"}  # fmt: skip
HEADERS = {f"ce-{k}": v for k, v in EVENT.items()}


def _structured(**changes: Any) -> bytes:
    return json.dumps({**EVENT, **changes}).encode()


def _codes(outcome: object) -> list[str]:
    assert isinstance(outcome, Rejected), outcome
    return [v.code for v in outcome.violations]


def test_structured_extensions_and_attributes_are_kept_beside_the_data() -> None:
    outcome = validate_native(_structured(data=[1, "x"], traceparent="00-1", n=2, flag=True,
                                          dataschema="urn:s", none=None), {})  # fmt: skip
    assert isinstance(outcome, ValidEvent) and outcome.data_json == '[1,"x"]'
    assert outcome.time.isoformat() == "2024-01-01T00:00:00+00:00"
    assert json.loads(outcome.attributes_json or "") == {
        "specversion": "1.0", "dataschema": "urn:s",
        "extensions": {"traceparent": "00-1", "n": 2, "flag": True},
    }  # fmt: skip


def test_a_plain_native_event_has_no_attributes_and_still_drops_unknown_fields() -> None:
    raw = b'{"type":"t","source":"/s","time":"2024-01-01T00:00:00Z","data":{},"x":1}'
    outcome = validate_native(raw, {})
    assert isinstance(outcome, ValidEvent) and outcome.attributes_json is None


def test_structured_refusals_list_every_reason() -> None:
    assert _codes(validate_native(_structured(specversion="0.3"), {})) == [
        "unsupported_specversion"
    ]
    bad = _structured(data={}, data_base64="***", time="soon", Ext=1, obj={"a": 1}, type=None)
    assert sorted(_codes(validate_native(bad, {}))) == sorted([
        "conflicting_fields", "missing_field", "invalid_timestamp", "invalid_value",
        "invalid_extension", "invalid_extension",
    ])  # fmt: skip
    assert _codes(validate_native(_structured(specversion=1.0), {})) == ["unsupported_specversion"]


def test_binary_mode_reads_headers_percent_decoded_and_the_body_by_content_type() -> None:
    route = binary_route({**HEADERS, "ce-Note": "caf%C3%A9", "Content-Type": "text/csv"})
    outcome = validate_native(b"a,b\n", route)
    assert isinstance(outcome, ValidEvent) and outcome.data_json == "null"
    assert json.loads(outcome.attributes_json or "") == {
        "specversion": "1.0", "datacontenttype": "text/csv", "data_base64": "YSxiCg==",
        "extensions": {"note": "café"},
    }  # fmt: skip
    as_json = validate_native(b'{"a": 1}', binary_route(HEADERS))  # no Content-Type
    assert isinstance(as_json, ValidEvent) and as_json.data_json == '{"a":1}'
    assert _codes(validate_native(b"{", binary_route({**HEADERS, "content-type":
                                                       "application/json"}))) == [
        "malformed_json"
    ]  # fmt: skip


def test_binary_mode_refuses_non_utf8_and_nul_headers_the_same_way_everywhere() -> None:
    raw_bytes = binary_route({**HEADERS, "ce-x": b"\xff".decode("utf-8", "surrogateescape")})
    assert raw_bytes["ce-x"] == "%FF"  # what the envelope and the dead letter carry
    assert _codes(validate_native(b"", raw_bytes)) == ["invalid_header"]
    nul = binary_route({**HEADERS, "ce-subject": "a%00b"})
    assert _codes(validate_all(validate_native, [b""], nul)[0]) == ["unsupported_character"]


def test_opaque_binary_data_is_not_read_as_json_nesting() -> None:
    route = binary_route({**HEADERS, "Content-Type": "application/octet-stream"})
    assert isinstance(validate_all(validate_native, [b"[" * 500], route)[0], ValidEvent)
    deep = binary_route({**HEADERS, "Content-Type": "application/json"})
    assert _codes(validate_all(validate_native, [b"[" * 500], deep)[0]) == ["too_deep"]


def test_json_content_types() -> None:
    assert is_json_type("application/json; charset=utf-8") and is_json_type("text/x+json")
    assert not is_json_type("text/plain") and not is_json_type(None)
    assert not is_json_type("application/jsonx")
