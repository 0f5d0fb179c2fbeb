"""The admin API: an `admin` key manages the API keys of its own tenant.

- `POST /v1/admin/keys` `{"scopes": [...], "label": "..."}`: 201 with the new key, shown once.
- `GET /v1/admin/keys`: the tenant's keys by prefix and state (never a key or its hash).
- `DELETE /v1/admin/keys/{prefix}`: revoke; at once in this process, within
  `SLUICE_KEY_CACHE_SECONDS` in others.
- `POST /v1/admin/keys/{prefix}/rotate` `{"overlap_seconds": n}`: a new key with the same
  scopes and label; the old one stays valid for n more seconds (default one day).

There is no superadmin: a key never reaches another tenant's keys (a prefix of
another tenant answers 404, as if it did not exist), and tenants with their first
admin key are made with `sluice keys create --tenant T --scope admin`. A `tenant`
field in a body is rejected (400): the tenant comes only from the key.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ingest.keys import DEFAULT_SCOPES, SCOPES, generate_key
from producer_api.auth import authorize
from producer_api.content import receive
from producer_api.errors import error_response
from producer_api.resources import DOOR
from store.api_keys import (
    StoredKey,
    insert_tenant_key,
    list_tenant_keys,
    live_tenant_keys,
    revoke_tenant_key,
    rotate_tenant_key,
)
from store.tenancy import tenant_connection

MAX_LABEL = 200
MAX_OVERLAP_SECONDS = 30 * 24 * 3600
DEFAULT_OVERLAP_SECONDS = 24 * 3600

routes = web.RouteTableDef()


class BadAdminRequest(ValueError):
    """A body the admin API cannot act on; answered 400 with the message."""


@routes.post("/v1/admin/keys")
async def create_key(request: web.Request) -> web.Response:
    """Create a key of the caller's tenant and show it once."""
    principal = await authorize(request, "admin")
    door = request.config_dict[DOOR]
    try:
        body = await _body(request)
        scopes = _scopes(body.get("scopes"))
        label = _label(body.get("label", ""))
    except BadAdminRequest as exc:
        return error_response(400, "bad_request", str(exc))
    new = generate_key()
    secret_id, key_hash = door.keys.secrets.hash(new.secret)
    cap = door.settings.max_keys_per_tenant
    async with tenant_connection(door.pool, principal.tenant) as conn:
        if await live_tenant_keys(conn, principal.tenant) >= cap:
            return error_response(409, "too_many_keys", f"this tenant has {cap} live keys "
                                  "(SLUICE_MAX_KEYS_PER_TENANT); revoke one first")  # fmt: skip
        await insert_tenant_key(
            conn, prefix=new.prefix, tenant=principal.tenant, scopes=scopes, label=label,
            key_hash=key_hash, secret_id=secret_id,
        )  # fmt: skip
    answer = {"key": new.secret, "prefix": new.prefix, "tenant": principal.tenant}
    return web.json_response({**answer, "scopes": scopes, "label": label}, status=201)


@routes.get("/v1/admin/keys")
async def list_keys(request: web.Request) -> web.Response:
    """The caller's tenant's keys, by prefix."""
    principal = await authorize(request, "admin")
    async with tenant_connection(request.config_dict[DOOR].pool, principal.tenant) as conn:
        stored = await list_tenant_keys(conn, principal.tenant)
    now = datetime.now(UTC)
    return web.json_response({"keys": [key_json(k, now) for k in stored]})


@routes.delete("/v1/admin/keys/{prefix}")
async def revoke_key(request: web.Request) -> web.Response:
    """Revoke one of the tenant's live keys; 404 for any other prefix."""
    principal = await authorize(request, "admin")
    prefix = request.match_info["prefix"]
    door = request.config_dict[DOOR]
    async with tenant_connection(door.pool, principal.tenant) as conn:
        revoked = await revoke_tenant_key(conn, principal.tenant, prefix)
    if not revoked:
        return error_response(404, "not_found", "no active key with this prefix")
    door.keys.cut(prefix)  # other API processes: within the cache time
    bound = door.settings.key_cache_seconds
    return web.json_response({"prefix": prefix, "revoked": True, "effective_within_s": bound})


@routes.post("/v1/admin/keys/{prefix}/rotate")
async def rotate_key(request: web.Request) -> web.Response:
    """A successor for a live key; the old key expires after `overlap_seconds`."""
    principal = await authorize(request, "admin")
    door = request.config_dict[DOOR]
    try:
        overlap = _overlap((await _body(request)).get("overlap_seconds", DEFAULT_OVERLAP_SECONDS))
    except BadAdminRequest as exc:
        return error_response(400, "bad_request", str(exc))
    new = generate_key()
    async with tenant_connection(door.pool, principal.tenant) as conn:
        stored = await rotate_tenant_key(
            conn, principal.tenant, request.match_info["prefix"], overlap=overlap,
            new_prefix=new.prefix, new_hash=door.keys.secrets.hash(new.secret),
        )  # fmt: skip
    if stored is None:
        return error_response(404, "not_found", "no active key with this prefix")
    door.keys.cut(request.match_info["prefix"], overlap)
    answer = {"key": new.secret, **key_json(stored, datetime.now(UTC))}
    return web.json_response({**answer, "replaces": request.match_info["prefix"]}, status=201)


def key_json(key: StoredKey, now: datetime) -> dict[str, Any]:
    """What the admin API shows of a stored key: never the key or its hash."""
    return {
        "prefix": key.prefix,
        "tenant": key.tenant,
        "scopes": key.scopes,
        "label": key.label,
        "state": key.state(now),
        "created_at": key.created_at.isoformat(),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object body (empty body: `{}`); a `tenant` field is refused."""
    raw = await receive(request)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadAdminRequest("body is not JSON") from exc
    if not isinstance(body, dict):
        raise BadAdminRequest("body must be a JSON object")
    if "tenant" in body:
        raise BadAdminRequest("the tenant comes from the API key; remove the tenant field")
    return body


def _scopes(value: object) -> list[str]:
    if value is None:
        return list(DEFAULT_SCOPES)
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise BadAdminRequest("scopes must be a non-empty list of strings")
    unknown = sorted(set(value) - set(SCOPES))
    if unknown:
        raise BadAdminRequest(f"unknown scopes {unknown}; known: {', '.join(SCOPES)}")
    return sorted(set(value), key=SCOPES.index)


def _label(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_LABEL:
        raise BadAdminRequest(f"label must be a string of at most {MAX_LABEL} characters")
    return value


def _overlap(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadAdminRequest("overlap_seconds must be a number")
    if not 0 <= value <= MAX_OVERLAP_SECONDS:
        raise BadAdminRequest(f"overlap_seconds must be between 0 and {MAX_OVERLAP_SECONDS}")
    return float(value)
