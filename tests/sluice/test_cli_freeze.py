"""The long-running services leave what they imported out of the cycle collector's full
collections (`gc.freeze`) before they serve: a full collection of a busy sink walked those
~75,000 objects every time, pausing all its threads."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from sluice.cli import main


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.parametrize(
    ("command", "runner"),
    [("sink", "sluice.runners.run_sink"), ("worker", "streams.worker.run"),
     ("api", "producer_api.app.run")],
)  # fmt: skip
def test_a_service_freezes_its_imports_before_it_runs(
    command: str, runner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen_at_start: list[int] = []

    def run(settings: Any) -> None:
        frozen_at_start.append(gc.get_freeze_count())

    monkeypatch.setattr(runner, run)
    monkeypatch.setattr("sluice.cli._with_topic_schema_ids", lambda settings: settings)
    assert gc.get_freeze_count() == 0
    result = CliRunner().invoke(main, [command])
    assert result.exit_code == 0, result.output
    assert frozen_at_start and frozen_at_start[0] > 10_000
