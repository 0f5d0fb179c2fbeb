"""The sink's writers lock the dead letters a delete removes in one order (dead_letter_id),
so two writers deleting overlapping door dead letters wait for each other instead of
deadlocking (eight `deadlock detected` were once seen between them). The delete by filter
(`_DELETE_ALL_DEAD_LETTERS`) orders its locks the same way; it is not tested here, as
PostgreSQL's plan for it already met the rows in id order without the ORDER BY."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from sinks.writer import _DELETE_DEAD_LETTERS, _INSERT_DEAD_LETTER

pytestmark = pytest.mark.integration
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _door_dead_letters(conn: psycopg.Connection[object], tenant: str) -> list[uuid.UUID]:
    """Five door dead letters of one identity, inserted highest id first (so the heap,
    and an unordered scan, meet them in descending id order)."""
    ids = sorted((uuid.uuid4() for _ in range(5)), reverse=True)
    for dl_id in ids:
        conn.execute(_INSERT_DEAD_LETTER, (
            dl_id, tenant, "native", "{}", "application/json", b"{}", "door", "[]", T0, "ev",
            1, None, None, None, None, None,
        ))  # fmt: skip
    return sorted(ids)


def _lowest_is_locked_while_the_highest_blocks(database_url: str, delete: str,
                                               params: object) -> bool:  # fmt: skip
    tenant = f"lk-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as setup:
        ids = _door_dead_letters(setup, tenant)
    with psycopg.connect(database_url) as holder, psycopg.connect(database_url) as deleter:
        holder.execute("SELECT 1 FROM dead_letters WHERE dead_letter_id = %s FOR UPDATE",
                       (ids[-1],))  # fmt: skip
        deleter.execute("SET lock_timeout = '5s'")
        done = threading.Event()

        def run() -> None:
            try:
                deleter.execute(delete, params(tenant) if callable(params) else params)
            except psycopg.errors.LockNotAvailable:
                pass
            finally:
                deleter.rollback()
                done.set()

        worker = threading.Thread(target=run)
        worker.start()
        try:
            done.wait(1.0)  # the delete is now blocked on the highest id
            try:
                holder.execute("SELECT 1 FROM dead_letters WHERE dead_letter_id = %s"
                               " FOR UPDATE NOWAIT", (ids[0],))  # fmt: skip
                locked = False
            except psycopg.errors.LockNotAvailable:
                locked = True
        finally:
            holder.rollback()
            worker.join()
    return locked


def test_a_delete_by_id_locks_in_id_order(database_url: str) -> None:
    def params(tenant: str) -> tuple[object, ...]:
        return ([tenant], ["native"], ["ev"], [1 << 40], [None], [datetime(2030, 1, 1, tzinfo=UTC)])

    assert _lowest_is_locked_while_the_highest_blocks(database_url, _DELETE_DEAD_LETTERS, params)
