"""Start and stop Sluice's own processes (api, worker, sink) against given Kafka and
PostgreSQL. Used by `sluice dev`, the integration tests and the benchmarks alike."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from runtime.settings import Settings, settings_env

ROLES = ("api", "worker", "sink")


def wait_for_readyz(
    base_url: str, timeout: float, check_alive: Callable[[], None], log_tail: Callable[[], str]
) -> None:
    """Poll `base_url`/readyz until it answers 200; `check_alive` raises if a process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive()
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"API not ready after {timeout}s:\n{log_tail()}")


def read_log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a process log ('' when it does not exist yet)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ProcessStack:
    """The three Sluice processes, each logging to `log_dir/<role>.log`."""

    settings: Settings
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    def start(self, roles: tuple[str, ...] = ROLES) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **settings_env(self.settings)}
        for role in roles:
            self.start_role(role, env)

    def start_role(self, role: str, env: dict[str, str] | None = None) -> None:
        env = env or {**os.environ, **settings_env(self.settings)}
        log = (self.log_dir / f"{role}.log").open("ab")
        self._logs.append(log)
        self.procs[role] = subprocess.Popen(
            [sys.executable, "-m", "sluice", role], env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the API answers /readyz with 200; raise with the API log if not."""
        wait_for_readyz(self.base_url, timeout, self._check_alive, lambda: self.log_tail("api"))

    def _check_alive(self) -> None:
        for role, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{role} exited with {proc.returncode}:\n{self.log_tail(role)}")

    def log_tail(self, role: str, lines: int = 40) -> str:
        return read_log_tail(self.log_dir / f"{role}.log", lines)

    def stop_role(self, role: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        proc = self.procs.pop(role, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        for role in list(self.procs):
            self.stop_role(role)
        for log in self._logs:
            log.close()
        self._logs.clear()
