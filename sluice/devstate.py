"""Where a running `sluice dev` stack can be found: `<state dir>/dev.json`.

`sluice dev` writes the file once its stack answers `/readyz` and removes it when it
stops. It holds the stack's environment (Kafka, PostgreSQL, and every other setting
that differs from its default, secrets left out) and the process ids. The other
`sluice` commands read it when `KAFKA_BOOTSTRAP_SERVERS` or `DATABASE_URL` is unset, so
a second terminal works against the dev stack with no exports, and use it only while
the processes that wrote it are alive (a stale file from a killed stack is ignored).
The file is readable by its owner only: a database URL may hold a password.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "dev.json"
DEFAULT_STATE_DIR = ".sluice"
"""`Settings.state_dir`'s default (a test keeps them equal); `SLUICE_STATE_DIR` moves it."""
SERVICE_VARS = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DevStack:
    """What `dev.json` says about a running stack."""

    path: Path
    api: str
    environ: dict[str, str]
    pids: dict[str, int]
    withheld: tuple[str, ...]
    """Secret variables the stack was started with that the file does not hold."""


def state_file(state_dir: Path) -> Path:
    return Path(state_dir) / STATE_FILE


def write_dev_state(
    state_dir: Path, *, api: str, environ: Mapping[str, str], pids: Mapping[str, int],
    withheld: tuple[str, ...] = (),
) -> Path:  # fmt: skip
    """Record the running stack; `pids` are the stack's processes, this one included."""
    path = state_file(state_dir)
    document = {
        "api": api,
        "environ": dict(environ),
        "pids": {role: {"pid": pid, "started": _started(pid)} for role, pid in pids.items()},
        "withheld": list(withheld),
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2)
    tmp.replace(path)
    return path


def remove_dev_state(state_dir: Path) -> None:
    state_file(state_dir).unlink(missing_ok=True)


def find_dev_stack(state_dir: Path) -> DevStack | None:
    """The stack recorded under `state_dir`, if its file is there and every process lives."""
    path = state_file(state_dir)
    try:
        document: dict[str, Any] = json.loads(path.read_text())
        pids = {role: (int(p["pid"]), p.get("started")) for role, p in document["pids"].items()}
        stack = DevStack(
            path=path, api=str(document["api"]),
            environ={str(k): str(v) for k, v in document["environ"].items()},
            pids={role: pid for role, (pid, _s) in pids.items()},
            withheld=tuple(document.get("withheld", ())),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not pids or not all(_alive(pid, started) for pid, started in pids.values()):
        return None
    return stack


def environ_with_dev_stack(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`environ` (default: the process's), completed from a running dev stack when
    `KAFKA_BOOTSTRAP_SERVERS` or `DATABASE_URL` is unset. Variables set win."""
    env = dict(os.environ if environ is None else environ)
    if all(env.get(name, "").strip() for name in SERVICE_VARS):
        return env
    stack = find_dev_stack(Path(env.get("SLUICE_STATE_DIR") or DEFAULT_STATE_DIR))
    if stack is None:
        return env
    _log.info("using the running dev stack recorded in %s", stack.path)
    missing = [name for name in stack.withheld if not env.get(name)]
    if missing:
        _log.warning("the dev stack was started with its own %s; set it here too, or what "
                     "this command does with it will not match", ", ".join(missing))  # fmt: skip
    for name, value in stack.environ.items():
        if not env.get(name, "").strip():
            env[name] = value
    return env


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return started is None or _started(pid) in (started, None)
