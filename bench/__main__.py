"""`python -m bench`: run the whole benchmark and write its results.

Every knob is an environment variable (`BENCH_*`, listed in docs/benchmarks.md); the
only argument understood is `--help`.
"""

import sys

from bench.run import main

USAGE = """usage: python -m bench   (or: make bench)

Starts Kafka and PostgreSQL (or uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL),
runs each stage of Sluice beside its raw baseline, and writes JSON, Markdown and
PNG results to $BENCH_RESULTS_DIR (default bench-results/).

Knobs (environment): BENCH_EVENTS, BENCH_BATCH, BENCH_LARGE_BATCH, BENCH_CONCURRENCY,
BENCH_E2E_SECONDS, BENCH_BURST_SECONDS, BENCH_BURST_MULTIPLIER, BENCH_BURST_MAX_INFLIGHT,
BENCH_PHASE_TIMEOUT, BENCH_RESULTS_DIR, BENCH_PLOTS, BENCH_PROFILE,
BENCH_UNTIL (door | stream | sink | pipeline: the last stage to run).
"""

if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
    print(USAGE, end="")
elif len(sys.argv) > 1:
    sys.exit(f"python -m bench takes no arguments (see --help): {' '.join(sys.argv[1:])}")
else:
    main()
