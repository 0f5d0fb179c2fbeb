"""Summaries of request records: throughput, latency percentiles, answers, time series."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bench.load import RequestRecord


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def status_counts(records: Sequence[RequestRecord]) -> dict[str, int]:
    """Answers by class: `2xx`, `429`, `503`, `other` (any other status or no answer)."""
    counts: Counter[str] = Counter()
    for r in records:
        if 200 <= r.status < 300:
            counts["2xx"] += 1
        elif r.status in (429, 503):
            counts[str(r.status)] += 1
        else:
            counts["other"] += 1
    return {k: counts.get(k, 0) for k in ("2xx", "429", "503", "other")}


def latency_ms(records: Sequence[RequestRecord]) -> dict[str, float]:
    """p50/p99/max of accepted requests' latency, in milliseconds."""
    waits = [1000 * (r.done - r.sent) for r in records if r.status == 202]
    return {
        "p50": percentile(waits, 50),
        "p99": percentile(waits, 99),
        "max": max(waits, default=0),
    }


def timeline(records: Sequence[RequestRecord], start: float, step: float = 1.0) -> dict[str, Any]:
    """Per `step`-second bins since `start`: accepted events/s and p50/p99 latency (ms)."""
    if not records:
        return {"t": [], "accepted_per_s": [], "p50_ms": [], "p99_ms": []}
    bins = int((max(r.done for r in records) - start) / step) + 1
    accepted = [0.0] * bins
    waits: list[list[float]] = [[] for _ in range(bins)]
    for r in records:
        b = max(0, int((r.done - start) / step))
        accepted[b] += r.accepted / step
        if r.status == 202:
            waits[b].append(1000 * (r.done - r.sent))
    return {
        "t": [i * step for i in range(bins)],
        "accepted_per_s": accepted,
        "p50_ms": [percentile(w, 50) for w in waits],
        "p99_ms": [percentile(w, 99) for w in waits],
    }
