"""The console's Schemas page in a real headless Chromium, on the session stack's real API,
worker and sink, Kafka and PostgreSQL: a data contract's subject and versions, a refused
and then a corrected version registered in the page (every incompatibility, then
would_heal), the diff between them, the heal with its progress, and the dead letters
replayed in PostgreSQL; what a key without the scopes sees; the LCS line diff itself.

Screenshots: `test-output/console/schemas.png` (1280 by 800) and `schemas-phone.png`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from confluent_kafka.schema_registry import Schema

from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.integration.test_contracts import SUBJECT, _event, _post, _refused_at_door, _registry
from tests.producer_api.console.test_browser import (
    HOSTILE,
    PHONE,
    WAIT_MS,
    expect,
    goto,
    keyed,
    open_console,
    shot,
)

pytestmark = pytest.mark.integration

SCOPES = ["events:write", "events:read", "deadletters:read", "deadletters:replay",
          "schemas:read", "schemas:write"]  # fmt: skip
FIXABLE = ["fix-1", "fix-2", "fix-3"]


def contract(max_units: int, *, required: tuple[str, ...] = ("units", "plan")) -> str:
    return json.dumps({
        "type": "object", "required": list(required),
        "properties": {"units": {"type": "integer", "minimum": 0, "maximum": max_units},
                       "plan": {"enum": ["free", "pro"]}},
    })  # fmt: skip


def indented(schema: str) -> str:
    """`schema` as the page pretty-prints it (and as a person would type it)."""
    return json.dumps(json.loads(schema), indent=2)


def dead_letters(database_url: str, tenant: str) -> dict[str, str]:
    """event id → status of the tenant's first-attempt dead letters."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_id, status FROM dead_letters WHERE tenant = %s AND attempt = 1",
            (tenant,),
        ).fetchall()
    return {str(e): str(s) for e, s in rows}


def stored_schema_ids(database_url: str, tenant: str) -> dict[str, int | None]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_id, schema_id FROM events WHERE tenant = %s", (tenant,)
        ).fetchall()
    return {str(e): s for e, s in rows}


def broken_contract(stack: ProcessStack, database_url: str, new_key: Callable[..., str]) -> Any:
    """A tenant whose contract (version 1: at most 100 units) the door enforces, and four of
    its events dead-lettered by it: three that a limit of 1000 passes, one it does not."""
    tenant, probe = f"sp-{uuid.uuid4().hex[:8]}", f"sp-{uuid.uuid4().hex[:8]}"
    key, probe_key = new_key(tenant, SCOPES), new_key(probe, SCOPES)
    _registry(stack, key).register_schema(SUBJECT, Schema(contract(100), "JSON"))
    _registry(stack, probe_key).register_schema(SUBJECT, Schema(contract(100), "JSON"))
    # the probe tenant's contract, registered last, is enforced: so is this tenant's
    eventually(lambda: _refused_at_door(stack, probe_key, {"units": 500}), timeout=30)
    events = [_event(i, {"units": 500, "plan": "pro"}) for i in FIXABLE]
    answer = _post(stack, key, [*events, _event("too-big", {"units": 5000, "plan": "pro"})])
    assert answer.status == 400 and len(answer.json()["rejected"]) == 4, answer.body
    eventually(lambda: len(dead_letters(database_url, tenant)) == 4, timeout=60)
    return tenant, key


