"""JSON Schema compatibility and registration bounds through the registry's HTTP API.

confluent-kafka's own `SchemaRegistryClient.test_compatibility` gets the verdicts of
`schemas.json_compatibility`; `?verbose=true` lists every reason with its JSON pointer, a
refused registration answers 409 with all of them; schemas past the bounds (size, nesting,
`$ref`s, an unknown draft) get the registry's 4xx, never a 5xx.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryError

from schemas.compatibility import MAX_NESTING, MAX_REFS
from sluice.stack import ProcessStack
from tests.integration.test_schema_registry import WRITE, _config, client, rest

pytestmark = pytest.mark.integration


def js(document: Any) -> Schema:
    return Schema(json.dumps(document), "JSON")


def body(document: Any) -> dict[str, Any]:
    return {"schema": json.dumps(document), "schemaType": "JSON"}


V1 = {"type": "object", "additionalProperties": False,
      "properties": {"units": {"type": "integer"}, "region": {"type": "string"}}}  # fmt: skip
WIDER = {**V1, "properties": {**V1["properties"], "units": {"type": "number"},
                              "note": {"type": "string"}}}  # fmt: skip
BREAKING = {**V1, "properties": {**V1["properties"], "units": {"type": "string"}},
            "required": ["region"]}  # fmt: skip


def test_json_compatibility_through_the_client(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(f"sr-json-{uuid.uuid4().hex[:8]}", WRITE)
    sr, subject = client(stack, key), "native.usage.api_call"
    first = sr.register_schema(subject, js(V1))
    assert sr.test_compatibility(subject, js(WIDER)) is True  # BACKWARD: new reads old
    assert sr.test_compatibility(subject, js(BREAKING)) is False

    verbose = rest(stack, key, "POST",
                   f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
                   body(BREAKING)).json()  # fmt: skip
    assert verbose["is_compatible"] is False
    messages = verbose["messages"]
    assert any("#/properties/units/type" in m and "allows integer" in m for m in messages)
    assert any("'region' became required" in m for m in messages), messages

    refused = rest(stack, key, "POST", f"/subjects/{subject}/versions", body(BREAKING))
    assert (refused.status, refused.json()["error_code"]) == (409, 409)
    assert all(m in refused.json()["message"] for m in messages)

    with pytest.raises(SchemaRegistryError) as caught:
        sr.register_schema(subject, js(BREAKING))
    assert caught.value.http_status_code == 409
    second = sr.register_schema(subject, js(WIDER))
    assert second != first

    # FORWARD: the old must read the new; V1 is closed and integer-only, WIDER is neither
    sr.set_config(subject, _config("FORWARD"))
    forward = rest(stack, key, "POST",
                   f"/compatibility/subjects/{subject}/versions/1?verbose=true",
                   body(WIDER)).json()  # fmt: skip
    assert forward["is_compatible"] is False
    assert any(m.startswith("FORWARD: #/properties/") for m in forward["messages"]), forward
    # FULL_TRANSITIVE against [V1, WIDER]: WIDER itself breaks FORWARD with V1 only
    sr.set_config(subject, _config("FULL_TRANSITIVE"))
    assert sr.test_compatibility(subject, js(WIDER)) is False
    sr.set_config(subject, _config("FULL"))
    assert sr.test_compatibility(subject, js(WIDER)) is True  # latest only: WIDER == WIDER


def _nested(levels: int) -> dict[str, Any]:
    """A schema whose JSON nests `levels` objects deep."""
    document: dict[str, Any] = {"type": "string"}
    for _ in range((levels - 1) // 2):
        document = {"properties": {"a": document}}
    return document


@pytest.mark.parametrize(
    ("case", "payload", "statuses"),
    [
        ("nested past the bound", body(_nested(MAX_NESTING + 2)), {422}),
        ("too many $refs", body({"$defs": {"a": {}},
                                 "allOf": [{"$ref": "#/$defs/a"}] * (MAX_REFS + 1)}), {422}),
        ("unknown draft", body({"$schema": "https://json-schema.org/draft/2042-01/schema"}), {422}),
        ("draft as a number", body({"$schema": 2020}), {422}),
        ("10 MB schema", {"schema": json.dumps({"enum": ["x" * 1000] * 10_000}),
                          "schemaType": "JSON"}, {413, 422}),
        ("not a schema", body({"type": "objekt"}), {422}),
    ],
)  # fmt: skip
def test_registration_bounds(
    stack: ProcessStack, new_key: Callable[..., str], case: str, payload: Any,
    statuses: set[int],
) -> None:  # fmt: skip
    key = new_key(f"sr-bounds-{uuid.uuid4().hex[:8]}", WRITE)
    answer = rest(stack, key, "POST", "/subjects/bounded/versions", payload)
    assert answer.status in statuses, (case, answer.status, answer.body[:300])
    assert answer.json()["error_code"] in {42201, 41301} and answer.json()["message"]
    # within the bounds the same shapes register
    fine = rest(stack, key, "POST", "/subjects/bounded/versions", body(_nested(MAX_NESTING - 2)))
    assert fine.status == 200, fine.body[:300]
