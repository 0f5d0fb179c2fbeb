"""The OpenAPI document: every route of the code is described and nothing else is; every
reference resolves; and, against the running stack, schemathesis finds no server error and
no answer that contradicts the document."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from producer_api.app import create_app
from producer_api.openapi import (
    build_document,
    described_operations,
    described_paths,
    routed_operations,
)
from runtime.settings import Settings
from schemas.families.baselime import validate_baselime
from schemas.families.dakkio import validate_dakkio
from schemas.families.dynatrace import validate_dynatrace
from schemas.families.posthog import validate_posthog
from schemas.outcome import Rejected
from schemas.validators import Validator
from sluice.stack import ProcessStack
from tests.httpclient import call

EXAMPLES_PER_OPERATION = 8
SLOW_EXAMPLES_PER_OPERATION = 60
ALL_SCOPES = ["events:write", "events:read", "events:delete", "deadletters:read",
              "deadletters:replay", "schemas:read", "schemas:write", "admin"]  # fmt: skip


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(create_app(Settings()))


def test_every_route_is_described_and_every_description_is_routed() -> None:
    routed = routed_operations(create_app(Settings()))
    described = described_operations()
    assert routed - described == set(), "routes without a description in openapi_schemas/"
    assert described - routed == set(), "descriptions of routes the code does not have"
    for family in ("baselime", "dynatrace", "dakkio", "dashdive", "datahub"):
        assert any(path.startswith(f"/{family}/") for _, path in routed), family


def test_the_document_lists_exactly_the_routes(document: dict[str, Any]) -> None:
    listed = {(m, p) for p, item in document["paths"].items() for m in item if m != "parameters"}
    assert listed == routed_operations(create_app(Settings()))
    assert document["openapi"] == "3.1.0"


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = list(_refs(document))
    assert refs
    for ref in refs:
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"unresolved {ref}"
            node = node[part]


def test_every_operation_has_auth_answers_and_declared_path_parameters(
    document: dict[str, Any],
) -> None:
    schemes = set(document["components"]["securitySchemes"])
    for path, item in document["paths"].items():
        templated = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation["responses"], (method, path)
            for requirement in operation["security"]:
                assert set(requirement) <= schemes, (method, path)
            params = [*item.get("parameters", []), *operation.get("parameters", [])]
            declared = {_resolve(document, p)["name"] for p in params
                        if _resolve(document, p)["in"] == "path"}  # fmt: skip
            assert declared == templated, (method, path)


def test_each_family_names_its_key_header(document: dict[str, Any]) -> None:
    def schemes(path: str, method: str = "post") -> set[str]:
        return {name for req in document["paths"][path][method]["security"] for name in req}

    assert "ApiKey" in schemes("/baselime/v1/{dataset}/{namespace}")
    assert "ApiToken" in schemes("/dynatrace/platform/ingest/v1/events")
    assert "ApiKey" in schemes("/dakkio/api/data")
    assert "Bearer" in schemes("/datahub/v1/events")
    assert "ApiKey" in schemes("/dashdive/{service}")
    assert document["components"]["securitySchemes"]["ApiToken"]["name"] == "Authorization"


def test_request_schemas_come_from_the_validators(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["NativeEvent"]["required"] == ["type", "source", "time", "data"]
    assert {"bucketId", "dataSourceId", "values"} <= set(schemas["DakkioDataPoint"]["required"])
    s3_get = schemas["Dashdive_s3_GetObject"]
    assert s3_get["properties"]["action"] == {"const": "GetObject"}
    assert "timestamp" in s3_get["required"]
    assert set(described_paths()) == set(document["paths"])


def _posthog_events(body: Any) -> list[Any]:
    """The events of a PostHog JSON body (a batch, an array or one event); none for the
    form and gzip bodies (a form is a dict with neither `batch` nor `event`)."""
    if isinstance(body, dict):
        if "batch" in body:
            return list(body["batch"])
        return [body] if "event" in body else []
    return list(body) if isinstance(body, list) else []


@pytest.mark.parametrize(
    ("path", "validate", "events"),
    [
        ("/baselime/v1/{dataset}/{namespace}", validate_baselime, lambda body: body),
        ("/dynatrace/platform/ingest/v1/events", validate_dynatrace,
         lambda body: body if isinstance(body, list) else [body]),
        ("/dakkio/api/data", validate_dakkio, lambda body: [body]),
        ("/posthog/batch/", validate_posthog, _posthog_events),
    ],
)  # fmt: skip
def test_every_event_the_document_allows_the_validator_accepts(
    document: dict[str, Any], path: str, validate: Validator, events: Callable[[Any], list[Any]]
) -> None:
    """The request schemas promise no more than the validators accept (NUL aside: JSON
    Schema cannot exclude it, and PostgreSQL cannot store it)."""
    operation = schemathesis.openapi.from_dict(document).find_operation_by_path("POST", path)
    route = {"dataset": "ds", "namespace": "ns", "received_at": "2024-01-01T00:00:00+00:00"}
    refused: list[tuple[bytes, Any]] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def check(case: schemathesis.Case) -> None:
        for event in events(case.body):
            raw = json.dumps(event).encode()
            outcome = validate(raw, route)
            if isinstance(outcome, Rejected) and b"\\u0000" not in raw:
                refused.append((raw, outcome.violations))

    check()
    assert not refused, refused[:3]


def _schemathesis_failures(stack: ProcessStack, key: str, examples: int) -> list[str]:
    """Every operation of the served document, `examples` generated requests each, with
    `key`: each failure (a 5xx, a status, content type or body the document does not
    declare), one line per operation. No operation is exempt."""
    served = call("GET", f"{stack.base_url}/openapi.json")
    assert served.status == 200
    schema = schemathesis.openapi.from_dict(served.json())
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]  # fmt: skip
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), derandomize=True)  # fmt: skip
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=stack.base_url, headers={"X-API-Key": key}, checks=checks, timeout=30
            )

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as exc:  # report every operation's failure
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    return failures


@pytest.mark.integration
def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(f"st-{uuid.uuid4().hex[:10]}", ALL_SCOPES)
    failures = _schemathesis_failures(stack, key, EXAMPLES_PER_OPERATION)
    assert not failures, "\n\n".join(failures)


@pytest.mark.integration
@pytest.mark.slow
def test_schemathesis_at_many_examples_finds_no_server_error(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    """The same, at `SLOW_EXAMPLES_PER_OPERATION` requests per operation (`make test-all`)."""
    key = new_key(f"st-{uuid.uuid4().hex[:10]}", ALL_SCOPES)
    failures = _schemathesis_failures(stack, key, SLOW_EXAMPLES_PER_OPERATION)
    assert not failures, "\n\n".join(failures)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in node:
        return node
    target: Any = document
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    resolved: dict[str, Any] = target
    return resolved
