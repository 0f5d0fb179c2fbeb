"""A real Apache Kafka (KRaft) broker on 127.0.0.1, without Docker.

Sluice's tests and `sluice dev` need the real broker, not a mock: ordering, compaction,
transactions and consumer groups are exactly what Sluice relies on. When neither an
existing cluster nor Docker is available, this module resolves the broker's jars from
Maven Central (once, into a cache folder), formats KRaft storage and runs one JVM per
node, each a combined broker+controller, all listening on 127.0.0.1 only.

`KafkaLauncher` keeps a list of nodes so a three-node cluster (static controller quorum)
works the same way as the default single node; fault tests can kill and restart nodes.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka.admin import AdminClient

KAFKA_VERSION = "4.1.2"
POM_PATH = Path(__file__).parent / "kafka-pom.xml"
JVM_OPTIONS = ("-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true")

_log = logging.getLogger(__name__)


class KafkaLauncherError(RuntimeError):
    """The local broker could not be resolved, formatted or started."""


def default_cache_dir() -> Path:
    """Where downloaded runtimes live: `$SLUICE_CACHE_DIR`, else `~/.cache/sluice`."""
    configured = os.environ.get("SLUICE_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "sluice"


def resolve_kafka_jars(cache_dir: Path) -> Path:
    """Download the broker's runtime jars with Maven once; return the folder holding them.

    Idempotent: a marker file (carrying a hash of the pom) records a finished download,
    so later calls return at once. An exclusive file lock makes concurrent callers (for
    example parallel test processes) wait for the first one instead of racing it.
    """
    home = cache_dir / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    marker = home / ".resolved"
    pom_hash = hashlib.sha256(POM_PATH.read_bytes()).hexdigest()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == pom_hash:
            return libs
        for stale in libs.glob("*.jar"):
            stale.unlink()
        command = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM_PATH),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
        _log.info("resolving Apache Kafka %s jars into %s", KAFKA_VERSION, libs)
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except FileNotFoundError as exc:
            raise KafkaLauncherError("Maven (`mvn`) is needed to fetch the Kafka jars") from exc
        if done.returncode != 0:
            raise KafkaLauncherError(
                f"`{' '.join(command)}` failed:\n{_tail(done.stdout + done.stderr, 40)}"
            )
        marker.write_text(pom_hash + "\n")
    return libs


def wait_for_kafka(
    bootstrap_servers: str,
    timeout: float,
    *,
    brokers: int = 1,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Block until `brokers` brokers answer a metadata request.

    Raises TimeoutError after `timeout` seconds, or as soon as `alive()` turns false
    (the broker process died, so waiting longer is pointless).
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "socket.connection.setup.timeout.ms": 2000,
        "reconnect.backoff.max.ms": 500,
        # "Connection refused" is expected while the broker starts: keep it off stderr.
        "logger": logging.getLogger(f"{__name__}.client"),
    }
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if not alive():
            raise TimeoutError(f"Kafka at {bootstrap_servers} exited while starting")
        try:
            metadata = admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
        except Exception as exc:  # KafkaException while the broker is still starting
            last_error = str(exc)
        else:
            if len(metadata.brokers) >= brokers:
                return
            last_error = f"{len(metadata.brokers)} of {brokers} brokers registered"
        time.sleep(0.2)
    raise TimeoutError(f"Kafka at {bootstrap_servers} not ready after {timeout:.0f}s: {last_error}")


def new_cluster_id() -> str:
    """A random KRaft cluster id: a UUID as unpadded URL-safe base64, as Kafka makes them."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that look like command-line flags
            return text


