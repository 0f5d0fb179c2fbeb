"""The Schema Registry's core: Confluent's rules over `store.registry`, free of HTTP.

Each operation runs in the caller's tenant (`tenant_connection`) and raises
`RegistryError` with the registry's own status and error code. A tenant sees its own
subjects and Sluice's (owner ''); another tenant's are absent (40401). Sluice's
subjects are read-only to tenants (40301).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from schemas.codec import schema_text
from schemas.compatibility import (
    DEFAULT_MODE,
    MODES,
    InvalidSchema,
    ParsedSchema,
    incompatibilities,
    parse,
)
from schemas.contracts import InvalidContract, compile_schema, is_contract_subject
from schemas.subjects import own_subjects
from store import registry as db
from store.tenancy import tenant_connection

MAX_SUBJECT = 255


class RegistryError(Exception):
    """An answer of the registry's own: HTTP status, error code, message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(version: int | str) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found.")


def schema_not_found() -> RegistryError:
    return RegistryError(404, 40403, "Schema not found")


def invalid_schema(message: str) -> RegistryError:
    return RegistryError(422, 42201, message)


@dataclass(frozen=True)
class Registered:
    id: int
    version: int


async def register_own_schemas(pool: AsyncConnectionPool, prefix: str) -> None:
    """Sluice's topic schemas under their fixed ids and TopicNameStrategy subjects."""
    async with db.system_connection(pool) as conn:
        for own in own_subjects(prefix):
            for version, schema_id in enumerate(own.schema_ids, start=1):
                parsed = parse("AVRO", schema_text(schema_id))
                await db.put_own_schema(conn, schema_id, parsed.text, parsed.fingerprint)
                await db.put_own_version(conn, own.subject, version, schema_id)


def check_subject(subject: str) -> None:
    if not subject or len(subject) > MAX_SUBJECT or not subject.isprintable():
        raise RegistryError(422, 42208, f"invalid subject name (1-{MAX_SUBJECT} printable chars)")


def parse_version(raw: str) -> int | None:
    """A version path segment: a positive int, or `latest` / -1 (None)."""
    if raw in ("latest", "-1"):
        return None
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 2**31:
        raise RegistryError(
            422, 42202,
            f"The specified version '{raw[:40]}' is not a valid version id. Allowed values are "
            'between [1, 2^31-1] and the string "latest"',
        )  # fmt: skip
    return int(raw)


def checked_schema(body: dict[str, Any], max_bytes: int) -> ParsedSchema:
    """The schema of a register / look-up / compatibility body, checked (42201)."""
    text, kind = body.get("schema"), body.get("schemaType", "AVRO") or "AVRO"
    if not isinstance(text, str) or not isinstance(kind, str):
        raise invalid_schema("the body needs a string 'schema' (and 'schemaType' a string)")
    if len(text.encode()) > max_bytes:
        raise invalid_schema(f"the schema is larger than {max_bytes} bytes")
    if body.get("references"):
        raise invalid_schema("schema references are not supported")
    try:
        return parse(kind.upper(), text)
    except InvalidSchema as exc:
        raise invalid_schema(str(exc)) from exc


async def _owner(conn: AsyncConnection[Any], tenant: str, subject: str) -> str:
    owner = await db.owner_of(conn, tenant, subject)
    if owner is None:
        raise subject_not_found(subject)
    return owner


async def _live_versions(
    conn: AsyncConnection[Any], tenant: str, subject: str, deleted: bool = False
) -> tuple[str, list[db.StoredVersion]]:
    owner = await _owner(conn, tenant, subject)
    found = await db.versions(conn, owner, subject, deleted)
    if not found:
        raise subject_not_found(subject)
    return owner, found


def _pick(found: list[db.StoredVersion], version: int | None) -> db.StoredVersion:
    if version is None:
        return found[-1]
    for stored in found:
        if stored.version == version:
            return stored
    raise version_not_found(version)


async def get_schema(pool: AsyncConnectionPool, tenant: str, schema_id: int) -> db.StoredSchema:
    async with tenant_connection(pool, tenant) as conn:
        found = await db.schema_by_id(conn, tenant, schema_id)
    if found is None:
        raise schema_not_found()
    return found


