"""The console end to end in a real headless Chromium (Debian's, driven by Playwright), on the
session stack's real API, worker and sink, Kafka and PostgreSQL.

Each page is screenshotted into `test-output/console/` (1280 by 800, and the dead letters at
phone width). When the browser cannot be had the tests skip and say why (`make browser`
installs it)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

SHOTS = Path(__file__).resolve().parents[3] / "test-output" / "console"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 20_000

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
Browser, Page, expect = playwright_api.Browser, playwright_api.Page, playwright_api.expect


def keyed(stack: ProcessStack, key: str, method: str, path: str, **kw: Any) -> Answer:
    return call(method, f"{stack.base_url}{path}", headers={"X-API-Key": key}, **kw)


def rejected(stack: ProcessStack, key: str, event: dict[str, Any]) -> str:
    """Send `event`, which the door refuses; its dead letter's id, once stored."""
    answer = keyed(stack, key, "POST", "/v1/events", json_body=event)
    assert answer.status == 400, answer.body
    found = str(answer.json()["rejected"][0]["dead_letter_id"])
    eventually(lambda: keyed(stack, key, "GET", f"/v1/dead-letters/{found}").status == 200)
    return found


def open_console(
    browser: Any, stack: ProcessStack, key: str, viewport: dict[str, int] = DESKTOP
) -> Any:
    """A new browser context signed in with `key` by keyboard: type it, press Enter."""
    page = browser.new_context(viewport=viewport).new_page()
    page.goto(f"{stack.base_url}/console")
    field = page.locator("#key")
    expect(field).to_be_focused()
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    expect(page.locator("#nav")).to_be_visible(timeout=WAIT_MS)
    expect(field).to_have_value("")
    return page


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def goto(page: Any, fragment: str) -> None:
    page.evaluate(f"location.hash = {json.dumps(fragment)}")


def event(event_id: str, time: str, **data: Any) -> dict[str, Any]:
    return {"id": event_id, "type": "usage.api_call", "source": "/console-tests", "time": time,
            "data": {"units": 3, **data}}  # fmt: skip


