"""Apicurio Registry on 127.0.0.1, resolved from Maven Central: a schema registry that is
not Sluice's own, for proving `SLUICE_SCHEMA_REGISTRY_URL` against one.

Maven Central has the registry's application module as a library jar, not a runnable
one, so `resolve_apicurio` has Maven build the runner once into a cache folder
(`apicurio-pom.xml`: the Quarkus plugin over `io.apicurio:apicurio-registry-app`, with the
module's own `application.properties`, in-memory H2 storage). `ApicurioLauncher` runs it
on a free port; its Confluent-compatible API is `ccompat_url` (`/apis/ccompat/v6`, the
one this version speaks). Nothing is kept between runs: the storage is in memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from types import TracebackType

from sluice.launchers.kafka import default_cache_dir

APICURIO_VERSION = "2.0.2.Final"
POM_PATH = Path(__file__).parent / "apicurio-pom.xml"
MAVEN_SETTINGS = Path(__file__).parent / "apicurio-maven-settings.xml"
JVM_OPTIONS = ("-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-Djava.awt.headless=true")
CCOMPAT_PATH = "/apis/ccompat/v6"
RUNNER = "apicurio-registry-runner.jar"
_INDEXED = (
    "quarkus.index-dependency.sluice-registry.group-id=io.apicurio\n"
    "quarkus.index-dependency.sluice-registry.artifact-id=apicurio-registry-app\n"
)
"""The registry's beans live in a dependency: Quarkus indexes it only when told to."""

_log = logging.getLogger(__name__)


class ApicurioLauncherError(RuntimeError):
    """Apicurio Registry could not be resolved, built or started."""


def resolve_apicurio(cache_dir: Path | None = None) -> Path:
    """Build Apicurio Registry's runner jar with Maven once; return its path.

    Idempotent (a marker holds a hash of the pom) and safe to call from parallel
    processes (an exclusive file lock), like `resolve_kafka_jars`.
    """
    home = (cache_dir or default_cache_dir()) / f"apicurio-{APICURIO_VERSION}"
    runner = home / "app" / RUNNER
    marker = home / ".resolved"
    digest = hashlib.sha256(POM_PATH.read_bytes() + _INDEXED.encode()).hexdigest()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == digest and runner.exists():
            return runner
        _build(home / "build", home / "app")
        marker.write_text(digest + "\n")
    return runner


def _build(build: Path, app: Path) -> None:
    shutil.rmtree(build, ignore_errors=True)
    shutil.rmtree(app, ignore_errors=True)
    (build / "src" / "main" / "resources").mkdir(parents=True)
    shutil.copy(POM_PATH, build / "pom.xml")
    module = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}"
    _mvn(build, "dependency:copy", f"-Dartifact={module}", f"-DoutputDirectory={build / 'module'}")
    (build / "src" / "main" / "resources" / "application.properties").write_text(
        _module_properties(build / "module") + "\n" + _INDEXED
    )
    _log.info("building Apicurio Registry %s with Maven into %s", APICURIO_VERSION, app)
    _mvn(build, "package", "-DskipTests")
    target = build / "target"
    app.mkdir(parents=True)
    shutil.copy(
        target / "sluice-apicurio-runtime-1-runner.jar", app / "apicurio-registry-runner.jar"
    )
    shutil.copytree(target / "lib", app / "lib")  # the runner's manifest names lib/*.jar
    shutil.rmtree(build, ignore_errors=True)


def _module_properties(folder: Path) -> str:
    """The registry module's own `application.properties` (storage, ports, profiles)."""
    with zipfile.ZipFile(folder / f"apicurio-registry-app-{APICURIO_VERSION}.jar") as archive:
        return archive.read("application.properties").decode("utf-8")


def _mvn(folder: Path, *goals: str) -> None:
    command = ["mvn", "-q", "-B", "-s", str(MAVEN_SETTINGS), "-f", str(folder / "pom.xml"), *goals]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=folder)
    except FileNotFoundError as exc:
        raise ApicurioLauncherError("Maven (`mvn`) is needed to build Apicurio Registry") from exc
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise ApicurioLauncherError(f"`{' '.join(command)}` failed:\n{output}")


class ApicurioLauncher:
    """One Apicurio Registry process on 127.0.0.1 (a free port), logging to `workdir`."""

    def __init__(self, workdir: Path, *, cache_dir: Path | None = None) -> None:
        self.workdir = workdir
        self.cache_dir = cache_dir
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ccompat_url(self) -> str:
        """The Confluent-compatible API, the URL for `SLUICE_SCHEMA_REGISTRY_URL`."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "apicurio.log"

    def start(self, timeout: float = 120.0) -> str:
        """Start the registry and wait until its Confluent API answers; return its URL."""
        runner = resolve_apicurio(self.cache_dir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = ["java", *JVM_OPTIONS, "-Dquarkus.http.host=127.0.0.1",
                   f"-Dquarkus.http.port={self.port}", "-jar", str(runner)]  # fmt: skip
        with open(self.log_file, "ab") as out:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                env=_registry_env(self.port),
            )  # fmt: skip
        self._wait(timeout)
        return self.ccompat_url

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ApicurioLauncherError(f"Apicurio Registry exited:\n{self._log_tail()}")
            if _answers(f"{self.ccompat_url}/subjects"):
                return
            time.sleep(0.3)
        self.stop()
        raise ApicurioLauncherError(f"Apicurio Registry not up in {timeout}s:\n{self._log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL whatever outlives `timeout`."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-30:])
        return ""

    def __enter__(self) -> ApicurioLauncher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _registry_env(port: int) -> dict[str, str]:
    """This environment without what would send the registry elsewhere: its module reads
    `KAFKA_BOOTSTRAP_SERVERS` (to publish registry events) and `K_SINK`."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "K_SINK")}
    return {**env, "HTTP_PORT": str(port)}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
