"""Fixtures of the fault suite: a 3-node cluster a test may kill, and fault durations.

Durations are configurable so a machine can run the suite as long as the issue asks
(`SLUICE_FAULT_OUTAGE_SECONDS=60` for a minute-long Kafka outage) while CI runs shorter.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.launchers.kafka import KafkaLauncher

OUTAGE_SECONDS = float(os.environ.get("SLUICE_FAULT_OUTAGE_SECONDS", "20"))
"""How long Kafka stays fully down in case 7."""
PAUSE_SECONDS = float(os.environ.get("SLUICE_FAULT_PAUSE_SECONDS", "35"))
"""How long a broker stays SIGSTOPped in case 3 (beyond replica.lag.time.max.ms, 30 s)."""


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[KafkaLauncher]:
    """A fresh 3-node KRaft cluster on 127.0.0.1, SIGKILLed afterwards (nothing to keep)."""
    kafka = KafkaLauncher(tmp_path / "kafka", nodes=3)
    kafka.start()
    try:
        yield kafka
    finally:
        for node in kafka.nodes:  # a SIGSTOPped broker must be woken before it can die
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
        kafka.kill()
