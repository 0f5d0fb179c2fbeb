"""`sluice worker breaker status|resume`: see and release the DLQ circuit breaker's holds.

Each worker writes its breaker's state to `SLUICE_STATE_DIR/breaker-<worker id>.json`
and reads resume requests from `breaker-<worker id>.resume` once a second, so these
commands work where the worker's state directory is (the same machine, or a shared
volume); they never talk to Kafka.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from runtime.settings import load_settings
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
@click.option("--json", "as_json", is_flag=True, help="Print the workers' states as JSON.")
def status(as_json: bool) -> None:
    """Tripped keys of every worker whose state is in SLUICE_STATE_DIR."""
    states = _statuses(load_settings().state_dir)
    if as_json:
        click.echo(json.dumps(states, indent=1))
        return
    if not states:
        click.echo("no worker has reported a breaker state here (is SLUICE_STATE_DIR right?)")
        return
    for worker_id, state in states.items():
        tripped = state.get("open", {})
        age = time.time() - float(state.get("at", 0))
        click.echo(f"worker {worker_id} (pid {state.get('pid')}, reported {age:.0f}s ago): "
                   f"{len(tripped)} tripped")  # fmt: skip
        for label, key in sorted(tripped.items()):
            click.echo(f"  {label}: {key.get('reason')}; open {key.get('seconds_open')}s, "
                       f"holding {key.get('held')}, passed {key.get('passed', 0)}")  # fmt: skip


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
