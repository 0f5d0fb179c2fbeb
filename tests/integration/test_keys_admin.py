"""Keys under the admin API and the CLI: create, list, revoke, rotate; scopes; tenant walls.

The revocation bound: a revoked key stops working at once in the API process that revoked
it and within `SLUICE_KEY_CACHE_SECONDS` (1 s in the test stack) in others; a rotated-out
key stops at its expiry. The test stack runs one API process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from ingest.keys import generate_key
from sluice.keys_cli import keys
from sluice.stack import ProcessStack
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

EVENT = {"type": "t", "source": "s", "time": "2024-01-01T00:00:00Z", "data": {}}


def api(
    stack: ProcessStack, method: str, path: str, key: str | None, body: object = None
) -> Answer:
    headers = {"X-API-Key": key} if key else {}
    return call(method, f"{stack.base_url}{path}", json_body=body, headers=headers)


def prefix_of(key: str) -> str:
    return key.split(".")[0]


def wait_out_the_cache(stack: ProcessStack) -> None:
    time.sleep(stack.settings.key_cache_seconds + 0.5)


def test_admin_creates_lists_and_revokes_keys_of_its_tenant(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    admin = new_key("keys-a", ["admin"])
    made = api(stack, "POST", "/v1/admin/keys", admin, {"scopes": ["events:read"], "label": "ci"})
    assert made.status == 201, made.body
    reader = made.json()["key"]
    assert made.json()["tenant"] == "keys-a" and made.json()["scopes"] == ["events:read"]

    assert api(stack, "GET", "/v1/events", reader).status == 200
    denied = api(stack, "POST", "/v1/events", reader, EVENT)
    assert denied.status == 403 and denied.json()["error"]["code"] == "forbidden"

    listed = api(stack, "GET", "/v1/admin/keys", admin)
    assert listed.status == 200
    by_prefix = {k["prefix"]: k for k in listed.json()["keys"]}
    assert by_prefix[prefix_of(reader)]["state"] == "active"
    assert reader not in listed.body.decode() and "key_hash" not in listed.body.decode()

    revoked = api(stack, "DELETE", f"/v1/admin/keys/{prefix_of(reader)}", admin)
    assert revoked.status == 200 and revoked.json()["revoked"] is True
    assert api(stack, "GET", "/v1/events", reader).status == 401  # at once: one API process
    wait_out_the_cache(stack)
    assert api(stack, "GET", "/v1/events", reader).status == 401
    assert api(stack, "DELETE", f"/v1/admin/keys/{prefix_of(reader)}", admin).status == 404


def test_rotation_keeps_the_old_key_for_the_overlap_only(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    admin = new_key("keys-r", ["admin"])
    first = new_key("keys-r", ["events:read"])
    rotated = api(stack, "POST", f"/v1/admin/keys/{prefix_of(first)}/rotate", admin,
                  {"overlap_seconds": 600})  # fmt: skip
    assert rotated.status == 201, rotated.body
    second = rotated.json()["key"]
    assert rotated.json()["scopes"] == ["events:read"]
    assert rotated.json()["replaces"] == prefix_of(first)
    assert api(stack, "GET", "/v1/events", first).status == 200
    assert api(stack, "GET", "/v1/events", second).status == 200
    states = {
        k["prefix"]: k["state"] for k in api(stack, "GET", "/v1/admin/keys", admin).json()["keys"]
    }
    assert states[prefix_of(first)] == "expiring" and states[prefix_of(second)] == "active"

    third = api(stack, "POST", f"/v1/admin/keys/{prefix_of(second)}/rotate", admin,
                {"overlap_seconds": 0}).json()["key"]  # fmt: skip
    assert api(stack, "GET", "/v1/events", second).status == 401  # at once: one API process
    wait_out_the_cache(stack)
    assert api(stack, "GET", "/v1/events", second).status == 401
    assert api(stack, "GET", "/v1/events", third).status == 200
    assert api(stack, "GET", "/v1/events", first).status == 200  # its own overlap still runs


def test_an_admin_key_never_reaches_another_tenants_keys(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    victim = new_key("keys-victim", ["events:read"])
    intruder = new_key("keys-intruder", ["admin"])
    target = prefix_of(victim)
    assert api(stack, "DELETE", f"/v1/admin/keys/{target}", intruder).status == 404
    rotate = api(stack, "POST", f"/v1/admin/keys/{target}/rotate", intruder, {})
    assert rotate.status == 404 and "key" not in rotate.json()
    listed = api(stack, "GET", "/v1/admin/keys", intruder).json()["keys"]
    assert {k["tenant"] for k in listed} == {"keys-intruder"}
    smuggled = api(stack, "POST", "/v1/admin/keys", intruder, {"tenant": "keys-victim"})
    assert smuggled.status == 400
    wait_out_the_cache(stack)
    assert api(stack, "GET", "/v1/events", victim).status == 200


def test_admin_routes_need_the_admin_scope_and_a_known_key(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    writer = new_key("keys-w")  # every scope but admin
    assert api(stack, "GET", "/v1/admin/keys", writer).status == 403
    assert api(stack, "POST", "/v1/admin/keys", writer, {}).status == 403
    assert api(stack, "GET", "/v1/admin/keys", None).status == 401
    malformed = writer[:-6] + ("AAAAAA" if not writer.endswith("AAAAAA") else "BBBBBB")
    assert api(stack, "GET", "/v1/admin/keys", malformed).status == 401
    unknown = api(stack, "GET", "/v1/admin/keys", generate_key().secret)
    assert unknown.status == 401 and unknown.json()["error"]["code"] == "unauthenticated"
    bad = api(stack, "POST", "/v1/admin/keys", new_key("keys-w", ["admin"]), {"scopes": ["root"]})
    assert bad.status == 400


def test_cli_rotate_prints_a_working_key_and_keeps_the_old_one(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    old = new_key("keys-cli", ["events:read"])
    env = {"DATABASE_URL": stack.settings.database_url,
           "SLUICE_KEY_SECRET": stack.settings.key_secret}  # fmt: skip
    result = CliRunner().invoke(keys, ["rotate", prefix_of(old), "--overlap", "600"], env=env)
    assert result.exit_code == 0, result.output
    new = result.stdout.strip().splitlines()[0]
    assert api(stack, "GET", "/v1/events", new).status == 200
    assert api(stack, "GET", "/v1/events", old).status == 200
    listed = CliRunner().invoke(keys, ["list", "--tenant", "keys-cli"], env=env)
    (row,) = [line for line in listed.stdout.splitlines() if prefix_of(old) in line]
    assert " expiring " in row and "minutes from now)" in row and new not in listed.stdout
    missing = CliRunner().invoke(keys, ["rotate", "nosuchpx"], env=env)
    assert missing.exit_code != 0


FAMILY_WRITES = [
    ("/v1/events", {}),
    ("/dashdive/s3", {}),
    ("/datahub/v1/events", {"events": []}),
    ("/baselime/v1/logs/ns", []),
    ("/dynatrace/platform/ingest/v1/events", {}),
    ("/dakkio/api/data", {}),
    ("/posthog/batch/", {}),
    ("/otlp/v1/logs", {}),
    ("/segment/v1/batch", {"batch": []}),
    ("/rudderstack/v1/track", {}),
]


@pytest.mark.parametrize(("path", "body"), FAMILY_WRITES)
def test_a_key_without_the_write_scope_gets_403_on_every_family(
    stack: ProcessStack, new_key: Callable[..., str], path: str, body: object
) -> None:
    reader = new_key("keys-scopes", ["events:read"])
    answer = api(stack, "POST", path, reader, body)
    assert answer.status == 403, answer.body
    assert api(stack, "POST", path, None, body).status == 401
    assert reader.encode() not in answer.body


def test_a_tenant_admin_creates_at_most_the_cap_of_live_keys(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    admin = new_key("keys-cap", ["admin"])
    cap = stack.settings.max_keys_per_tenant
    made = [api(stack, "POST", "/v1/admin/keys", admin, {"scopes": ["events:read"]})
            for _ in range(cap - 1)]  # fmt: skip
    assert {m.status for m in made} == {201}
    refused = api(stack, "POST", "/v1/admin/keys", admin, {"scopes": ["events:read"]})
    assert refused.status == 409 and refused.json()["error"]["code"] == "too_many_keys"
    assert "key" not in refused.json()
    revoked = api(stack, "DELETE", f"/v1/admin/keys/{made[0].json()['prefix']}", admin)
    assert revoked.status == 200
    again = api(stack, "POST", "/v1/admin/keys", admin, {"scopes": ["events:read"]})
    assert again.status == 201, again.body  # a revoked key no longer counts
