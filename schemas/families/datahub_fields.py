"""DataHub's field rules that JSON events (`datahub`) and CSV rows (`datahub_csv`) share:
the fixed dimension keys, the provider and time checks, and the canonical event."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.outcome import ValidEvent, Violation

EVENT_TYPE = "datahub.event"

FIXED_KEYS = frozenset({
    "billing_account_id", "country", "is_marketplace", "operation", "pricing_unit",
    "project_id", "project_name", "project_number", "region", "resource_id",
    "resource_global_id", "service_description", "service_id", "sku_description", "sku_id",
    "zone",
})  # fmt: skip
DIMENSION_TYPES = ("fixed", "label", "project_label")

PROVIDER = re.compile(r"[A-Za-z0-9_ \-]{1,256}")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def canonical(event_id: str | None, data: dict[str, Any]) -> ValidEvent:
    """The canonical event of valid DataHub `data` (shared by JSON events and CSV rows)."""
    return ValidEvent(
        event_id=event_id,
        type=EVENT_TYPE,
        source=data["provider"],
        subject=None,
        time=parse_time(data["time"]),
        data_json=msgspec.json.encode(data).decode(),
    )


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp (already checked) in UTC."""
    return datetime.fromisoformat(value.upper().replace(" ", "T")).astimezone(UTC)


def check_time(value: Any, path: str) -> list[Violation]:
    if value is None:
        return [Violation("missing_field", path, "`time` is required")]
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        return [Violation("invalid_timestamp", path, "must be an RFC 3339 timestamp")]
    try:
        parse_time(value)
    except ValueError:
        return [Violation("invalid_timestamp", path, "must be an RFC 3339 timestamp")]
    return []


def check_provider(value: Any, path: str) -> list[Violation]:
    if value is None:
        return [Violation("missing_field", path, "`provider` is required")]
    if not isinstance(value, str) or not PROVIDER.fullmatch(value):
        message = "must be 1 to 256 letters, digits, underscores, spaces or dashes"
        return [Violation("invalid_value", path, message)]
    return []