async def schema_uses(
    pool: AsyncConnectionPool, tenant: str, schema_id: int, deleted: bool
) -> list[tuple[str, int]]:
    async with tenant_connection(pool, tenant) as conn:
        if await db.schema_by_id(conn, tenant, schema_id) is None:
            raise schema_not_found()
        return await db.uses_of_schema(conn, tenant, schema_id, deleted)


async def list_subjects(pool: AsyncConnectionPool, tenant: str, deleted: bool) -> list[str]:
    async with tenant_connection(pool, tenant) as conn:
        return await db.subjects(conn, tenant, deleted)


async def list_versions(
    pool: AsyncConnectionPool, tenant: str, subject: str, deleted: bool
) -> list[int]:
    async with tenant_connection(pool, tenant) as conn:
        _, found = await _live_versions(conn, tenant, subject, deleted)
    return [v.version for v in found]


async def get_version(
    pool: AsyncConnectionPool, tenant: str, subject: str, version: int | None, deleted: bool
) -> db.StoredVersion:
    async with tenant_connection(pool, tenant) as conn:
        _, found = await _live_versions(conn, tenant, subject, deleted)
    return _pick(found, version)


async def lookup(
    pool: AsyncConnectionPool, tenant: str, subject: str, schema: ParsedSchema, deleted: bool
) -> db.StoredVersion:
    """The version of `subject` whose schema is `schema` (40401, 40403)."""
    async with tenant_connection(pool, tenant) as conn:
        owner, found = await _live_versions(conn, tenant, subject, deleted)
        schema_id = await db.schema_by_fingerprint(
            conn, owner, schema.schema_type, schema.fingerprint
        )
    for stored in reversed(found):
        if stored.id == schema_id:
            return stored
    raise schema_not_found()


async def _mode(conn: AsyncConnection[Any], tenant: str, subject: str) -> str:
    return (
        await db.config(conn, tenant, subject) or await db.config(conn, tenant, "") or DEFAULT_MODE
    )


async def _check(mode: str, schema: ParsedSchema, found: list[db.StoredVersion]) -> list[str]:
    """`incompatibilities` against the versions `mode` reads (the latest, or every one for a
    `_TRANSITIVE` mode), parsed and checked in a worker thread: a schema near the size cap
    takes up to a few hundred ms of CPU, which must not stall the event loop."""
    if mode == "NONE" or not found:
        return []
    checked = found if mode.endswith("_TRANSITIVE") else found[-1:]

    def run() -> list[str]:
        previous = [parse(v.schema_type, v.schema) for v in checked]
        try:
            return incompatibilities(mode, schema, previous)
        except RecursionError:  # parse bounds nesting first; this is the second wall
            return ["the schemas are nested too deeply to compare"]

    return await asyncio.to_thread(run)


def _check_contract(subject: str, schema: ParsedSchema) -> None:
    if schema.schema_type != "JSON":
        raise invalid_schema(f"subject '{subject}' is a data contract: its schemas are JSON")
    try:
        compile_schema(schema.text)
    except InvalidContract as exc:
        raise invalid_schema(str(exc)) from exc


def _writable(owner: str | None, subject: str) -> None:
    if owner == db.SYSTEM:
        raise RegistryError(403, 40301, f"Subject '{subject}' is Sluice's own and read-only.")


async def register(
    pool: AsyncConnectionPool, tenant: str, subject: str, schema: ParsedSchema
) -> Registered:
    """A version of `subject` with `schema`: the existing one if the subject has it, else a
    new version if compatible (409 with every reason otherwise). A data contract's subject
    (`native.<type>`, …: `schemas.contracts`) takes only a JSON Schema that compiles as one
    (42201 otherwise)."""
    async with tenant_connection(pool, tenant) as conn:
        return await register_on(conn, tenant, subject, schema)


class Incompatible(RegistryError):
    """A registration the subject's compatibility mode refuses (409); `reasons` lists why."""

    def __init__(self, subject: str, reasons: list[str]) -> None:
        super().__init__(
            409, 409, "Schema being registered is incompatible with an earlier schema "
            f"for subject \"{subject}\", details: {reasons}",
        )  # fmt: skip
        self.reasons = reasons


