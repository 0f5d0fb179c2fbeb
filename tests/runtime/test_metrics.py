"""The watchdog's stall rule (`runtime.metrics`): work waited the whole time, no progress."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from runtime.metrics import ProgressWatchdog, stalled


def test_stalled_only_when_work_waited_without_progress() -> None:
    assert not stalled(5.0, 5.0, 20, stall_seconds=10.0)  # not long enough
    assert not stalled(15.0, 5.0, 20, stall_seconds=10.0)  # seen waiting only lately
    assert not stalled(15.0, 15.0, 0, stall_seconds=10.0)  # nothing waits now
    assert not stalled(15.0, 15.0, None, stall_seconds=10.0)  # Kafka unreachable: unknown
    assert stalled(15.0, 15.0, 10, stall_seconds=10.0)


def test_the_watchdog_needs_an_unbroken_run_of_waiting_work() -> None:
    dog = ProgressWatchdog("test", lambda: None, CollectorRegistry(), stall_seconds=0.05)
    assert not dog.check(5)  # the run of waiting work starts here
    time.sleep(0.06)
    assert dog.check(6)  # no batch, work waited the whole time
    dog.progress()
    assert not dog.check(7)  # just made progress
    time.sleep(0.06)
    assert not dog.check(None)  # Kafka unreachable: the run breaks
    assert not dog.check(7)  # and starts again
    assert not dog.check(0)  # idle
