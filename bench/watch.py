"""Watching a stage drain: message counts on topics, a group's committed offsets, CPU on the way.

A stage's rate is measured from the last sample before its output started to
move to the sample where it reached its target, so process start-up (imports,
group joins) is not counted, and the CPU it used is taken between the same two
samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench.procs import BenchProcesses, cpu_delta


class Offsets:
    """Read-only offset queries against one broker (joins no group)."""

    def __init__(self, kafka: dict[str, Any], partitions: int) -> None:
        self._kafka = kafka
        self._partitions = partitions
        self._probes: dict[str, Consumer] = {}
        self._consumer = Consumer(
            {
                **kafka,
                "group.id": "sluice-bench-offsets",
                "enable.auto.commit": False,
            }
        )

    def end_total(self, topics: Sequence[str]) -> int:
        """Sum of the high watermarks (messages ever written) of every partition of `topics`."""
        total = 0
        for topic in topics:
            for p in range(self._partitions):
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=10, cached=False
                )
                total += high
        return total

    def end_offsets(self, topic: str) -> list[int]:
        """The high watermark of each partition of `topic`."""
        return [
            self._consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10, cached=False
            )[1]
            for p in range(self._partitions)
        ]

    def committed_total(self, group: str, topics: Sequence[str]) -> int:
        """Sum of `group`'s committed offsets over every partition of `topics`."""
        probe = self._probes.get(group)
        if probe is None:
            probe = Consumer({**self._kafka, "group.id": group})
            self._probes[group] = probe
        parts = [TopicPartition(t, p) for t in topics for p in range(self._partitions)]
        return sum(max(tp.offset, 0) for tp in probe.committed(parts, timeout=10))

    def close(self) -> None:
        for probe in self._probes.values():
            probe.close()
        self._consumer.close()


@dataclass(frozen=True)
class Drained:
    """How a stage drained: units done, seconds from first movement to target, CPU meanwhile."""

    units: int
    seconds: float
    cpu: dict[str, float]
    reached: bool

    @property
    def rate(self) -> float:
        return self.units / self.seconds if self.seconds > 0 else 0.0


def wait_drained(
    count: Callable[[], int],
    target: int,
    procs: BenchProcesses | None,
    timeout: float,
    interval: float = 0.1,
) -> Drained:
    """Sample `count()` until it reaches `target`; time it from the last still sample."""
    start_count = count()
    still_at = time.perf_counter()
    still_cpu = procs.cpu_seconds() if procs else {}
    deadline = still_at + timeout
    value = start_count
    while value < target and time.perf_counter() < deadline:
        time.sleep(interval)
        if procs:
            procs.check_alive()
        sampled_at, cpu = time.perf_counter(), procs.cpu_seconds() if procs else {}
        value = count()
        if value == start_count:
            still_at, still_cpu = sampled_at, cpu
    end_cpu = procs.cpu_seconds() if procs else {}
    return Drained(
        units=value - start_count,
        seconds=time.perf_counter() - still_at,
        cpu=cpu_delta(still_cpu, end_cpu),
        reached=value >= target,
    )
