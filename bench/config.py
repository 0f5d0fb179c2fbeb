"""The benchmark's knobs, read once from the environment (sizes and durations only).

Defaults keep a whole `make bench` under about ten minutes on a two-core machine;
the CI smoke test shrinks everything so the harness keeps working in under a minute.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BenchConfig:
    """How much load each phase of the benchmark applies."""

    events: int = 300_000
    """Events per door measurement (and so what the stream and sink phases drain): at
    ~200k events/s a door phase lasts a second or two, long enough to be steady."""
    batch: int = 255
    """Events per request in the main door measurement."""
    large_batch: int = 2_000
    """Events per request in the large-request door measurement."""
    concurrency: int = 64
    """Requests in flight from the load generator (closed loop). The door answers after
    Kafka's acknowledgement (~30-50 ms under load), so with few requests in flight a
    closed loop measures that wait rather than what the door can take; 64 producers
    sending at once keep the door's CPU busy, as the raw loop keeps its producer's."""
    door_rounds: int = 3
    """The door and its raw produce loop run alternately this many times; the report shows
    the round with the median ratio and every round's figures (one run on a shared
    two-core machine varied by ±30 %)."""
    e2e_seconds: float = 15.0
    """How long the half-rate end-to-end phase offers load."""
    burst_seconds: float = 10.0
    """How long the 10x burst offers load."""
    burst_multiplier: float = 10.0
    """The burst's offered rate, as a multiple of the sustainable rate."""
    burst_max_inflight: int = 256
    """Most requests the burst keeps open at once; beyond it the generator records a skip."""
    phase_timeout: float = 180.0
    """Longest wait for one phase to drain before the harness gives up on it."""
    results_dir: Path = Path("bench-results")
    plots: bool = True
    profile: bool = False
    """Record py-spy profiles of each stage into `results_dir/profiles/` (needs py-spy)."""
    until: str = "pipeline"
    """The last stage to run, in order door → stream → sink → pipeline; earlier ones run too."""


STAGES = ("door", "stream", "sink", "pipeline")
"""The benchmark's stages in the order they run; each drains what the one before accepted."""


def load_config(environ: Mapping[str, str] | None = None) -> BenchConfig:
    """Read `BenchConfig` from `BENCH_*` environment variables (see docs/benchmarks.md)."""
    env = os.environ if environ is None else environ
    d = BenchConfig()
    return BenchConfig(
        events=int(env.get("BENCH_EVENTS", d.events)),
        batch=int(env.get("BENCH_BATCH", d.batch)),
        large_batch=int(env.get("BENCH_LARGE_BATCH", d.large_batch)),
        concurrency=int(env.get("BENCH_CONCURRENCY", d.concurrency)),
        door_rounds=max(1, int(env.get("BENCH_DOOR_ROUNDS", d.door_rounds))),
        e2e_seconds=float(env.get("BENCH_E2E_SECONDS", d.e2e_seconds)),
        burst_seconds=float(env.get("BENCH_BURST_SECONDS", d.burst_seconds)),
        burst_multiplier=float(env.get("BENCH_BURST_MULTIPLIER", d.burst_multiplier)),
        burst_max_inflight=int(env.get("BENCH_BURST_MAX_INFLIGHT", d.burst_max_inflight)),
        phase_timeout=float(env.get("BENCH_PHASE_TIMEOUT", d.phase_timeout)),
        results_dir=Path(env.get("BENCH_RESULTS_DIR", str(d.results_dir))),
        plots=env.get("BENCH_PLOTS", "1") not in ("0", ""),
        profile=env.get("BENCH_PROFILE", "0") not in ("0", ""),
        until=_stage(env.get("BENCH_UNTIL", d.until)),
    )


def _stage(name: str) -> str:
    if name not in STAGES:
        raise ValueError(f"BENCH_UNTIL={name!r}: one of {', '.join(STAGES)}")
    return name
