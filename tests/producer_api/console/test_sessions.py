"""Console sessions on real PostgreSQL, through real API processes: sign-in, the cookie as a
principal of every route, CSRF on cookie writes, sign-out, expiry (idle and absolute), and
sessions ended by a revoked or rotated key. Plain HTTP (the browser tests are beside)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from typing import Any

import psycopg
import pytest

from runtime.topic_admin import ensure_topics
from sluice.stack import ProcessStack
from tests.conftest import eventually, make_settings
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

IDLE_S, MAX_S = 2.0, 6.0
READ_ONLY = ["events:read", "deadletters:read"]
BAD_EVENT = {"id": "bad-1", "type": "t", "source": "s", "time": "yesterday", "data": {}}


class Session:
    """A signed-in console session as a browser holds it: the cookie and the CSRF token."""

    def __init__(self, base_url: str, answer: Answer) -> None:
        assert answer.status == 201, answer.body
        cookie = SimpleCookie()
        cookie.load(answer.headers["Set-Cookie"])
        self.morsel = cookie["sluice_console"]
        self.token = self.morsel.value
        self.csrf = str(answer.json()["csrf_token"])
        self.info: dict[str, Any] = answer.json()
        self.base_url = base_url

    def call(self, method: str, path: str, csrf: str | None = None, **kw: Any) -> Answer:
        headers = {"Cookie": f"sluice_console={self.token}", **kw.pop("headers", {})}
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        return call(method, f"{self.base_url}{path}", headers=headers, **kw)


def sign_in(base_url: str, key: str, **headers: str) -> Answer:
    return call("POST", f"{base_url}/console/session", json_body={"key": key}, headers=headers)


def keyed(stack: ProcessStack, key: str, method: str, path: str, **kw: Any) -> Answer:
    return call(method, f"{stack.base_url}{path}", headers={"X-API-Key": key}, **kw)


def dead_letter(stack: ProcessStack, key: str) -> str:
    """A dead letter of `key`'s tenant, stored."""
    answer = keyed(stack, key, "POST", "/v1/events", json_body=BAD_EVENT)
    assert answer.status == 400, answer.body
    found = str(answer.json()["rejected"][0]["dead_letter_id"])
    eventually(lambda: keyed(stack, key, "GET", f"/v1/dead-letters/{found}").status == 200)
    return found


def test_sign_in_sets_a_strict_httponly_cookie_and_stores_only_a_hash(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    tenant = f"cs-{uuid.uuid4().hex[:8]}"
    key = new_key(tenant, READ_ONLY)
    session = Session(stack.base_url, sign_in(stack.base_url, key))
    header = session.morsel
    assert header["httponly"] is True and header["samesite"] == "Strict"
    assert header["path"] == "/" and not header["secure"]  # plain HTTP: no Secure
    assert key not in str(session.morsel) and key.split(".")[1] not in session.token
    assert session.info["tenant"] == tenant and session.info["scopes"] == READ_ONLY
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT token_hash, key_prefix FROM console_sessions WHERE tenant = %s", (tenant,)
        ).fetchall()
    expected = hashlib.sha256(b"sluice console session\0" + session.token.encode()).digest()
    assert rows == [(expected, key.split(".")[0])]
    assert session.token.encode() not in bytes(rows[0][0])

    behind_tls = Session(
        stack.base_url, sign_in(stack.base_url, key, **{"X-Forwarded-Proto": "https"})
    )
    assert behind_tls.morsel["secure"] is True

    who = session.call("GET", "/console/session")
    assert who.status == 200 and who.json()["csrf_token"] == session.csrf