def test_register_a_corrected_contract_see_the_diff_and_heal_its_dead_letters(
    browser: Any, stack: ProcessStack, database_url: str, new_key: Callable[..., str]
) -> None:
    tenant, key = broken_contract(stack, database_url, new_key)
    page = open_console(browser, stack, key)
    page.get_by_role("link", name="Schemas").click()
    row = page.locator(f'table.subjects tr[data-subject="{SUBJECT}"]')
    expect(row).to_contain_text("data contract", timeout=WAIT_MS)
    expect(row.locator("td").nth(2)).to_have_text("1")
    shot(page, "schemas-subjects")
    row.get_by_role("link", name=SUBJECT).click()

    expect(page.locator("#page h1")).to_contain_text(SUBJECT, timeout=WAIT_MS)
    expect(page.locator(".subject-facts")).to_contain_text("compatibility BACKWARD")
    expect(page.locator(".versions pre.schema")).to_contain_text('"maximum": 100')
    expect(page.locator(".compare")).to_contain_text("nothing to compare")
    would_heal = page.locator(".heal .would-heal")
    expect(would_heal).to_have_attribute("data-count", "0", timeout=WAIT_MS)  # v1 heals none
    expect(would_heal).to_contain_text("Version 1 would heal 0 of the 4 pending dead letters")

    editor = page.locator("#schema-editor")
    expect(editor).to_have_value(indented(contract(100)))
    # BACKWARD refuses a version that requires a new property and lowers the limit: both said
    editor.fill(indented(contract(50, required=("units", "plan", "region"))))
    page.locator("#register-schema").click()
    result = page.locator(".register .register-result")
    expect(result).to_contain_text("Not registered (409)", timeout=WAIT_MS)
    expect(result).to_contain_text("2 incompatibilities")
    reasons = result.locator(".incompatibilities li")
    expect(reasons).to_have_count(2)
    expect(reasons.filter(has_text="region")).to_have_count(1)
    expect(reasons.filter(has_text="maximum")).to_have_count(1)
    assert keyed(stack, key, "GET", f"/schema-registry/subjects/{SUBJECT}/versions").json() == [1]

    editor.fill(indented(contract(1000)))
    page.locator("#register-schema").click()
    expect(result).to_contain_text("Registered version 2", timeout=WAIT_MS)
    expect(result.locator(".would-heal-answer")).to_contain_text("would_heal: 3")
    expect(page.locator(".versions .tab")).to_have_count(2)
    expect(page.locator(".versions pre.schema")).to_contain_text('"maximum": 1000')
    expect(page.locator(".diff .del .text")).to_have_text(['"maximum": 100'])
    expect(page.locator(".diff .add .text")).to_have_text(['"maximum": 1000'])
    expect(page.locator(".diff-summary")).to_contain_text("1 line added, 1 line removed")
    expect(would_heal).to_have_attribute("data-count", "3", timeout=WAIT_MS)

    page.locator(".versions .tab", has_text="v1").press("Enter")  # keyboard: a version's tab
    expect(page.locator(".versions .tab", has_text="v1")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".versions pre.schema")).not_to_contain_text("1000")
    assert dead_letters(database_url, tenant) == dict.fromkeys([*FIXABLE, "too-big"], "pending")
    shot(page, "schemas")

    page.locator("#heal").click()
    status = page.locator(".heal .heal-status")
    expect(status).to_contain_text("done: 3 replayed, 1 still invalid, 0 failed, 0 skipped of 4",
                                   timeout=WAIT_MS)  # fmt: skip
    assert page.locator(".heal progress").evaluate("bar => bar.value") == 1
    expect(would_heal).to_have_attribute("data-count", "0", timeout=WAIT_MS)
    after = dead_letters(database_url, tenant)
    assert after == {**dict.fromkeys(FIXABLE, "replayed"), "too-big": "pending"}
    second = keyed(stack, key, "GET", f"/schema-registry/subjects/{SUBJECT}/versions/2").json()

    def healed() -> dict[str, int | None] | None:
        stored = stored_schema_ids(database_url, tenant)
        return stored if len(stored) == len(FIXABLE) else None

    assert eventually(healed) == dict.fromkeys(FIXABLE, second["id"])
    shot(page, "schemas-healed")

    phone = open_console(browser, stack, key, viewport=PHONE)
    goto(phone, f"#/schemas/{SUBJECT}")
    expect(phone.locator(".diff .add")).to_have_count(1, timeout=WAIT_MS)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide at phone width"
    shot(phone, "schemas-phone")