@dataclass
class _Node:
    """One combined broker+controller JVM and the files that belong to it."""

    node_id: int
    home: Path
    broker_port: int
    controller_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.home / "server.properties"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def server_log(self) -> Path:
        return self.home / "logs" / "server.log"

    @property
    def stdout_log(self) -> Path:
        return self.home / "logs" / "stdout.log"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class KafkaLauncher:
    """Runs a local KRaft cluster of `nodes` combined broker+controller JVMs in `workdir`.

    Ports are picked once per launcher, so `restart()` (and `stop()` then `start()`)
    comes back on the same addresses and the same storage; a new launcher on an old
    workdir keeps the data but picks fresh ports.
    """

    def __init__(self, workdir: Path, *, cache_dir: Path | None = None, nodes: int = 1) -> None:
        if nodes < 1:
            raise ValueError("a Kafka cluster needs at least one node")
        self.workdir = Path(workdir).resolve()
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        ports = free_ports(2 * nodes)
        self.nodes = [
            _Node(i, self.workdir / f"node-{i}", ports[2 * i - 2], ports[2 * i - 1])
            for i in range(1, nodes + 1)
        ]
        self._libs: Path | None = None
        atexit.register(self._at_exit)

    @property
    def bootstrap_servers(self) -> str:
        """Comma-separated `127.0.0.1:PORT` broker addresses."""
        return ",".join(f"127.0.0.1:{node.broker_port}" for node in self.nodes)

    def start(self, timeout: float = 120.0) -> str:
        """Start every node that is not running; return the bootstrap servers once ready."""
        begun = time.monotonic()
        if self._libs is None:
            self._libs = resolve_kafka_jars(self.cache_dir)
        self._format_storage()
        for node in self.nodes:
            if not node.running():
                self._launch(node)
        try:
            # Ask every node itself: a restarted node's old registration can still be in
            # the cluster metadata, but its own port answers only once it serves again.
            for node in self.nodes:
                wait_for_kafka(
                    f"127.0.0.1:{node.broker_port}",
                    timeout - (time.monotonic() - begun),
                    brokers=len(self.nodes),
                    alive=lambda: all(n.running() for n in self.nodes),
                )
        except TimeoutError as exc:
            self.kill()
            raise KafkaLauncherError(f"{exc}\n{self._log_tails()}") from exc
        _log.info(
            "Kafka %s (%d node(s)) ready at %s in %.1fs",
            KAFKA_VERSION,
            len(self.nodes),
            self.bootstrap_servers,
            time.monotonic() - begun,
        )
        return self.bootstrap_servers

    def stop(self, timeout: float = 30.0) -> None:
        """Shut every node down cleanly (SIGTERM), then SIGKILL whatever outlives `timeout`."""
        for node in self.nodes:
            if node.running() and node.process is not None:
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log.warning("Kafka node %d ignored SIGTERM; killing it", node.node_id)
                node.process.kill()
                node.process.wait()
            node.process = None

    def kill(self, node: int | None = None) -> None:
        """SIGKILL every node, or only node number `node` (1-based), as a crash would."""
        for each in self.nodes:
            if node is not None and each.node_id != node:
                continue
            if each.process is not None:
                if each.running():
                    each.process.kill()
                each.process.wait()
                each.process = None

    def restart(self, timeout: float = 120.0) -> str:
        """Stop (cleanly, if still running) and start again on the same ports and storage."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> KafkaLauncher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _format_storage(self) -> None:
        """Write each node's configuration; format storage that is not formatted yet."""
        cluster_id_file = self.workdir / "cluster-id"
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not cluster_id_file.exists():
            cluster_id_file.write_text(new_cluster_id() + "\n")
        cluster_id = cluster_id_file.read_text().strip()
        for node in self.nodes:
            (node.home / "logs").mkdir(parents=True, exist_ok=True)
            node.config.write_text(self._server_properties(node))
            (node.home / "log4j2.xml").write_text(_LOG4J2_XML.format(log=node.server_log))
            if (node.data / "meta.properties").exists():
                continue
            command = [*self._java(), "kafka.tools.StorageTool", "format"]
            command += ["--cluster-id", cluster_id, "--config", str(node.config)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise KafkaLauncherError(
                    f"formatting Kafka storage failed:\n{_tail(done.stdout + done.stderr, 40)}"
                )

    def _server_properties(self, node: _Node) -> str:
        count = len(self.nodes)
        replicas = min(count, 3)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        settings = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{node.broker_port},"
                f"CONTROLLER://127.0.0.1:{node.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.broker_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": node.data,
            "num.partitions": 4,
            "default.replication.factor": replicas,
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": 8,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": 1 if count == 1 else 2,
            "transaction.state.log.num.partitions": 8,
            "group.initial.rebalance.delay.ms": 0,
            # After a crash the controller only accepts the node back once the old
            # incarnation's session expires: keep that wait short for fault tests.
            "broker.session.timeout.ms": 5000,
            "broker.heartbeat.interval.ms": 1000,
            # Compaction and deletion have to be visible within a test's lifetime.
            "log.cleaner.backoff.ms": 500,
            "log.retention.check.interval.ms": 5000,
            # A small machine: fewer threads than the defaults sized for servers.
            "num.network.threads": 2,
            "num.io.threads": 4,
            "num.recovery.threads.per.data.dir": 1,
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _java(self) -> list[str]:
        assert self._libs is not None
        return ["java", *JVM_OPTIONS, "-cp", f"{self._libs}/*"]

    def _launch(self, node: _Node) -> None:
        command = self._java()
        command.insert(1, f"-Dlog4j2.configurationFile={node.home / 'log4j2.xml'}")
        command += ["kafka.Kafka", str(node.config)]
        with open(node.stdout_log, "ab") as out:
            # A session of its own: Ctrl-C in `sluice dev` must not reach the broker before
            # the Sluice processes have drained; `stop()` shuts it down in order.
            node.process = subprocess.Popen(
                command,
                cwd=node.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_files(self) -> list[Path]:
        """Every node's broker log and JVM output (worth attaching to a failed test)."""
        return [path for node in self.nodes for path in (node.server_log, node.stdout_log)]

    def _log_tails(self) -> str:
        parts = []
        for path in self.log_files():
            with contextlib.suppress(OSError):
                parts.append(f"--- {path} (tail) ---\n{_tail(path.read_text(), 30)}")
        return "\n".join(parts)

    def _at_exit(self) -> None:
        if any(node.running() for node in self.nodes):
            self.stop(timeout=10.0)


def free_ports(count: int) -> list[int]:
    """`count` different TCP ports on 127.0.0.1 that nothing listens on right now. All are
    held bound until each is known: one at a time, the kernel may hand the same port out
    twice, and a node's listener and controller then shared one (Kafka refused to format)."""
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        for _ in range(count):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


_LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by Sluice's Kafka launcher: broker logs go to a file, not the terminal. -->
<Configuration status="warn" shutdownHook="disable">
  <Appenders>
    <RollingFile name="file" fileName="{log}" filePattern="{log}.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="20MB"/>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
  </Loggers>
</Configuration>
"""
