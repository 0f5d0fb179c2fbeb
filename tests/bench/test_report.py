"""The benchmark table's issue-19 rows: the whole pipeline's CPU beside its raw stages'."""

from __future__ import annotations

from typing import Any

from bench.report import raw_stages_cpu, targets

RESULTS: dict[str, Any] = {
    "door_raw": {"cpu_us_per_unit": 2.5, "kafka_cpu_us_per_event": 1.5},
    "stream_raw": {"cpu_us_per_unit": 6.0},
    "sink_raw": {"cpu_us_per_unit": 1.5, "server_cpu_us_per_unit": 12.5},
    "sustained": {"cpu_us_per_event_total": 36.0, "per_second": 40_000.0},
    "door": {"per_second": 200_000.0},
}


def _row(results: dict[str, Any], starts: str) -> dict[str, Any]:
    [row] = [r for r in targets(results) if r["figure"].startswith(starts)]
    return row


def test_the_pipeline_cpu_stands_beside_the_sum_of_the_raw_stages() -> None:
    assert raw_stages_cpu(RESULTS) == 24.0
    row = _row(RESULTS, "whole pipeline CPU")
    assert (row["sluice"], row["baseline"], row["ratio"], row["met"]) == (36.0, 24.0, 1.5, False)
    cheap = {**RESULTS, "sustained": {"cpu_us_per_event_total": 14.0}}
    assert _row(cheap, "whole pipeline CPU")["met"] is True


def test_a_missing_raw_stage_gives_no_floor() -> None:
    results = {**RESULTS, "stream_raw": {}}
    assert raw_stages_cpu(results) is None
    assert _row(results, "whole pipeline CPU")["ratio"] is None


def test_the_pipeline_is_compared_with_the_door() -> None:
    assert _row(RESULTS, "whole pipeline ÷ door")["ratio"] == 0.2
