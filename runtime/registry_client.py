"""Sluice's topic schemas in an existing schema registry instead of Sluice's own.

With `SLUICE_SCHEMA_REGISTRY_URL` set, every process that writes or reads Sluice's topics
(the API door, the stream worker, the sink, `sluice replay`, the bench) registers Sluice's
topic schemas there at start-up, under the same TopicNameStrategy subjects Sluice's own
registry uses (`schemas.subjects`), every version oldest first, and then writes that
registry's ids (`schemas.codec.use_registry_ids`). Registering is idempotent: a registry
answers the id it already gave a schema, so processes started one after another, or side
by side, agree on the ids.

The client is confluent-kafka's `SchemaRegistryClient`, with HTTP basic auth
(`SLUICE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO`, `user:password`) or a static bearer token
(`SLUICE_SCHEMA_REGISTRY_BEARER_TOKEN`). A registry that cannot be reached, refuses the
credentials or refuses a schema (an incompatible subject) stops the process with
`RegistryRefused`, which names the registry and the subject: Sluice never falls back to
its own ids silently, since a consumer reading that registry could not decode them.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from runtime.settings import Settings
from schemas.codec import schema_text, use_registry_ids
from schemas.subjects import own_subjects

try:  # the HTTP library confluent-kafka's client uses: httpx2 where it is installed
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older Pythons
    import httpx  # type: ignore[no-redef,import-not-found,unused-ignore]

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10
RETRIES = 2


class RegistryRefused(RuntimeError):
    """The external registry could not take Sluice's topic schemas; the process stops."""


def shown_url(url: str) -> str:
    """`url` without any user info, for messages and logs."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def client_config(settings: Settings) -> dict[str, Any]:
    """The `SchemaRegistryClient` configuration for `settings` (raises `RegistryRefused`
    for settings that contradict each other)."""
    if settings.schema_registry_basic_auth_user_info and settings.schema_registry_bearer_token:
        raise RegistryRefused(
            "set SLUICE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO or SLUICE_SCHEMA_REGISTRY_BEARER_TOKEN"
            ", not both"
        )
    config: dict[str, Any] = {
        "url": settings.schema_registry_url.rstrip("/"),
        "timeout": TIMEOUT_SECONDS,
        "max.retries": RETRIES,
    }
    if settings.schema_registry_basic_auth_user_info:
        if ":" not in settings.schema_registry_basic_auth_user_info:
            raise RegistryRefused("SLUICE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO is user:password")
        config["basic.auth.user.info"] = settings.schema_registry_basic_auth_user_info
    elif settings.schema_registry_bearer_token:
        config["bearer.auth.credentials.source"] = "STATIC_TOKEN"
        config["bearer.auth.token"] = settings.schema_registry_bearer_token
        config["bearer.auth.logical.cluster"] = ""  # Confluent Cloud's; others ignore it
    return config


def register_topic_schemas(settings: Settings) -> dict[int, int]:
    """Register every version of Sluice's topic subjects in `settings`' registry, oldest
    first; return Sluice's own id → the registry's id of the same schema."""
    where = f"schema registry {shown_url(settings.schema_registry_url)}"
    try:
        client = SchemaRegistryClient(client_config(settings))
    except (ValueError, TypeError) as exc:
        raise RegistryRefused(f"{where}: {exc}") from exc
    ids: dict[int, int] = {}
    for own in own_subjects(settings.topic_prefix):
        for own_id in own.schema_ids:
            ids[own_id] = _register(client, where, own.subject, own_id)
    return ids


def _register(client: SchemaRegistryClient, where: str, subject: str, own_id: int) -> int:
    schema = Schema(schema_text(own_id), "AVRO")
    try:
        return int(client.register_schema(subject, schema))
    except SchemaRegistryError as exc:
        raise RegistryRefused(_refusal(where, subject, exc)) from exc
    except (httpx.HTTPError, OSError) as exc:
        raise RegistryRefused(f"{where} cannot be reached: {type(exc).__name__}: {exc}") from exc


def _refusal(where: str, subject: str, exc: SchemaRegistryError) -> str:
    status, message = exc.http_status_code, exc.error_message
    if status in (401, 403):
        return (
            f"{where} refused Sluice's credentials (HTTP {status}: {message}); check "
            "SLUICE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO or SLUICE_SCHEMA_REGISTRY_BEARER_TOKEN"
        )
    if status == 409:
        return (
            f"{where} refused Sluice's schema for subject {subject!r} as incompatible with "
            f"the versions it holds ({message}); relax that subject's compatibility or use a "
            "topic prefix of its own"
        )
    return f"{where} refused subject {subject!r}: HTTP {status}, error {exc.error_code}: {message}"


def use_external_registry(settings: Settings) -> dict[int, int] | None:
    """Register Sluice's topic schemas in `SLUICE_SCHEMA_REGISTRY_URL` and write its ids
    from now on; None (and Sluice's own ids) when that setting is empty."""
    if not settings.schema_registry_url:
        return None
    ids = register_topic_schemas(settings)
    use_registry_ids(ids)
    log.info(
        "topic schemas registered in %s: Sluice id -> registry id %s",
        shown_url(settings.schema_registry_url), ids,
    )  # fmt: skip
    return ids