def test_a_refused_key_and_a_cross_site_sign_in_open_no_session(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(f"cs-{uuid.uuid4().hex[:8]}", READ_ONLY)
    assert sign_in(stack.base_url, key[:-4] + "AAAA").status == 401
    assert sign_in(stack.base_url, "").status == 401
    assert sign_in(stack.base_url, key, Origin="https://evil.example").status == 403
    host = stack.base_url.split("//", 1)[1]
    assert sign_in(stack.base_url, key, Origin=f"http://{host}").status == 201
    form = call("POST", f"{stack.base_url}/console/session", body=f"key={key}".encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert form.status == 201, form.body
    assert call("GET", f"{stack.base_url}/console/session").status == 401  # no cookie


def test_the_cookie_reads_what_its_key_reads_and_nothing_of_another_tenant(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(f"cs-{uuid.uuid4().hex[:8]}")
    mine = dead_letter(stack, key)
    session = Session(stack.base_url, sign_in(stack.base_url, key))
    listed = session.call("GET", "/v1/dead-letters")
    assert listed.status == 200
    assert [d["dead_letter_id"] for d in listed.json()["dead_letters"]] == [mine]
    assert session.call("GET", f"/v1/dead-letters/{mine}").json()["dead_letter_id"] == mine

    other = Session(stack.base_url, sign_in(stack.base_url, new_key(f"cs-{uuid.uuid4().hex[:8]}")))
    assert other.call("GET", f"/v1/dead-letters/{mine}").status == 404
    assert other.call("GET", "/v1/dead-letters").json()["dead_letters"] == []
    forged = session.call("GET", "/v1/dead-letters", headers={"Cookie": "sluice_console=x" * 3})
    assert forged.status == 401


def test_a_cookie_write_needs_the_sessions_csrf_token(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(f"cs-{uuid.uuid4().hex[:8]}")
    target = dead_letter(stack, key)
    session = Session(stack.base_url, sign_in(stack.base_url, key))
    other = Session(stack.base_url, sign_in(stack.base_url, key))  # same key, another session
    replay = f"/v1/dead-letters/{target}/replay?dry_run=true"
    assert session.call("POST", replay).status == 403
    assert session.call("POST", replay, csrf="").status == 403
    assert session.call("POST", replay, csrf=other.csrf).status == 403  # per session
    assert session.call("POST", replay, csrf=session.csrf[:-1] + "x").status == 403
    passed = session.call("POST", replay, csrf=session.csrf)
    assert passed.status == 200 and passed.json()["outcome"] == "invalid", passed.body
    # A request with a key needs no CSRF token (and a key wins over a cookie).
    assert keyed(stack, key, "POST", replay).status == 200
    assert session.call("GET", f"/v1/dead-letters/{target}").json()["status"] == "pending"


def test_a_read_only_session_is_refused_a_replay_even_with_its_csrf_token(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    tenant = f"cs-{uuid.uuid4().hex[:8]}"
    target = dead_letter(stack, new_key(tenant))
    reader = Session(stack.base_url, sign_in(stack.base_url, new_key(tenant, READ_ONLY)))
    assert reader.call("GET", f"/v1/dead-letters/{target}").status == 200
    refused = reader.call("POST", f"/v1/dead-letters/{target}/replay", csrf=reader.csrf)
    assert refused.status == 403 and "deadletters:replay" in refused.json()["error"]["message"]
    assert reader.call("POST", f"/v1/dead-letters/{target}/discard", csrf=reader.csrf).status == 403


REGISTRY_TYPE = "application/vnd.schemaregistry.v1+json"
CONTRACT = json.dumps({"type": "object", "properties": {"units": {"type": "integer"}}})


def test_the_schema_registry_takes_the_cookie_with_csrf_on_writes(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    """The console's Schemas page calls `/schema-registry` with its cookie: reads as the key
    reads, a register only with the session's CSRF token and the key's `schemas:write`."""
    tenant = f"cs-{uuid.uuid4().hex[:8]}"
    writer = Session(stack.base_url, sign_in(stack.base_url, new_key(
        tenant, ["events:read", "schemas:read", "schemas:write"])))  # fmt: skip
    subject = f"native.cookie-{uuid.uuid4().hex[:6]}"
    path = f"/schema-registry/subjects/{subject}/versions"
    body = json.dumps({"schemaType": "JSON", "schema": CONTRACT}).encode()
    headers = {"Content-Type": REGISTRY_TYPE}

    def register(session: Session, csrf: str | None) -> Answer:
        return session.call("POST", path, csrf=csrf, body=body, headers=headers)

    for csrf in (None, "", writer.csrf[:-1] + "x"):
        refused = register(writer, csrf)
        assert (refused.status, refused.json()["error_code"]) == (403, 40301), refused.body
    assert writer.call("GET", path).status == 404  # nothing was registered
    made = register(writer, writer.csrf)
    assert made.status == 200 and made.json()["version"] == 1, made.body
    assert subject in writer.call("GET", "/schema-registry/subjects").json()
    assert writer.call("GET", path).json() == [1]
    assert json.loads(writer.call("GET", f"{path}/1").json()["schema"]) == json.loads(CONTRACT)

    reader = Session(stack.base_url, sign_in(stack.base_url, new_key(tenant, ["schemas:read"])))
    assert reader.call("GET", path).json() == [1]
    scoped = register(reader, reader.csrf)
    assert scoped.status == 403 and "schemas:write" in scoped.json()["message"]
    unscoped = Session(stack.base_url, sign_in(stack.base_url, new_key(tenant, READ_ONLY)))
    assert unscoped.call("GET", "/schema-registry/subjects").status == 403
    other = Session(stack.base_url, sign_in(stack.base_url, new_key(
        f"cs-{uuid.uuid4().hex[:8]}", ["schemas:read"])))  # fmt: skip
    absent = other.call("GET", path)
    assert (absent.status, absent.json()["error_code"]) == (404, 40401)
    assert writer.call("DELETE", "/console/session", csrf=writer.csrf).status == 200
    ended = writer.call("GET", "/schema-registry/subjects")
    assert (ended.status, ended.json()["error_code"]) == (401, 40101)


def test_sign_out_ends_the_session_and_needs_the_csrf_token(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    session = Session(
        stack.base_url, sign_in(stack.base_url, new_key(f"cs-{uuid.uuid4().hex[:8]}"))
    )
    assert session.call("DELETE", "/console/session").status == 403
    assert session.call("GET", "/v1/dead-letters").status == 200
    out = session.call("DELETE", "/console/session", csrf=session.csrf)
    assert out.status == 200
    cleared = SimpleCookie()
    cleared.load(out.headers["Set-Cookie"])
    assert cleared["sluice_console"].value == ""
    assert session.call("GET", "/v1/dead-letters").status == 401
    assert session.call("GET", "/console/session").status == 401


def test_a_revoked_or_rotated_key_ends_its_sessions_at_once(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    tenant = f"cs-{uuid.uuid4().hex[:8]}"
    admin = new_key(tenant, ["admin"])
    revoked, rotated = new_key(tenant, READ_ONLY), new_key(tenant, READ_ONLY)
    first = Session(stack.base_url, sign_in(stack.base_url, revoked))
    second = Session(stack.base_url, sign_in(stack.base_url, rotated))
    assert first.call("GET", "/v1/dead-letters").status == 200
    assert second.call("GET", "/v1/dead-letters").status == 200

    prefix = revoked.split(".")[0]
    assert keyed(stack, admin, "DELETE", f"/v1/admin/keys/{prefix}").status == 200
    assert first.call("GET", "/v1/dead-letters").status == 401

    prefix = rotated.split(".")[0]
    made = keyed(stack, admin, "POST", f"/v1/admin/keys/{prefix}/rotate",
                 json_body={"overlap_seconds": 3600})  # fmt: skip
    assert made.status == 201
    assert keyed(stack, rotated, "GET", "/v1/dead-letters").status == 200  # in its overlap
    assert second.call("GET", "/v1/dead-letters").status == 401  # but its session ended
    assert sign_in(stack.base_url, made.json()["key"]).status == 201


@pytest.fixture(scope="module")
def brief(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProcessStack]:
    """A second API process, on the same database, whose sessions end after 2 s unused or
    6 s after sign-in."""
    settings = make_settings(
        kafka_bootstrap, database_url,
        console_session_idle_seconds=IDLE_S, console_session_max_seconds=MAX_S,
    )  # fmt: skip
    ensure_topics(settings)
    api = ProcessStack(settings, tmp_path_factory.mktemp("console-logs"))
    api.start(("api",))
    try:
        api.wait_ready(timeout=60)
        yield api
    finally:
        api.stop()


def test_an_unused_session_ends_after_the_idle_bound(
    brief: ProcessStack, new_key: Callable[..., str]
) -> None:
    session = Session(
        brief.base_url, sign_in(brief.base_url, new_key(f"cs-{uuid.uuid4().hex[:8]}"))
    )
    for _ in range(3):  # used every second: still alive past the idle bound
        time.sleep(IDLE_S / 2)
        assert session.call("GET", "/v1/dead-letters").status == 200
    time.sleep(IDLE_S + 0.5)
    assert session.call("GET", "/v1/dead-letters").status == 401


def test_a_busy_session_ends_at_its_absolute_expiry(
    brief: ProcessStack, new_key: Callable[..., str]
) -> None:
    started = time.monotonic()
    session = Session(
        brief.base_url, sign_in(brief.base_url, new_key(f"cs-{uuid.uuid4().hex[:8]}"))
    )
    while time.monotonic() - started < MAX_S - 1.5:
        assert session.call("GET", "/v1/dead-letters").status == 200
        time.sleep(0.5)
    eventually(lambda: session.call("GET", "/v1/dead-letters").status == 401, timeout=MAX_S)
    assert time.monotonic() - started >= MAX_S - 1.0


def test_a_session_opened_by_one_api_process_works_and_ends_in_another(
    stack: ProcessStack, brief: ProcessStack, new_key: Callable[..., str]
) -> None:
    session = Session(
        stack.base_url, sign_in(stack.base_url, new_key(f"cs-{uuid.uuid4().hex[:8]}"))
    )
    elsewhere = Session(brief.base_url, sign_in(stack.base_url, new_key("cs-unused")))
    elsewhere.token, elsewhere.csrf = session.token, session.csrf
    assert elsewhere.call("GET", "/v1/dead-letters").status == 200
    assert elsewhere.call("DELETE", "/console/session", csrf=session.csrf).status == 200
    assert session.call("GET", "/v1/dead-letters").status == 401
