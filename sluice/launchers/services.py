"""Finding Kafka and PostgreSQL: the one place `sluice dev` and the test fixtures share.

The order is fixed (the README, "Two commands", and docs/testing.md say it too):

1. services named by the environment: `KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`;
2. a reachable Docker engine, through testcontainers (`apache/kafka`, `postgres` images);
   set `SLUICE_NO_DOCKER=1` to skip this step even when Docker is there;
3. the local launchers in this package (no Docker, no network except Maven Central
   the first time Kafka's jars are fetched).

Each step is tried only if the one before is unavailable (if Docker answers but its
container fails to start, for example offline without the image, a warning is logged and
the local launcher runs instead). What was chosen is logged in one line and described by
a `Service`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import psycopg

from sluice.launchers.kafka import KAFKA_VERSION, KafkaLauncher, wait_for_kafka
from sluice.launchers.postgres import PostgresLauncher

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

KAFKA_IMAGE = f"apache/kafka:{KAFKA_VERSION}"
POSTGRES_IMAGE = "postgres:17"

Kind = Literal["kafka", "postgres"]
Source = Literal["environment", "docker", "local"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    """A running service and how it was found.

    `address` is the bootstrap servers (Kafka) or the libpq URL (PostgreSQL). `launcher`
    is the local launcher when `source == "local"` (fault tests kill and restart it).
    """

    kind: Kind
    source: Source
    address: str
    launcher: KafkaLauncher | PostgresLauncher | None = field(default=None, compare=False)

    def describe(self) -> str:
        """One line for logs, with any password masked."""
        shown = self.address
        parts = urlsplit(shown)
        if parts.password is not None:
            shown = shown.replace(f":{parts.password}@", ":***@", 1)
        return f"{self.kind}: {shown} ({_SOURCE_WORDS[self.source]})"


_SOURCE_WORDS: dict[Source, str] = {
    "environment": "from the environment",
    "docker": "Docker container via testcontainers",
    "local": "local launcher, no Docker",
}


@contextlib.contextmanager
def kafka_service(workdir: Path) -> Iterator[str]:
    """Yield Kafka bootstrap servers for as long as the block runs (`workdir`: local data)."""
    with open_service("kafka", workdir) as service:
        yield service.address


@contextlib.contextmanager
def postgres_service(workdir: Path) -> Iterator[str]:
    """Yield a PostgreSQL URL (database `sluice`) while the block runs (`workdir`: local data)."""
    with open_service("postgres", workdir) as service:
        yield service.address


@contextlib.contextmanager
def open_service(kind: Kind, workdir: Path) -> Iterator[Service]:
    """Find or start the service of `kind`; stop it afterwards if we started it.

    `workdir` is the folder for this service's data and logs if a local launcher runs it
    (kept between runs, so `sluice dev` finds its data again).
    """
    with contextlib.ExitStack() as stack:
        service = _find(kind, Path(workdir), stack)
        _log.info("using %s", service.describe())
        yield service


def _find(kind: Kind, workdir: Path, stack: contextlib.ExitStack) -> Service:
    """Try the three ways in order; whatever must be stopped later goes onto `stack`."""
    variable = "KAFKA_BOOTSTRAP_SERVERS" if kind == "kafka" else "DATABASE_URL"
    configured = os.environ.get(variable, "").strip()
    if configured:
        return Service(kind, "environment", configured)
    if _docker_available():
        container = _docker_kafka() if kind == "kafka" else _docker_postgres()
        try:
            return Service(kind, "docker", stack.enter_context(container))
        except Exception as exc:  # e.g. the image cannot be pulled while offline
            _log.warning("%s did not start in Docker (%s); using the local launcher", kind, exc)
    if kind == "kafka":
        kafka = stack.enter_context(KafkaLauncher(workdir))
        return Service(kind, "local", kafka.bootstrap_servers, kafka)
    postgres = stack.enter_context(PostgresLauncher(workdir))
    return Service(kind, "local", postgres.url, postgres)


def _docker_available() -> bool:
    """Whether testcontainers is installed and a Docker engine answers a ping."""
    if os.environ.get("SLUICE_NO_DOCKER", "").strip() not in ("", "0"):
        return False
    try:
        docker = importlib.import_module("docker")  # untyped; comes with testcontainers
        importlib.import_module("testcontainers.core.container")
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no socket, permission denied, engine down: all mean "no Docker"
        return False


@contextlib.contextmanager
def _docker_kafka(timeout: float = 120.0) -> Iterator[str]:
    """A single-node KRaft broker in `apache/kafka`, advertised on its mapped host port.

    The advertised address is only known after the container has started (the host port
    is assigned then), so the container waits for a start script that we copy in once
    the port is known; the script exports the listeners and runs the image's launcher.
    """
    from testcontainers.core.container import DockerContainer

    script = "/sluice-start.sh"
    container = DockerContainer(KAFKA_IMAGE).with_exposed_ports(9092)
    container.with_command(f'sh -c "while [ ! -f {script} ]; do sleep 0.1; done; sh {script}"')
    for key, value in _KAFKA_CONTAINER_ENV.items():
        container.with_env(key, value)
    with container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(9092)
        address = f"{host}:{port}"
        _put_file(
            container,
            script,
            "export KAFKA_ADVERTISED_LISTENERS="
            f"PLAINTEXT://{address},BROKER://localhost:19092\n"
            "exec /etc/kafka/docker/run\n",
        )
        wait_for_kafka(address, timeout)
        yield address


_KAFKA_CONTAINER_ENV = {
    "KAFKA_NODE_ID": "1",
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_LISTENERS": "PLAINTEXT://:9092,BROKER://:19092,CONTROLLER://:9093",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
        "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
    ),
    "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
    "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
    "KAFKA_NUM_PARTITIONS": "4",
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "8",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS": "8",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_LOG_CLEANER_BACKOFF_MS": "500",
    "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
}


def _put_file(container: DockerContainer, path: str, text: str) -> None:
    """Copy a small text file into a running container (Docker takes a tar archive)."""
    import io
    import tarfile

    data = text.encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.size = len(data)
        info.mode = 0o755
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    container.get_wrapped_container().put_archive("/", archive.getvalue())


@contextlib.contextmanager
def _docker_postgres(timeout: float = 120.0) -> Iterator[str]:
    """The official `postgres` image with user, password and database `sluice`."""
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(POSTGRES_IMAGE).with_exposed_ports(5432)
    container.with_command("postgres -c max_connections=200")
    for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        container.with_env(key, "sluice")
    with container:
        host = container.get_container_host_ip()
        url = f"postgresql://sluice:sluice@{host}:{container.get_exposed_port(5432)}/sluice"
        _wait_for_postgres(url, timeout)
        yield url


def _wait_for_postgres(url: str, timeout: float) -> None:
    """Connect until it works: the image restarts the server once after initialising."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
