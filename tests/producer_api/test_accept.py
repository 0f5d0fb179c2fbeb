"""The shared ingest path's planning step: where it runs."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from producer_api.ingest import RequestContext

from producer_api import accept
from schemas.outcome import Outcome
from schemas.topics import TopicNames
from schemas.validators import validator_for

CTX = RequestContext(tenant="acme", family="native", route={}, content_type="application/json",
                     received_at=datetime(2024, 1, 1, tzinfo=UTC))  # fmt: skip
RAW = b'{"id":"e1","type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{}}'


@pytest.mark.parametrize("in_thread", [False, True])
async def test_a_csv_slice_is_validated_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, in_thread: bool
) -> None:
    threads: list[threading.Thread] = []
    native = validator_for("native")

    def validate(raw: bytes, route: Mapping[str, str]) -> Outcome:
        threads.append(threading.current_thread())
        return native(raw, route)

    monkeypatch.setattr(accept, "validator_for", lambda _family: validate)
    door: Any = SimpleNamespace(topics=TopicNames.for_prefix("t."),
                                settings=SimpleNamespace(partitions=4))  # fmt: skip
    plan = await accept.prepare_events(door, CTX, [RAW], rate_limited=False, in_thread=in_thread)
    assert plan.accepted == 1
    assert (threads[0] is threading.main_thread()) is not in_thread
