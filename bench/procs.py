"""Sluice's own processes for the benchmark, by name, with their CPU time and memory.

Unlike `sluice.stack.ProcessStack` (one process per role), several processes may
play one role here: two `api` processes share one port through `SO_REUSEPORT`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import psutil

from runtime.settings import Settings, settings_env
from sluice.stack import read_log_tail, wait_for_readyz


@dataclass
class BenchProcesses:
    """Named Sluice processes (`api-1`, `worker`, `sink`, ...) logging to `log_dir/<name>.log`."""

    settings: Settings
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    handles: dict[str, psutil.Process] = field(default_factory=dict)
    services: dict[str, psutil.Process] = field(default_factory=dict)
    """Kafka and PostgreSQL server processes, when they run on this machine."""
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    def start(self, name: str, role: str, **env_overrides: str) -> None:
        """Start `python -m sluice <role>` as `name`, with extra environment variables."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **settings_env(self.settings), **env_overrides}
        log = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "sluice", role], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs[name] = proc
        self.handles[name] = psutil.Process(proc.pid)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the API port answers /readyz with 200 (any api process may answer)."""
        wait_for_readyz(self.base_url, timeout, self.check_alive, lambda: self.log_tail("api-1"))

    def check_alive(self) -> None:
        """Raise with the log tail if any process has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        return read_log_tail(self.log_dir / f"{name}.log", lines)

    def attach_service(self, name: str, address: str) -> None:
        """Watch the CPU of the local server listening on `address` (`host:port` or a URL)."""
        parts = urlsplit(address if "//" in address else f"//{address}")
        if parts.hostname not in ("127.0.0.1", "localhost", "::1") or parts.port is None:
            return
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == parts.port and conn.pid:
                self.services[name] = psutil.Process(conn.pid)
                return

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds each running process has used so far.

        A server's figure includes its child processes, live or ended (PostgreSQL's backends).
        """
        out: dict[str, float] = {}
        for name, handle in self.handles.items():
            try:
                out[name] = _cpu(handle)
            except psutil.Error:
                continue
        for name, handle in self.services.items():
            try:
                reaped = handle.cpu_times()
                finished = reaped.children_user + reaped.children_system
                live = sum(_cpu(c) for c in handle.children(recursive=True))
                out[name] = _cpu(handle) + finished + live
            except psutil.Error:
                continue
        return out

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each running process."""
        out: dict[str, int] = {}
        for name, handle in self.handles.items():
            try:
                out[name] = handle.memory_info().rss
            except psutil.Error:
                continue
        return out

    def stop(self, name: str, timeout: float = 20.0) -> None:
        """SIGTERM one process, then SIGKILL it if it has not exited after `timeout`."""
        proc = self.procs.pop(name, None)
        self.handles.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        for log in self._logs:
            log.close()
        self._logs.clear()


def _cpu(handle: psutil.Process) -> float:
    times = handle.cpu_times()
    return float(times.user + times.system)


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds used between two `cpu_seconds()` snapshots, per process present in both."""
    return {name: max(0.0, after[name] - before[name]) for name in after if name in before}
