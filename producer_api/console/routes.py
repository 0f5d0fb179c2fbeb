"""The console's routes: its page and files, and its session (sign in, who am I, sign out).

- `GET /console`: the page (one HTML file; the rest are ES modules and a style sheet under
  `GET /console/assets/{name}`, from this package's `static/` folder, nothing from outside).
  A Content-Security-Policy lets the page load only its own files and talk only to its
  own origin, and run no inline script.
- `POST /console/session`: `{"key": …}` as JSON or a form. The key is verified exactly as
  the API verifies it (`KeyVerifier`, charged to the client's address, counted against the
  key's request budget); the answer sets the session cookie (HttpOnly, SameSite=Strict,
  Secure when the request came over TLS, here or at a proxy saying `X-Forwarded-Proto:
  https`, Path=/) and carries the CSRF token. The key never
  goes into a cookie, a URL or the browser's storage. A request whose `Origin` is another
  site is refused (no signing a victim in to the forger's session).
- `GET /console/session`: the session's tenant, key prefix, scopes and CSRF token; 401
  when there is none.
- `DELETE /console/session`: sign out (the CSRF token is needed, as for every write).
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from ingest.keys import SCOPES
from producer_api.auth import (
    GATE,
    SESSION_COOKIE,
    Forbidden,
    Principal,
    Unauthenticated,
    session_principal,
)
from producer_api.console.sessions import ConsoleSessions
from producer_api.content import receive
from producer_api.errors import error_response
from producer_api.resources import DOOR

routes = web.RouteTableDef()

STATIC = resources.files("producer_api.console").joinpath("static")
_ASSET_NAME = re.compile(r"^[a-z][a-z0-9_]*\.(js|css|svg)$")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _sessions(request: web.Request) -> ConsoleSessions:
    sessions = request.config_dict[GATE].sessions
    assert isinstance(sessions, ConsoleSessions)
    return sessions


@routes.get("/console")
async def page(request: web.Request) -> web.Response:
    """The console's one page; it signs in, then calls the API's routes."""
    html = STATIC.joinpath("index.html").read_bytes()
    return web.Response(body=html, content_type="text/html", charset="utf-8",
                        headers=_PAGE_HEADERS)  # fmt: skip


@routes.get("/console/assets/{name}")
async def asset(request: web.Request) -> web.Response:
    """One of the page's own files; 404 for any other name."""
    name = request.match_info["name"]
    found = STATIC.joinpath(name)
    if not _ASSET_NAME.match(name) or not found.is_file():
        return error_response(404, "not_found", "no such console file")
    kind = "text/javascript" if name.endswith(".js") else mimetypes.guess_type(name)[0]
    return web.Response(body=found.read_bytes(), content_type=kind or "text/plain",
                        charset="utf-8", headers=_PAGE_HEADERS)  # fmt: skip


@routes.post("/console/session")
async def sign_in(request: web.Request) -> web.Response:
    """Verify the key as the API does and open a session of it."""
    if not _same_origin(request):
        raise Forbidden("sign-in from another site's page is refused")
    key = _key_of(request.content_type, await receive(request))
    gate = request.config_dict[GATE]
    principal = await gate.keys.verify(key, request.remote or "")
    await gate.limits.admit_request(principal.prefix, principal.tenant)
    sessions = _sessions(request)
    opened = await sessions.open(principal)
    if opened is None:
        raise Unauthenticated("revoked or expired API key")
    token, expires_at = opened
    answer = web.json_response(_session_json(sessions, principal, token, expires_at),
                               status=201)  # fmt: skip
    answer.set_cookie(
        SESSION_COOKIE, token, path="/", httponly=True, samesite="Strict",
        secure=_over_tls(request), max_age=max(1, int(sessions.max_seconds)),
    )  # fmt: skip
    return answer


@routes.get("/console/session")
async def whoami(request: web.Request) -> web.Response:
    """The signed-in session: tenant, key prefix, scopes and CSRF token."""
    token = request.cookies.get(SESSION_COOKIE) or ""
    principal = await session_principal(request, token)
    return web.json_response(_session_json(_sessions(request), principal, token, None))


@routes.delete("/console/session")
async def sign_out(request: web.Request) -> web.Response:
    """End the session in every API process, and clear its cookie."""
    token = request.cookies.get(SESSION_COOKIE) or ""
    principal = await session_principal(request, token)
    await _sessions(request).end(principal, token)
    answer = web.json_response({"signed_out": True})
    answer.del_cookie(SESSION_COOKIE, path="/")
    return answer


def _session_json(
    sessions: ConsoleSessions, principal: Principal, token: str, expires_at: datetime | None
) -> dict[str, Any]:
    held = SCOPES if "admin" in principal.scopes else sorted(principal.scopes, key=SCOPES.index)
    return {
        "tenant": principal.tenant,
        "prefix": principal.prefix,
        "scopes": list(held),
        "csrf_token": sessions.csrf_token(token),
        "expires_at": expires_at.isoformat() if expires_at else None,
        "idle_seconds": sessions.idle_seconds,
    }


def _over_tls(request: web.Request) -> bool:
    """Whether the browser's connection is TLS: to this process, or to the proxy in front of
    it that says so in `X-Forwarded-Proto` (the API serves plain HTTP behind TLS; a forged
    header can only make the forger's own cookie Secure)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def _same_origin(request: web.Request) -> bool:
    """No `Origin` (not a browser's cross-site request), or one naming this very host."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def _key_of(content_type: str, body: bytes) -> str | None:
    """The key from a JSON body `{"key": …}` or a form `key=…`."""
    try:
        if content_type == "application/x-www-form-urlencoded":
            keys = parse_qs(body.decode()).get("key")
            return keys[0].strip() if keys else None
        sent = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError):
        return None
    key = sent.get("key") if isinstance(sent, dict) else None
    return key.strip() if isinstance(key, str) else None


async def _sessions_context(app: web.Application) -> AsyncIterator[None]:
    """Let the auth path accept session cookies, on the door's pool (after `door_context`)."""
    settings = app[DOOR].settings
    sessions = ConsoleSessions(app[DOOR].pool, settings.console_session_idle_seconds,
                               settings.console_session_max_seconds)  # fmt: skip
    app[GATE] = replace(app[GATE], sessions=sessions)
    yield


def install(app: web.Application) -> None:
    """Add the console's page, files and session routes to the front door, and its sessions
    to the auth path (the door's context must be installed first)."""
    app.cleanup_ctx.append(_sessions_context)
    app.add_routes(routes)
