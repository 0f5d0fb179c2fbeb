"""The door's receive time, carried in the route for families whose seed lets an event's
time default to "now".

The stream validates the same raw bytes again later, so "now" must be a value both
sides read: the door writes its receive time into the route (`RECEIVED_AT`), and the
validators read it back here. Replays keep the original route, so the original time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

RECEIVED_AT = "received_at"


def received_time(route: Mapping[str, str]) -> datetime | None:
    """The door's receive time from the route; None when a producer did not set it."""
    return _parse_received(route.get(RECEIVED_AT, ""))


@lru_cache(maxsize=256)
def _parse_received(text: str) -> datetime | None:
    """Cached: every event of a request shares its route."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def client_time(value: Any) -> datetime | None:
    """An analytics SDK's own ISO 8601 timestamp of an event (PostHog's `timestamp`,
    Segment's `timestamp` or `originalTimestamp`) in UTC; None when absent or not
    understood, so the caller falls back to the receive time."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.upper())
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
