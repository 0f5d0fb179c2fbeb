"""`ContractCache.run` keeps polling whatever one load raises: a bug met while loading one
tenant's contracts must not leave every tenant's contracts frozen in that process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ingest.contracts import ContractCache


async def test_the_poll_goes_on_after_a_load_raises_an_unexpected_error() -> None:
    attempts = 0
    again = asyncio.Event()

    @contextlib.asynccontextmanager
    async def broken() -> AsyncIterator[Any]:
        nonlocal attempts
        attempts += 1
        if attempts >= 3:
            again.set()
        raise RuntimeError("a bug in one load")
        yield None  # pragma: no cover - never reached

    cache = ContractCache(broken, poll_seconds=0.01)
    task = asyncio.create_task(cache.run())
    await asyncio.wait_for(again.wait(), timeout=5)
    assert not task.done()  # still polling after three failed loads
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not cache.loaded.is_set()
