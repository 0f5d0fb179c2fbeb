"""A Sluice pipeline (api, worker, sink) of a fault test's own, on the Kafka and PostgreSQL
it is given, with a fresh topic prefix, consumer groups and tenant."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runtime.settings import Settings
from runtime.topic_admin import ensure_topics
from sinks.migrate import migrate
from sluice.keys_cli import create_key
from sluice.launchers.postgres import PostgresLauncher
from sluice.stack import ROLES, ProcessStack
from tests.conftest import make_settings


@dataclass
class Pipeline:
    """The running processes, their settings, and a key of a tenant only this test uses."""

    settings: Settings
    stack: ProcessStack
    tenant: str
    key: str

    @property
    def base_url(self) -> str:
        return self.stack.base_url


@contextlib.contextmanager
def pipeline(
    kafka: str,
    database_url: str,
    log_dir: Path,
    *,
    roles: tuple[str, ...] = ROLES,
    **overrides: object,
) -> Iterator[Pipeline]:
    """Create the topics, start `roles`, wait for the API; stop everything afterwards."""
    settings = make_settings(kafka, database_url, **overrides)
    ensure_topics(settings)
    tenant = f"faults-{uuid.uuid4().hex[:8]}"
    key = create_key(settings, tenant, ["events:write", "events:read"])
    stack = ProcessStack(settings, log_dir)
    stack.start(roles)
    try:
        if "api" in roles:
            stack.wait_ready(timeout=120)
        yield Pipeline(settings, stack, tenant, key)
    finally:
        stack.stop()


@contextlib.contextmanager
def own_postgres() -> Iterator[PostgresLauncher]:
    """A migrated PostgreSQL a test may crash and restart.

    Its folder is made directly under the system temp folder, not under pytest's
    `pytest-of-<user>`: pytest resets that folder to mode 0700 whenever a session starts,
    and the server (run as an unprivileged user when we are root) must traverse it.
    """
    workdir = Path(tempfile.mkdtemp(prefix="sluice-faults-pg-"))
    try:
        with PostgresLauncher(workdir) as pg:
            migrate(pg.url)
            yield pg
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class Supervisor:
    """Restarts a worker or sink that exits, as systemd (`Restart=always`) or Kubernetes
    would; counts the restarts by role and exit code (70: the watchdog acted)."""

    def __init__(self, stack: ProcessStack, roles: tuple[str, ...] = ("worker", "sink")) -> None:
        self._stack = stack
        self._roles = roles
        self.restarts: Counter[str] = Counter()
        """`role:exit code` → restarts."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for role in self._roles:
                proc = self._stack.procs.get(role)
                code = proc.poll() if proc is not None else None
                if code is not None:
                    self._stack.procs.pop(role)
                    self._stack.start_role(role)
                    self.restarts[f"{role}:{code}"] += 1