def test_fix_a_dead_letter_from_its_reason_to_its_history(
    browser: Any, stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    tenant = f"cb-{uuid.uuid4().hex[:8]}"
    key = new_key(tenant)
    for i in range(20):  # the overview has something to show
        batch = [event(f"ok-{i}-{j}", "2024-11-23T10:00:00Z") for j in range(5)]
        answer = keyed(stack, key, "POST", "/v1/events", json_body=batch)
        assert answer.status == 202
    event_id = f"evt-{uuid.uuid4().hex[:6]}"
    dead = rejected(stack, key, event(event_id, "yesterday"))
    rejected(stack, key, event(f"late-{uuid.uuid4().hex[:6]}", "last week"))
    rejected(
        stack, key, {"id": "no-type", "source": "/console-tests", "time": "2024-11-23T10:00:00Z"}
    )
    rejected(
        stack, key, {"specversion": "1.0", **event("ce-1", "2024-11-23T10:00:00Z"), "Region": "eu"}
    )

    page = open_console(browser, stack, key)
    expect(page.locator("#who")).to_contain_text(tenant)
    figures = page.locator(".overview .stats")
    expect(figures.locator('[data-figure="accepted"] .value')).to_have_text("100", timeout=WAIT_MS)
    expect(figures.locator('[data-figure="rejected"] .value')).to_have_text("4", timeout=WAIT_MS)
    expect(figures.locator('[data-figure="dead letters pending"] .value')).to_have_text("4")
    expect(page.locator(".plots figure")).to_have_count(5)
    expect(page.locator(".plots figure").nth(2).locator(".legend li")).to_have_count(3)
    shot(page, "overview")

    goto(page, "#/dead-letters")
    listed = page.locator(f'tr[data-id="{dead}"]')
    expect(listed.locator(".reasons")).to_have_text("invalid_timestamp", timeout=WAIT_MS)
    group = page.locator('table.groups tr[data-reason="invalid_timestamp"][data-family="native"]')
    expect(group.locator("td").nth(2)).to_have_text("2")  # count
    expect(group.locator("td").nth(3)).to_have_text("2")  # pending
    shot(page, "dead-letters")

    listed.locator("a").click()
    expect(page.locator("#page h1")).to_contain_text(dead, timeout=WAIT_MS)
    reason = page.locator('.reasons-list li[data-code="invalid_timestamp"]')
    expect(reason.locator("a.path")).to_have_text("$.time")
    expect(page.locator("pre.body mark")).to_have_text('"yesterday"')
    expect(page.locator(".dry-run")).to_contain_text("Still invalid", timeout=WAIT_MS)
    page.locator(".tab", has_text="Hex").click()
    expect(page.locator("pre.hex")).to_contain_text("00000000  7b 22 69 64")
    page.locator(".tab", has_text="Text").click()

    editor = page.locator("#editor")
    editor.fill(json.dumps(event(event_id, "2024-11-23T10:05:00Z")))
    expect(page.locator(".dry-run .pass")).to_have_text(f"Passes ({event_id}).", timeout=WAIT_MS)
    shot(page, "dead-letter")
    assert keyed(stack, key, "GET", f"/v1/dead-letters/{dead}").json()["status"] == "pending"
    page.locator("#replay").click()
    expect(page.locator(".dry-run .pass")).to_have_text(f"Replayed ({event_id}).", timeout=WAIT_MS)
    assert keyed(stack, key, "GET", f"/v1/dead-letters/{dead}").json()["status"] == "replayed"

    goto(page, "#/lookup")
    page.locator("#lookup-event").fill(event_id)
    page.locator("#lookup-event").press("Enter")
    replayed = page.locator('.timeline li[data-step="replayed"]')
    expect(replayed).to_contain_text(f"replayed from dead letter {dead}", timeout=WAIT_MS)

    def stored() -> bool:
        page.reload()
        return page.locator('.timeline li[data-step="stored"]').count() == 1

    eventually(stored, timeout=60, interval=1.0)
    steps = page.locator(".timeline li").evaluate_all("els => els.map(e => e.dataset.step)")
    assert steps[0] == "rejected" and "replayed" in steps and steps[-1] == "stored", steps
    shot(page, "lookup")

    page.locator("#sign-out").click()
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    expect(page.locator("#sign-out")).to_be_hidden()
    assert page.request.get(f"{stack.base_url}/console/session").status == 401
    assert page.request.get(f"{stack.base_url}/v1/dead-letters").status == 401
    shot(page, "sign-in")


def test_another_tenants_key_sees_none_of_it(
    browser: Any, stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    mine = rejected(stack, new_key(f"cb-{uuid.uuid4().hex[:8]}"), event("secret-1", "yesterday"))
    page = open_console(browser, stack, new_key(f"cb-{uuid.uuid4().hex[:8]}"))
    goto(page, "#/dead-letters")
    expect(page.locator("tbody").last).to_contain_text("None.", timeout=WAIT_MS)
    assert page.locator(f'tr[data-id="{mine}"]').count() == 0
    goto(page, f"#/dead-letter/{mine}")
    expect(page.locator("#page .note.error")).to_contain_text(
        "no such dead letter", timeout=WAIT_MS
    )
    goto(page, "#/lookup?event=secret-1&family=native")
    expect(page.locator(".lookup-result")).to_contain_text("Nothing is recorded", timeout=WAIT_MS)


def test_a_read_only_key_sees_no_replay_and_a_forged_replay_is_refused(
    browser: Any, stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    tenant = f"cb-{uuid.uuid4().hex[:8]}"
    writer = new_key(tenant)
    dead = rejected(stack, writer, event("ro-1", "yesterday"))
    page = open_console(browser, stack, new_key(tenant, ["events:read", "deadletters:read"]))
    expect(page.locator('#nav a[data-page="keys"]')).to_be_hidden()
    goto(page, "#/dead-letters")
    expect(page.locator(f'tr[data-id="{dead}"]')).to_be_visible(timeout=WAIT_MS)
    assert page.locator(".bulk").count() == 0
    goto(page, f"#/dead-letter/{dead}")
    expect(page.locator("#page h1")).to_contain_text(dead, timeout=WAIT_MS)
    expect(page.locator("#page")).to_contain_text("may read dead letters but not replay")
    assert page.locator("#replay").count() == 0 and page.locator("#discard").count() == 0

    replay = f"{stack.base_url}/v1/dead-letters/{dead}/replay"
    csrf = page.request.get(f"{stack.base_url}/console/session").json()["csrf_token"]
    assert page.request.post(replay).status == 403  # the cookie, no CSRF token
    assert page.request.post(replay, headers={"X-CSRF-Token": "forged"}).status == 403
    scoped = page.request.post(replay, headers={"X-CSRF-Token": csrf})
    assert scoped.status == 403 and "deadletters:replay" in scoped.text()  # refused by scope
    assert keyed(stack, writer, "GET", f"/v1/dead-letters/{dead}").json()["status"] == "pending"

    # A writer's session, forged without its token, is refused too.
    forger = open_console(browser, stack, writer)
    assert forger.request.post(replay).status == 403
    assert forger.request.post(replay, headers={"X-CSRF-Token": csrf}).status == 403


HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def test_html_in_bodies_and_reasons_is_shown_as_text_and_never_runs(
    browser: Any, stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(f"cb-{uuid.uuid4().hex[:8]}")
    hostile = {"specversion": "1.0", **event(HOSTILE, "2024-11-23T10:00:00Z"), HOSTILE: "x"}
    dead = rejected(stack, key, hostile)  # a CloudEvent extension named by the HTML
    stored = keyed(stack, key, "GET", f"/v1/dead-letters/{dead}").json()
    assert any(HOSTILE in (r.get("path") or "") for r in stored["reasons"]), stored["reasons"]

    page = open_console(browser, stack, key)
    goto(page, "#/dead-letters")
    expect(page.locator(f'tr[data-id="{dead}"] .mono')).to_have_text(HOSTILE, timeout=WAIT_MS)
    goto(page, f"#/dead-letter/{dead}")
    expect(page.locator(".reasons-list")).to_contain_text(HOSTILE, timeout=WAIT_MS)
    expect(page.locator("pre.body").first).to_contain_text(json.dumps(HOSTILE))
    goto(
        page,
        "#/lookup?" + "event=" + re.sub(r"[^A-Za-z0-9]", lambda m: f"%{ord(m[0]):02X}", HOSTILE),
    )
    expect(page.locator(".lookup-result")).to_contain_text(HOSTILE, timeout=WAIT_MS)
    assert page.locator("#page img, #page script").count() == 0  # parsed as text, not HTML
    assert page.evaluate("window.__pwned") is None


def test_keys_page_and_phone_width(
    browser: Any, stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    tenant = f"cb-{uuid.uuid4().hex[:8]}"
    admin = new_key(tenant, ["admin"])
    rejected(stack, admin, event("phone-1", "yesterday"))
    page = open_console(browser, stack, admin)
    goto(page, "#/keys")
    expect(page.locator("tr[data-prefix]")).to_have_count(1, timeout=WAIT_MS)
    page.locator("#new-label").fill("ci reader")
    page.get_by_role("button", name="Create key").click()
    made = page.locator(".once input")
    expect(made).to_have_value(re.compile(r"^[a-z2-9]{8}\.[A-Za-z0-9_-]{48}$"), timeout=WAIT_MS)
    new_key_text = made.input_value()
    assert keyed(stack, new_key_text, "GET", "/v1/events").status == 200
    prefix = new_key_text.split(".")[0]
    row = page.locator(f'tr[data-prefix="{prefix}"]')
    expect(row).to_contain_text("ci reader")
    row.get_by_role("button", name="Rotate").click()
    expect(page.locator(".once")).to_contain_text(f"replaces {prefix}", timeout=WAIT_MS)
    successor = page.locator(".once input").input_value()
    assert successor != new_key_text and keyed(stack, successor, "GET", "/v1/events").status == 200
    expect(row.locator(".pill")).to_have_text("expiring")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row.locator(".pill")).to_have_text("revoked", timeout=WAIT_MS)
    assert keyed(stack, new_key_text, "GET", "/v1/events").status == 401
    shot(page, "keys")

    phone = open_console(browser, stack, admin, viewport=PHONE)
    goto(phone, "#/dead-letters")
    expect(phone.locator("tr[data-id]").first).to_be_visible(timeout=WAIT_MS)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide at phone width"
    shot(phone, "dead-letters-phone")


def test_a_json_patch_a_discard_a_replay_job_and_a_request_lookup(
    browser: Any, stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(f"cb-{uuid.uuid4().hex[:8]}")
    patched = rejected(stack, key, event("patch-1", "yesterday"))
    dropped = rejected(stack, key, event("drop-1", "yesterday"))
    batch = [event(f"job-{i}", "2024-11-23T10:00:00Z") for i in range(2)]
    answer = keyed(stack, key, "POST", "/v1/events", json_body=[*batch, event("job-3", "tomorrow")])
    assert answer.status == 202, answer.body
    request_id = answer.json()["request_id"]
    eventually(
        lambda: len(keyed(stack, key, "GET", "/v1/dead-letters").json()["dead_letters"]) == 3
    )

    page = open_console(browser, stack, key)
    goto(page, f"#/dead-letter/{patched}")
    page.locator("#mode-patch").check()
    page.locator("#editor").fill(
        '[{"op": "replace", "path": "/time", "value": "2024-11-23T10:00:00Z"}]'
    )
    expect(page.locator(".dry-run .pass")).to_have_text("Passes (patch-1).", timeout=WAIT_MS)
    page.locator("#editor").fill('[{"op": "remove", "path": "/type"}]')
    expect(page.locator(".dry-run")).to_contain_text("Still invalid", timeout=WAIT_MS)
    expect(page.locator(".dry-run")).to_contain_text("invalid_timestamp")

    goto(page, f"#/dead-letter/{dropped}")
    expect(page.locator("#discard")).to_be_visible(timeout=WAIT_MS)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#discard").click()
    expect(page.locator("#page")).to_contain_text("Discarded.", timeout=WAIT_MS)
    assert keyed(stack, key, "GET", f"/v1/dead-letters/{dropped}").json()["status"] == "discarded"

    goto(page, "#/dead-letters?status=pending")
    expect(page.locator("tr[data-id]")).to_have_count(2, timeout=WAIT_MS)
    page.locator("#bulk-dry").check()
    page.get_by_role("button", name="Replay all pending that match").click()
    bar = page.locator(".bulk progress")
    expect(page.locator(".bulk .note")).to_contain_text("done (dry run)", timeout=WAIT_MS)
    expect(page.locator(".bulk .note")).to_contain_text(
        "0 replayed, 2 still invalid, 0 failed, 0 skipped of 2"
    )
    assert bar.evaluate("b => b.value") == 1
    assert keyed(stack, key, "GET", f"/v1/dead-letters/{patched}").json()["status"] == "pending"

    goto(page, "#/lookup")
    page.locator("#lookup-request").fill(request_id)
    page.locator("#lookup-request").press("Enter")
    result = page.locator(".lookup-result")
    expect(result).to_contain_text(f"Request {request_id}", timeout=WAIT_MS)
    expect(result.locator("section.card")).to_have_count(3)
    expect(result).to_contain_text("job-3")
    expect(result.locator('li[data-step="rejected"]')).to_have_count(1)


def test_bytes_that_are_not_text_show_as_escapes_and_as_hex(
    browser: Any, stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(f"cb-{uuid.uuid4().hex[:8]}")
    raw = b'{"id": "bin-1", "note": "caf\xc3\xa9 \xff\xfe end\x01"}'
    answer = call("POST", f"{stack.base_url}/v1/events", body=raw,
                  headers={"X-API-Key": key, "Content-Type": "application/json"})  # fmt: skip
    assert answer.status == 400, answer.body
    dead = str(answer.json()["rejected"][0]["dead_letter_id"])
    eventually(lambda: keyed(stack, key, "GET", f"/v1/dead-letters/{dead}").status == 200)

    page = open_console(browser, stack, key)
    goto(page, f"#/dead-letter/{dead}")
    text = page.locator("pre.body").first
    expect(text).to_contain_text('"caf\u00e9 \\xff\\xfe end\\x01"}', timeout=WAIT_MS)
    escapes = text.locator(".esc").evaluate_all("els => els.map(e => e.textContent)")
    assert escapes == ["\\xff", "\\xfe", "\\x01"]
    page.locator(".tab", has_text="Hex").click()
    hex_view = page.locator("pre.hex")
    expect(hex_view).to_be_visible()
    rows = hex_view.inner_text().splitlines()
    assert len(rows) == (len(raw) + 15) // 16
    for number, row in enumerate(rows):
        chunk = raw[number * 16 : number * 16 + 16]
        offset, _, rest = row.partition("  ")
        assert int(offset, 16) == number * 16
        assert rest[:47].split() == [f"{b:02x}" for b in chunk], row
