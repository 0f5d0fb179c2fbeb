"""`sluice worker breaker status|resume`: see and release the DLQ circuit breaker's holds.

Each worker writes its breaker's state to `SLUICE_STATE_DIR/breaker-<worker id>.json`
and reads resume requests from `breaker-<worker id>.resume` once a second, so these
commands work where the worker's state directory is (the same machine, or a shared
volume); they never talk to Kafka.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from runtime.settings import load_settings
from sluice.listing import Column, emit, json_option
from streams.breaker import request_resume, resume_path


def _statuses(state_dir: Path) -> dict[str, dict[str, Any]]:
    """Each worker's last reported breaker state, by worker id."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(state_dir.glob("breaker-*.json")):
        try:
            found[path.stem.removeprefix("breaker-")] = dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


@click.group()
def breaker() -> None:
    """See and resume the stream's DLQ circuit breaker (per partition, tenant and family)."""


@breaker.command()
@json_option
def status(as_json: bool) -> None:
    """Tripped keys of every worker whose state is in SLUICE_STATE_DIR (a worker with none
    tripped shows as one row without a key)."""
    states = _statuses(load_settings().state_dir)
    if not states and not as_json:
        click.echo("no worker has reported a breaker state here (is SLUICE_STATE_DIR right?)")
        return
    emit(status_rows(states), STATUS_COLUMNS, as_json=as_json)


STATUS_COLUMNS = (
    Column("worker", "worker"),
    Column("pid", "pid"),
    Column("reported", "reported_at", time=True),
    Column("key", "key"),
    Column("reason", "reason"),
    Column("open s", "seconds_open"),
    Column("held", "held"),
    Column("passed", "passed"),
)


def status_rows(states: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per tripped key of each worker (`resume` takes the key as shown)."""
    rows: list[dict[str, Any]] = []
    for worker_id, state in states.items():
        head = {"worker": worker_id, "pid": state.get("pid"),
                "reported_at": datetime.fromtimestamp(float(state.get("at", 0)), UTC)}  # fmt: skip
        tripped = state.get("open", {})
        if not tripped:
            rows.append({**head, "key": None})
        for label, key in sorted(tripped.items()):
            rows.append({**head, "key": label, "reason": key.get("reason"),
                         "seconds_open": key.get("seconds_open"), "held": key.get("held"),
                         "passed": key.get("passed", 0)})  # fmt: skip
    return rows


@breaker.command()
@click.argument("keys", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Resume every tripped key.")
def resume(keys: tuple[str, ...], everything: bool) -> None:
    """Release tripped KEYS now (as `status` prints them: 'TOPIC/PARTITION TENANT/FAMILY').

    Their held envelopes are processed and sent, dead letters included, within a second."""
    if bool(keys) == everything:
        raise click.UsageError("name the keys to resume, or give --all")
    state_dir = load_settings().state_dir
    states = _statuses(state_dir)
    asked = 0
    for worker_id, state in states.items():
        tripped = set(state.get("open", {}))
        wanted = sorted(tripped) if everything else [k for k in keys if k in tripped]
        if wanted:
            request_resume(resume_path(state_dir, worker_id), [] if everything else wanted)
            click.echo(f"worker {worker_id}: resume asked for {', '.join(wanted)}")
            asked += len(wanted)
    if not asked:
        raise click.ClickException("no such tripped key (see `sluice worker breaker status`)")
