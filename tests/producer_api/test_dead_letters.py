"""Replay-job slots are shared fairly: a tenant holds at most MAX_TENANT_JOBS and runs one
at a time, so another tenant's job starts while the first one's queue waits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from producer_api import dead_letters
from producer_api.dead_letters import MAX_TENANT_JOBS, JobRunner
from store.dead_letters import DeadLetterFilter


def test_one_tenants_queue_never_holds_every_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    release = asyncio.Event()

    async def job(deps: Any, tenant: str, job_id: str, flt: Any, dry_run: bool, kind: str) -> None:
        started.append(job_id)
        await release.wait()

    monkeypatch.setattr(dead_letters, "run_job", job)

    async def scenario() -> None:
        runner, flt = JobRunner(), DeadLetterFilter()
        for n in range(MAX_TENANT_JOBS):
            assert not runner.full_for("greedy")
            runner.start(None, "greedy", f"greedy-{n}", flt, False)  # type: ignore[arg-type]
        assert runner.full_for("greedy") and not runner.full_for("other")
        runner.start(None, "other", "other-0", flt, False)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert sorted(started) == ["greedy-0", "other-0"]  # one each, not greedy-0 and -1
        release.set()
        await asyncio.gather(*runner.tasks)
        assert len(started) == MAX_TENANT_JOBS + 1
        assert not runner.full_for("greedy") and not runner.held and not runner.turns

    asyncio.run(scenario())
