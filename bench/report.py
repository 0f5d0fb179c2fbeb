"""Turning one run's results into ratios against the targets, a Markdown table and files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

MEMORY_FLAT_FACTOR = 1.5
"""'Flat' under the burst: no process's peak RSS above this multiple of its RSS before it."""


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _sink_postgres_row(results: dict[str, Any]) -> tuple[str, Any, Any, Any, str, bool | None]:
    """PostgreSQL's CPU per row storing the sink's batches against storing the COPY's rows
    (issue 19: at most 1.5 times), both measured in this run."""
    sink = _get(results, "sink", "cpu_us_per_unit", "postgres")
    copy = _get(results, "sink_raw", "server_cpu_us_per_unit")
    r = _ratio(sink, copy)
    return ("sink: PostgreSQL CPU µs/row", sink, copy, r, "ratio <= 1.5",
            None if r is None else r <= 1.5)  # fmt: skip


def _sum(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _door_cpu_per_event(results: dict[str, Any]) -> float | None:
    """CPU per accepted event of the API processes and the broker during the door phase."""
    cpu = _get(results, "door", "cpu_us_per_event")
    if not isinstance(cpu, dict):
        return None
    return sum(v for k, v in cpu.items() if k.startswith("api") or k == "kafka") or None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what was measured, its baseline, the ratio and whether it was met."""
    rows: list[dict[str, Any]] = []

    def add(name: str, value: Any, baseline: Any, ratio: Any, goal: str, met: bool | None) -> None:
        rows.append(
            {
                "figure": name,
                "sluice": value,
                "baseline": baseline,
                "ratio": ratio,
                "target": goal,
                "met": met,
            }
        )

    for label, stage, raw, goal in (
        ("door events/s (255/request)", "door", "door_raw", 0.5),
        ("stream events/s", "stream", "stream_raw", 0.7),  # issue 19 (first 0.25)
        ("sink rows/s", "sink", "sink_raw", 0.8),  # issue 19 (first 0.5)
    ):
        value, base = _get(results, stage, "per_second"), _get(results, raw, "per_second")
        r = _ratio(value, base)
        add(label, value, base, r, f"ratio >= {goal}", None if r is None else r >= goal)
    add(*_sink_postgres_row(results))
    add(*_contracts_row(results))
    large, raw = _get(results, "door_large", "per_second"), _get(results, "door_raw", "per_second")
    add("door events/s (large requests)", large, raw, _ratio(large, raw), "(information)", None)
    door_cpu = _door_cpu_per_event(results)
    raw_cpu = _sum(
        _get(results, "door_raw", "cpu_us_per_unit"),
        _get(results, "door_raw", "kafka_cpu_us_per_event"),
    )
    add(
        "door CPU µs/event, API + Kafka (baseline: producer + Kafka)",
        door_cpu, raw_cpu, _ratio(door_cpu, raw_cpu), "(information: lower is better)", None,
    )  # fmt: skip
    two, one = _get(results, "door_two", "per_second"), _get(results, "door", "per_second")
    r = _ratio(two, one)
    add("two doors vs one, events/s", two, one, r, "ratio >= 1.7", None if r is None else r >= 1.7)
    replay, first = _get(results, "sink_replay", "per_second"), _get(results, "sink", "per_second")
    r = _ratio(replay, first)
    add(
        "sink replay vs first write, rows/s",
        replay,
        first,
        r,
        "ratio >= 1",
        None if r is None else r >= 1,
    )
    cpu = cpu_total(results)
    add(
        "CPU µs per event (door+stream+sink)",
        cpu,
        85.0,
        _ratio(cpu, 85.0),
        "<= ~85 µs",
        None if cpu is None else cpu <= 85,
    )
    add(*_pipeline_cpu_row(results))
    whole, door = _get(results, "sustained", "per_second"), _get(results, "door", "per_second")
    add("whole pipeline ÷ door, events/s", whole, door, _ratio(whole, door), "(information)", None)
    p99 = _get(results, "e2e", "queryable_ms", "p99")
    add(  # issue 19 (first 1,000 ms)
        "end-to-end p99 ms at half load",
        p99,
        E2E_P99_GOAL_MS,
        _ratio(p99, E2E_P99_GOAL_MS),
        f"<= {E2E_P99_GOAL_MS:g} ms",
        None if p99 is None else p99 <= E2E_P99_GOAL_MS,
    )
    add(*_memory_row(results))
    add(*_burst_row(results))
    return rows


def cpu_total(results: dict[str, Any]) -> float | None:
    """Sum of each stage's own process CPU per event, each measured while it ran alone."""
    parts = (
        _get(results, "door", "cpu_us_per_event", "api-1"),
        _get(results, "stream", "cpu_us_per_unit", "worker"),
        _get(results, "sink", "cpu_us_per_unit", "sink"),
    )
    return None if any(p is None for p in parts) else float(sum(parts))


E2E_P99_GOAL_MS = 250.0
"""Issue 19: acceptance → queryable p99 at half the sustainable rate, at most this."""

PIPELINE_CPU_GOAL = 15.0
"""Issue 19: every process's CPU per event while the whole pipeline runs, at most this."""


def raw_stages_cpu(results: dict[str, Any]) -> float | None:
    """What the raw baselines of this run cost per event, each stage measured alone: the
    producer loop and its broker, the consume→produce loop (its broker not counted) and the
    binary COPY with PostgreSQL's share. The pipeline does each stage's work and more, so
    this is below what any pipeline on this machine can cost."""
    return _sum(
        _get(results, "door_raw", "cpu_us_per_unit"),
        _get(results, "door_raw", "kafka_cpu_us_per_event"),
        _get(results, "stream_raw", "cpu_us_per_unit"),
        _get(results, "sink_raw", "cpu_us_per_unit"),
        _get(results, "sink_raw", "server_cpu_us_per_unit"),
    )


def _pipeline_cpu_row(results: dict[str, Any]) -> tuple[str, Any, Any, Any, str, bool | None]:
    value = _get(results, "sustained", "cpu_us_per_event_total")
    floor = raw_stages_cpu(results)
    return ("whole pipeline CPU µs/event, every process (baseline: the raw stages' sum)",
            value, floor, _ratio(value, floor), f"<= {PIPELINE_CPU_GOAL:g} µs",
            None if value is None else value <= PIPELINE_CPU_GOAL)  # fmt: skip


CONTRACTS_GOAL = 0.8
"""The stream with a data contract on every event, against the stream without (same run)."""


def _contracts_row(results: dict[str, Any]) -> tuple[str, Any, Any, Any, str, bool | None]:
    value = _get(results, "stream_contracts", "per_second")
    base = _get(results, "stream_contracts", "without", "per_second")
    r = _ratio(value, base)
    sound = _get(results, "stream_contracts", "enforced") is True and \
        _get(results, "stream_contracts", "dead_lettered") == 0  # fmt: skip
    met = None if r is None else r >= CONTRACTS_GOAL and sound
    return ("stream events/s, a data contract on every event (baseline: the same, none)",
            value, base, r,
            f"ratio >= {CONTRACTS_GOAL}, all valid, contract applied", met)  # fmt: skip


def _memory_row(results: dict[str, Any]) -> tuple[str, Any, Any, Any, str, bool | None]:
    rss = _get(results, "burst", "rss_mb") or {}
    if not rss:
        return ("peak RSS MB under 10x burst", None, None, None, "flat", None)
    worst = max(rss, key=lambda n: rss[n]["peak"] / max(rss[n]["before"], 1))
    peak, before = rss[worst]["peak"], rss[worst]["before"]
    r = _ratio(peak, before)
    met = r is not None and r <= MEMORY_FLAT_FACTOR
    return (
        f"peak RSS MB under 10x burst (worst: {worst})",
        peak,
        before,
        r,
        f"peak <= {MEMORY_FLAT_FACTOR}x before",
        met,
    )


def _burst_row(results: dict[str, Any]) -> tuple[str, Any, Any, Any, str, bool | None]:
    answers, missing = _get(results, "burst", "answers"), _get(results, "burst", "missing")
    if answers is None:
        return ("burst answers", None, None, None, "no errors, no loss", None)
    shown = " ".join(f"{k}:{v}" for k, v in answers.items())
    return (
        "burst answers (2xx 429 503 other), missing",
        shown,
        missing,
        None,
        "no errors, no loss",
        answers["other"] == 0 and missing == 0,
    )


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    """The targets table plus the per-process CPU and memory figures, as Markdown."""
    lines = [
        "| figure | Sluice | baseline | ratio | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in targets(results):
        lines.append(
            "| "
            + " | ".join(
                _cell(row[k]) for k in ("figure", "sluice", "baseline", "ratio", "target", "met")
            )
            + " |"
        )
    lines += ["", "| detail | value |", "|---|---|"]
    for label, path in _DETAILS:
        lines.append(f"| {label} | {_detail(_get(results, *path))} |")
    return "\n".join(lines) + "\n"


_DETAILS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("door rounds, each beside its raw loop (the median ratio is the one above)", ("door_rounds",)),
    ("door latency ms (255/request)", ("door", "latency_ms")),
    ("door latency ms (large requests)", ("door_large", "latency_ms")),
    ("door CPU µs/event by process", ("door", "cpu_us_per_event")),
    ("load generator CPU µs/event", ("door", "load_generator_cpu_us_per_event")),
    ("raw producer CPU µs/event", ("door_raw", "cpu_us_per_unit")),
    ("raw producer: broker CPU µs/event", ("door_raw", "kafka_cpu_us_per_event")),
    ("stream CPU µs/event", ("stream", "cpu_us_per_unit")),
    ("raw consume→produce CPU µs/event", ("stream_raw", "cpu_us_per_unit")),
    ("stream with data contracts CPU µs/event", ("stream_contracts", "cpu_us_per_unit")),
    ("the same stream without contracts", ("stream_contracts", "without")),
    ("stream CPU per event, without ÷ with contracts", ("stream_contracts", "cpu_ratio")),
    ("stream with and without contracts, each round", ("stream_contracts", "rounds")),
    ("stream with data contracts: events dead-lettered", ("stream_contracts", "dead_lettered")),
    ("stream with data contracts: schema applied to events", ("stream_contracts", "enforced")),
    ("sink CPU µs/row", ("sink", "cpu_us_per_unit")),
    ("raw COPY CPU µs/row (client side)", ("sink_raw", "cpu_us_per_unit")),
    ("raw COPY: PostgreSQL CPU µs/row", ("sink_raw", "server_cpu_us_per_unit")),
    ("whole pipeline events/s (all processes at once)", ("sustained", "per_second")),
    ("whole pipeline CPU µs/event by process", ("sustained", "cpu_us_per_event")),
    (
        "whole pipeline: events/s if it had every core",
        ("sustained", "cpu_bound_ceiling_per_second"),
    ),
    ("load average as each phase began", ("meta", "load_average_by_phase")),
    ("end to end: offered events/s", ("e2e", "offered_per_second")),
    ("end to end: acceptance → queryable ms", ("e2e", "queryable_ms")),
    (
        "end to end: the sink's own figure, request received → committed ms (its histogram)",
        ("e2e", "committed_ms"),
    ),
    ("end to end: door latency ms", ("e2e", "door_latency_ms")),
    ("end to end: by stage ms", ("e2e", "stages_ms")),
    ("burst: offered events/s", ("burst", "offered_per_second")),
    ("burst: requests offered / skipped (client cap)", ("burst", "skipped_requests")),
    ("burst: door latency ms", ("burst", "door_latency_ms")),
    ("burst: RSS MB before / peak (while offered / draining after)", ("burst", "rss_mb")),
)


def _detail(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_detail(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_detail(v) for v in value)
    return _cell(value)


def write(results: dict[str, Any], folder: Path, stamp: str) -> tuple[Path, Path]:
    """Write `<stamp>.json` and `<stamp>.md` into `folder`; return both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    results["targets"] = targets(results)
    json_path, md_path = folder / f"{stamp}.json", folder / f"{stamp}.md"
    json_path.write_text(json.dumps(results, indent=2, default=str))
    md_path.write_text(f"# Sluice benchmark {stamp}\n\n{markdown(results)}")
    return json_path, md_path


def write_named(folder: Path, name: str, result: dict[str, Any], text: str) -> None:
    """A side bench's figures: `<name>-<time>.json` and `.md` in `folder`, and the table
    printed (`bench.console_views`, `bench.console_browser`, `bench.retention`,
    `bench.growth`)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (folder / f"{name}-{stamp}.json").write_text(json.dumps(result, indent=1))
    (folder / f"{name}-{stamp}.md").write_text(text + "\n")
    print(text)