async def register_on(
    conn: AsyncConnection[Any], tenant: str, subject: str, schema: ParsedSchema
) -> Registered:
    """`register` inside the caller's tenant transaction (`tenant_connection`), so a
    registration can commit or roll back with other writes (a dakkio data source's row)."""
    check_subject(subject)
    if is_contract_subject(subject):
        await asyncio.to_thread(_check_contract, subject, schema)
    _writable(await db.owner_of(conn, tenant, subject), subject)
    await db.lock_subject(conn, tenant, subject)
    found = await db.versions(conn, tenant, subject, deleted=False)
    schema_id = await db.schema_by_fingerprint(conn, tenant, schema.schema_type, schema.fingerprint)
    for stored in found:
        if stored.id == schema_id:
            return Registered(stored.id, stored.version)
    reasons = await _check(await _mode(conn, tenant, subject), schema, found)
    if reasons:
        raise Incompatible(subject, reasons)
    if schema_id is None:
        schema_id = await db.insert_schema(
            conn, tenant, schema.schema_type, schema.text, schema.fingerprint
        )
    return Registered(schema_id, await db.insert_version(conn, tenant, subject, schema_id))


async def latest_on(
    conn: AsyncConnection[Any], tenant: str, subject: str
) -> db.StoredVersion | None:
    """The subject's latest live version inside the caller's transaction; None: it has none."""
    owner = await db.owner_of(conn, tenant, subject)
    if owner is None:
        return None
    found = await db.versions(conn, owner, subject, deleted=False)
    return found[-1] if found else None


async def compatibility(
    pool: AsyncConnectionPool, tenant: str, subject: str, version: int | None,
    schema: ParsedSchema,
) -> list[str]:  # fmt: skip
    """Why `schema` may not follow `version` of `subject` (None: as registering would check)."""
    async with tenant_connection(pool, tenant) as conn:
        owner, found = await _live_versions(conn, tenant, subject)
        mode = await _mode(conn, owner, subject)
    if version is None:
        return await _check(mode, schema, found)
    return await _check(mode.removesuffix("_TRANSITIVE"), schema, [_pick(found, version)])


async def delete(
    pool: AsyncConnectionPool, tenant: str, subject: str, version: int | None, permanent: bool,
) -> list[int]:  # fmt: skip
    """Soft-delete the subject (or one version), or remove what was soft-deleted."""
    async with tenant_connection(pool, tenant) as conn:
        owner = await _owner(conn, tenant, subject)
        _writable(owner, subject)
        await db.lock_subject(conn, tenant, subject)
        every = await db.versions(conn, tenant, subject, deleted=True)
        if version is None and permanent:
            if any(not v.deleted for v in every):
                raise RegistryError(
                    404, 40405, f"Subject '{subject}' was not deleted first before being "
                    "permanently deleted",
                )  # fmt: skip
            return await db.hard_delete(conn, tenant, subject, None)
        if version is None:
            done = await db.soft_delete(conn, tenant, subject, None)
            if not done:
                raise RegistryError(404, 40404, f"Subject '{subject}' was soft deleted.")
            return done
        target = _pick(every, version)
        if permanent:
            if not target.deleted:
                raise RegistryError(
                    404, 40407, f"Subject '{subject}' Version {version} was not deleted first "
                    "before being permanently deleted",
                )  # fmt: skip
            return await db.hard_delete(conn, tenant, subject, version)
        if target.deleted:
            raise version_not_found(version)
        return await db.soft_delete(conn, tenant, subject, version)


def checked_mode(body: dict[str, Any]) -> str:
    mode = body.get("compatibility", body.get("compatibilityLevel"))
    if not isinstance(mode, str) or mode.upper() not in MODES:
        raise RegistryError(422, 42203, f"Invalid compatibility level. Valid values are {MODES}")
    return mode.upper()


async def get_config(
    pool: AsyncConnectionPool, tenant: str, subject: str | None, default_to_global: bool
) -> str:
    async with tenant_connection(pool, tenant) as conn:
        if subject is None:
            return await db.config(conn, tenant, "") or DEFAULT_MODE
        owner = await db.owner_of(conn, tenant, subject)
        found = await db.config(conn, owner if owner is not None else tenant, subject)
        if found is not None:
            return found
        if owner == db.SYSTEM or default_to_global:
            return await db.config(conn, tenant, "") or DEFAULT_MODE
    raise RegistryError(
        404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured"
    )


async def put_config(
    pool: AsyncConnectionPool, tenant: str, subject: str | None, mode: str
) -> None:
    async with tenant_connection(pool, tenant) as conn:
        if subject is not None:
            check_subject(subject)
            _writable(await db.owner_of(conn, tenant, subject), subject)
        await db.set_config(conn, tenant, subject or "", mode)
