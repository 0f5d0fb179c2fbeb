"""Putting an event's recorded facts in order (`store.history.build_steps`, pure).

The end-to-end cases (replace, delete, replay by id and by job, tenants, scopes) are in
tests/integration/test_history.py; these are the ones a running stack makes hard to reach.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.versions import version_of
from store.history import Recorded, build_steps

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _letter(**fields: Any) -> dict[str, Any]:
    base = {"dead_letter_id": "dl-1", "stage": "door", "reasons": [{"code": "invalid_type"}],
            "received_at": _at(0), "request_id": "r-1", "source_partition": None,
            "source_offset": None, "attempt": 1, "replay_of": None, "status": "pending",
            "resolved_at": None, "outcome": None, "stored_at": _at(1)}  # fmt: skip
    return {**base, **fields}


def _version(
    offset: int, index: int, received: float, stored: float, **fields: Any
) -> dict[str, Any]:
    base = {"version": version_of(offset, index), "kafka_partition": 3, "request_id": f"r-{offset}",
            "replay_of": None, "received_at": _at(received), "stored_at": _at(stored)}  # fmt: skip
    return {**base, **fields}


def test_a_stream_rejection_was_accepted_at_its_position_first() -> None:
    letter = _letter(stage="stream", source_partition=3, source_offset=41, stored_at=_at(2))
    steps = build_steps(Recorded([], [letter], None, None), detail=True)
    assert [(s["step"], s.get("offset")) for s in steps] == [("accepted", 41), ("rejected", None)]
    assert steps[0]["partition"] == 3 and steps[0]["request_id"] == steps[1]["request_id"] == "r-1"
    assert steps[1]["dead_letter_id"] == "dl-1"


def test_without_detail_a_rejection_names_no_dead_letter_and_no_reasons() -> None:
    letter = _letter(status="discarded", resolved_at=_at(5))
    steps = build_steps(Recorded([], [letter], None, None), detail=False)
    assert [s["step"] for s in steps] == ["rejected", "discarded"]
    assert all("dead_letter_id" not in s and "reasons" not in s for s in steps)


def test_a_version_a_newer_delete_beat_to_the_sink_is_never_called_stored() -> None:
    late = _version(10, 0, received=0, stored=9)
    deletion = {"version": version_of(12, 0), "deleted_at": _at(5), "requested_at": _at(4),
                "deletion_id": "del-1"}  # fmt: skip
    steps = build_steps(Recorded([late], [], deletion, None), detail=True)
    assert [s["step"] for s in steps] == ["accepted", "deleted"]
    assert steps[1]["deletion_id"] == "del-1"


def test_versions_in_order_each_replaced_by_the_next() -> None:
    versions = [_version(5, 1, 0, 1), _version(9, 0, 2, 3), _version(20, 4, 4, 5)]
    steps = build_steps(Recorded(versions, [], None, versions[-1]["version"]), detail=True)
    assert [s["step"] for s in steps] == ["accepted", "stored", "accepted", "stored", "replaced",
                                          "accepted", "stored", "replaced"]  # fmt: skip
    replaced = [s for s in steps if s["step"] == "replaced"]
    assert [(s["version"], s["by_request_id"]) for s in replaced] == [
        (version_of(5, 1), "r-9"),
        (version_of(9, 0), "r-20"),
    ]
    assert [s["index"] for s in steps if s["step"] == "accepted"] == [1, 0, 4]
