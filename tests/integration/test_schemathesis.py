"""schemathesis with authentication checks on every route of the served OpenAPI document.

Every operation that declares a security requirement is called with requests
schemathesis generates from the document, without a key and with a well-formed key
that does not exist: no answer may be a success and none a server error, and each
operation must answer 401 at least once (the key check, not only input validation,
refused it). Operations without a requirement (health, metrics, the document itself)
must not be server errors either. The authenticated run (no 5xx, answers matching the
document) is `tests/producer_api/test_openapi.py`.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from ingest.keys import generate_key
from sluice.stack import ProcessStack
from tests.httpclient import call

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 5


def statuses_without_a_valid_key(stack: ProcessStack, operation: Any) -> list[tuple[str, int]]:
    """(which credential, status) of every generated request to `operation`."""
    seen: list[tuple[str, int]] = []
    credentials = {"no key": {}, "unknown key": {"X-API-Key": generate_key().secret}}

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), derandomize=True)  # fmt: skip
    def exercise(case: schemathesis.Case) -> None:
        for name, headers in credentials.items():
            for header in ("Authorization", "X-API-Key", "x-api-key"):
                (case.headers or {}).pop(header, None)
            response = case.call(base_url=stack.base_url, headers=headers, timeout=30)
            seen.append((name, response.status_code))

    exercise()
    return seen


def test_no_operation_succeeds_or_fails_with_5xx_without_a_valid_key(
    stack: ProcessStack,
) -> None:
    served = call("GET", f"{stack.base_url}/openapi.json")
    if served.status == 404:
        pytest.skip("this build serves no OpenAPI document")
    document = served.json()
    schema = schemathesis.openapi.from_dict(document)
    problems: list[str] = []
    secured = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        raw = document["paths"][operation.path][operation.method.lower()]
        label = f"{operation.method.upper()} {operation.path}"
        statuses = statuses_without_a_valid_key(stack, operation)
        if any(status >= 500 for _, status in statuses):
            problems.append(f"{label}: server error {statuses}")
        if not raw.get("security", document.get("security")):
            continue
        secured += 1
        if any(200 <= status < 400 for _, status in statuses):
            problems.append(f"{label}: success without a valid key {statuses}")
        if not any(status == 401 for _, status in statuses):
            problems.append(f"{label}: never answered 401 {statuses}")
    assert secured >= 10, "the document declares too few secured operations"
    assert not problems, "\n".join(problems)
