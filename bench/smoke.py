"""`make bench-smoke`: the benchmark harness (`python -m bench`) at a tiny size, in a minute.

It runs every phase of `make bench` — door, stream and sink beside their raw
baselines, the whole pipeline, the half-rate latency and the burst — with a few
thousand events, so the harness is exercised without the full run's ten minutes.
Figures this small say little; `make bench` is the measurement. Any `BENCH_*`
variable still overrides the sizes chosen here.
"""

from __future__ import annotations

import os
from dataclasses import replace

from bench.config import load_config
from bench.run import main as run_bench_main

SMOKE_DEFAULTS = {
    "BENCH_EVENTS": "5100",
    "BENCH_LARGE_BATCH": "1020",
    "BENCH_E2E_SECONDS": "3",
    "BENCH_BURST_SECONDS": "3",
    "BENCH_PHASE_TIMEOUT": "90",
}


def main() -> None:
    """Run the harness with the smoke sizes (environment variables still win), no plots."""
    cfg = load_config({**SMOKE_DEFAULTS, **os.environ})
    run_bench_main(replace(cfg, plots=False))


if __name__ == "__main__":
    main()
