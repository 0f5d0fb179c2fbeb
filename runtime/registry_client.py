"""Sluice's topic schemas in an existing schema registry instead of Sluice's own.

With `SLUICE_SCHEMA_REGISTRY_URL` set, every process that writes or reads Sluice's topics
(the API door, the stream worker, the sink, `sluice replay`, the bench) registers Sluice's
topic schemas there at start-up, under the same TopicNameStrategy subjects Sluice's own
registry uses (`schemas.subjects`), every version oldest first, and then writes that
registry's ids (`schemas.codec.use_registry_ids`). Registering is idempotent: a registry
answers the id it already gave a schema, so processes started one after another agree on
the ids. Side by side, a registry may give one schema two ids (Apicurio 2.0 does): an id a
process did not get is asked of the registry when a message carries it
(`SchemaIdResolver`).

The client is confluent-kafka's `SchemaRegistryClient`, with HTTP basic auth
(`SLUICE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO`, `user:password`) or a static bearer token
(`SLUICE_SCHEMA_REGISTRY_BEARER_TOKEN`). A registry that cannot be reached, refuses the
credentials or refuses a schema (an incompatible subject) stops the process with
`RegistryRefused`, which names the registry and the subject: Sluice never falls back to
its own ids silently, since a consumer reading that registry could not decode them.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fastavro
import fastavro.schema
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from runtime.settings import Settings
from schemas.codec import CodecError, own_schema_ids, schema_text, use_registry_ids
from schemas.subjects import own_subjects

try:  # the HTTP library confluent-kafka's client uses: httpx2 where it is installed
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older Pythons
    import httpx  # type: ignore[no-redef,import-not-found,unused-ignore]

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10
RETRIES = 2
CONFLICT_ATTEMPTS = 4
CONFLICT_PAUSE_SECONDS = 0.3


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


def _client(settings: Settings) -> tuple[SchemaRegistryClient, str]:
    """The client for `settings`' registry, and how messages name that registry."""
    where = f"schema registry {shown_url(settings.schema_registry_url)}"
    try:
        return SchemaRegistryClient(client_config(settings)), where
    except (ValueError, TypeError) as exc:
        raise RegistryRefused(f"{where}: {exc}") from exc


def register_topic_schemas(settings: Settings) -> dict[int, int]:
    """Register every version of Sluice's topic subjects in `settings`' registry, oldest
    first; return Sluice's own id → the registry's id of the same schema."""
    client, where = _client(settings)
    ids: dict[int, int] = {}
    for own in own_subjects(settings.topic_prefix):
        for own_id in own.schema_ids:
            ids[own_id] = _register(client, where, own.subject, own_id)
    return ids


def _canonical(text: str) -> str:
    """Avro's Parsing Canonical Form: equal for schemas that write the same bytes."""
    return str(fastavro.schema.to_parsing_canonical_form(fastavro.parse_schema(json.loads(text))))


class SchemaIdResolver:
    """Which of Sluice's schemas an id of the registry is (`schemas.codec.IdResolver`): the
    schema the registry holds under it, compared with Sluice's by canonical form."""

    def __init__(self, client: SchemaRegistryClient, where: str) -> None:
        self._client, self._where = client, where
        self._sluice = {_canonical(schema_text(i)): i for i in own_schema_ids()}

    def __call__(self, schema_id: int) -> int | None:
        try:
            found = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise CodecError(f"{self._where} cannot say what id {schema_id} is: {exc}") from exc
        except (httpx.HTTPError, OSError) as exc:
            raise CodecError(f"{self._where} cannot be reached for id {schema_id}") from exc
        if (found.schema_type or "AVRO") != "AVRO" or not found.schema_str:
            return None
        try:
            return self._sluice.get(_canonical(found.schema_str))
        except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException):
            return None


def _register(client: SchemaRegistryClient, where: str, subject: str, own_id: int) -> int:
    """The registry's id for schema `own_id` under `subject`. A 409 is asked again a few
    times: Sluice's processes start side by side, and a registry that creates a subject
    non-atomically (Apicurio 2.0) answers 409 to the second of two first registrations;
    asked again, it finds the subject and answers the id. A 409 that stays is a refusal."""
    schema = Schema(schema_text(own_id), "AVRO")
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return int(client.register_schema(subject, schema))
        except SchemaRegistryError as exc:
            if exc.http_status_code != 409 or attempt == CONFLICT_ATTEMPTS:
                raise RegistryRefused(_refusal(where, subject, exc)) from exc
        except (httpx.HTTPError, OSError) as exc:
            raise RegistryRefused(
                f"{where} cannot be reached: {type(exc).__name__}: {exc}"
            ) from exc
        time.sleep(CONFLICT_PAUSE_SECONDS * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


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
    use_registry_ids(ids, SchemaIdResolver(*_client(settings)))
    log.info(
        "topic schemas registered in %s: Sluice id -> registry id %s",
        shown_url(settings.schema_registry_url), ids,
    )  # fmt: skip
    return ids