def test_a_reader_sees_schemas_without_register_or_heal_and_others_see_no_page(
    browser: Any, stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    tenant = f"sp-{uuid.uuid4().hex[:8]}"
    hostile = json.dumps({**json.loads(contract(100)), "description": HOSTILE})
    _registry(stack, new_key(tenant, SCOPES)).register_schema(SUBJECT, Schema(hostile, "JSON"))
    reader = open_console(browser, stack, new_key(tenant, ["schemas:read", "deadletters:read"]))
    reader.get_by_role("link", name="Schemas").click()
    expect(reader.locator(f'tr[data-subject="{SUBJECT}"]')).to_be_visible(timeout=WAIT_MS)
    assert reader.locator("#new-subject").count() == 0
    goto(reader, f"#/schemas/{SUBJECT}")
    expect(reader.locator(".versions pre.schema")).to_contain_text('"maximum": 100',
                                                                   timeout=WAIT_MS)  # fmt: skip
    expect(reader.locator("#page")).to_contain_text("needs a key with deadletters:replay")
    expect(reader.locator(".versions pre.schema")).to_contain_text(json.dumps(HOSTILE))
    assert reader.locator("#page img, #page script").count() == 0  # shown as text, inert
    assert reader.evaluate("window.__pwned") is None
    for hidden in ("#schema-editor", "#register-schema", "#heal", ".heal"):
        assert reader.locator(hidden).count() == 0, hidden
    csrf = reader.request.get(f"{stack.base_url}/console/session").json()["csrf_token"]
    heal = f"{stack.base_url}/v1/dead-letters/heal"
    forged = reader.request.post(heal, data={"subject": SUBJECT}, headers={"X-CSRF-Token": csrf})
    assert forged.status == 403 and "deadletters:replay" in forged.text()

    blind = open_console(browser, stack, new_key(tenant, ["events:read"]))
    expect(blind.locator('#nav a[data-page="schemas"]')).to_be_hidden()
    goto(blind, "#/schemas")
    expect(blind.locator("#page .note.error")).to_contain_text("needs schemas:read",
                                                               timeout=WAIT_MS)  # fmt: skip

    stranger = open_console(browser, stack, new_key(f"sp-{uuid.uuid4().hex[:8]}", SCOPES))
    goto(stranger, f"#/schemas/{SUBJECT}")
    expect(stranger.locator("#page .note.error")).to_contain_text("No such subject",
                                                                  timeout=WAIT_MS)  # fmt: skip


def test_a_new_contract_from_the_list_with_bad_input_said_clearly_and_a_compatibility_check(
    browser: Any, stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(f"sp-{uuid.uuid4().hex[:8]}", SCOPES)
    subject = f"native.page-{uuid.uuid4().hex[:6]}"
    page = open_console(browser, stack, key)
    goto(page, "#/schemas")
    form = page.get_by_role("form", name="Register a new subject")
    result = form.locator(".register-result")
    page.locator("#new-subject").fill(subject)
    page.locator("#new-schema").fill('{"type": "object",')
    form.get_by_role("button", name="Register subject").click()
    expect(result).to_contain_text("Not registered: the schema is not JSON", timeout=WAIT_MS)
    page.locator("#new-schema").fill('{"type": "nope"}')
    form.get_by_role("button", name="Register subject").click()
    expect(result).to_contain_text("Not registered (422)", timeout=WAIT_MS)
    page.locator("#new-subject").fill("")
    page.locator("#new-schema").fill(contract(10))
    page.locator("#new-subject").fill(subject)
    page.locator("#new-subject").press("Enter")  # the keyboard submits the form
    expect(page.locator("#page h1")).to_contain_text(subject, timeout=WAIT_MS)
    expect(page.locator(".versions .tab")).to_have_count(1)
    versions = keyed(stack, key, "GET", f"/schema-registry/subjects/{subject}/versions")
    assert versions.json() == [1]

    editor = page.locator("#schema-editor")
    editor.fill(indented(contract(20)))
    page.locator("#check-schema").click()
    checked = page.locator(".register .register-result")
    expect(checked).to_contain_text("Compatible with the versions", timeout=WAIT_MS)
    editor.fill(indented(contract(5)))
    page.locator("#check-schema").click()
    expect(checked).to_contain_text("Incompatible: 1 reason", timeout=WAIT_MS)
    expect(checked.locator("li")).to_contain_text(["maximum"])
    assert keyed(stack, key, "GET", f"/schema-registry/subjects/{subject}/versions").json() == [1]


DIFFS: list[tuple[str, str, list[str]]] = [
    ("a\nb\nc", "a\nb\nc", [" a", " b", " c"]),
    ("a\nb\nc", "a\nx\nc", [" a", "-b", "+x", " c"]),
    ("", "a", ["-", "+a"]),
    ("a\nb", "b", ["-a", " b"]),
    ("b", "a\nb", ["+a", " b"]),
    ("x\na\nb\nc\ny", "z\na\nc\nb\nw", ["-x", "+z", " a", "-b", " c", "-y", "+b", "+w"]),
]


LONG = "\n".join(f"line {i}" for i in range(2100))
DIFFS.append((LONG, LONG.replace("line 7\n", "").replace("line 2000", "changed"),
              [*(f" line {i}" for i in range(7)), "-line 7",
               *(f" line {i}" for i in range(8, 2000)), "-line 2000", "+changed",
               *(f" line {i}" for i in range(2001, 2100))]))  # fmt: skip
TOO_MANY = "\n".join(f"a{i}" for i in range(2100)), "\n".join(f"b{i}" for i in range(2100))
DIFFS.append((*TOO_MANY, [*(f"-a{i}" for i in range(2100)), *(f"+b{i}" for i in range(2100))]))


def test_the_line_diff_is_a_longest_common_subsequence(
    browser: Any, stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    page = open_console(browser, stack, new_key(f"sp-{uuid.uuid4().hex[:8]}", SCOPES))
    for before, after, wanted in DIFFS:
        lines = page.evaluate(
            """async ([a, b]) => (await import("/console/assets/diff.js")).lineDiff(a, b)""",
            [before, after],
        )
        assert [f"{line['op']}{line['text']}" for line in lines] == wanted, (before, after)
        kept = [line["text"] for line in lines if line["op"] != "+"]
        made = [line["text"] for line in lines if line["op"] != "-"]
        assert kept == before.split("\n") and made == after.split("\n")
        assert [line["old"] for line in lines if line["op"] != "+"] == list(range(1, len(kept) + 1))
