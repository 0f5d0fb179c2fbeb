"""Issue 15's availability attacks, replayed against a local API with figures:
`python -m bench.attacks` (or `make attacks`).

It finds or starts Kafka and PostgreSQL like `make dev`, starts one API process with the
default limits, and runs each attack for a few seconds from 127.0.0.1 while a victim, a
tenant of its own on 127.0.0.2, sends one event every 50 ms. For each attack it reports
what the attacker got, the victim's answers and latency (its worst latency is how long
the process was blocked, if at all) and the API's peak RSS over its RSS before. Every
attack is bounded in count and time and stops by itself; traffic stays on loopback.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import logging
import socket
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.run import free_port
from ingest.keys import generate_key
from runtime.settings import Settings, load_settings
from runtime.topic_admin import ensure_topics
from sinks.migrate import migrate
from sluice.keys_cli import create_key
from sluice.launchers.services import kafka_service, postgres_service
from sluice.stack import ProcessStack

log = logging.getLogger("bench.attacks")

EVENT = {"type": "probe", "source": "/victim", "time": "2024-01-01T00:00:00Z", "data": {}}
Attack = Callable[[Settings, str], Counter[str]]
"""(settings, the attacker's key) → what the attacker's requests got, by answer."""


def _send(host: str, port: int, method: str, path: str, body: bytes, headers: dict[str, str],
          source: str = "127.0.0.1", timeout: float = 30.0) -> tuple[int, float]:  # fmt: skip
    """(status, seconds) of one request on a connection of its own from `source`."""
    status, seconds, _answer = _exchange(host, port, method, path, body, headers, source, timeout)
    return status, seconds


def _exchange(host: str, port: int, method: str, path: str, body: bytes,
              headers: dict[str, str], source: str = "127.0.0.1",
              timeout: float = 30.0) -> tuple[int, float, bytes]:  # fmt: skip
    """(status, seconds, the answer's first 200 bytes) of one request."""
    began = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout, source_address=(source, 0))
    answer = b""
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        status, answer = response.status, response.read()[:200]
    except OSError as exc:
        status = 599 if not isinstance(exc, TimeoutError) else 598
    finally:
        conn.close()
    return status, time.monotonic() - began, answer


@contextlib.contextmanager
def _every(seconds: float, step: Callable[[], None]) -> Iterator[None]:
    """Call `step` every `seconds`, on a thread of its own, while the block runs."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(seconds):
            step()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(30)


@contextlib.contextmanager
def _victim(settings: Settings, key: str) -> Iterator[list[tuple[int, float]]]:
    """Another tenant, on another address, posting one event every 50 ms meanwhile."""
    seen: list[tuple[int, float]] = []
    body = json.dumps([EVENT]).encode()
    headers = {"X-API-Key": key, "Content-Type": "application/json"}

    def probe() -> None:
        seen.append(_send(settings.http_host, settings.http_port, "POST", "/v1/events",
                          body, headers, source="127.0.0.2", timeout=20))  # fmt: skip

    with _every(0.05, probe):
        yield seen


@contextlib.contextmanager
def _peak_rss(pid: int) -> Iterator[dict[str, int]]:
    """The process's RSS before the block, and the highest seen while it ran (50 ms)."""
    process = psutil.Process(pid)
    before = process.memory_info().rss
    figures = {"before": before, "peak": before}

    def sample() -> None:
        figures["peak"] = max(figures["peak"], process.memory_info().rss)

    with _every(0.05, sample):
        yield figures


def slow_bodies(settings: Settings, key: str) -> Counter[str]:
    """43 requests declaring 6 MB bodies, sending 1 KB a second (once held every byte of
    the body budget for 60 s): now they hold what they sent, and are cut at the minimum
    rate after the grace period."""
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 6000000\r\n\r\n["
    ).encode()

    def one(_: int) -> str:
        with socket.create_connection((settings.http_host, settings.http_port), 30) as sock:
            sock.sendall(head)
            sock.settimeout(1.0)
            for _second in range(12):
                try:
                    answer = sock.recv(64)
                except TimeoutError:
                    try:
                        sock.sendall(b" " * 1024)
                    except OSError:
                        return "closed"
                    continue
                return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
        return "still open after 12 s"

    with ThreadPoolExecutor(43) as pool:
        return Counter(pool.map(one, range(43)))


def half_headers(settings: Settings, key: str) -> Counter[str]:
    """3,000 connections that send half a request line and wait (all were accepted)."""
    socks: list[socket.socket] = []
    got: Counter[str] = Counter()
    try:
        for _ in range(3000):
            sock = socket.create_connection((settings.http_host, settings.http_port), 5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
            socks.append(sock)
        time.sleep(3)
        for sock in socks:
            sock.settimeout(0.01)
            try:
                line = sock.recv(64).split(b"\r\n", 1)[0]
                got[line.decode(errors="replace") or "closed"] += 1
            except TimeoutError:
                got["held open"] += 1
            except OSError:
                got["reset"] += 1
    finally:
        for sock in socks:
            sock.close()
    return got


def huge_array(settings: Settings, key: str) -> Counter[str]:
    """A 6 MB array of three million items, three times (once +214 MiB before refusal)."""
    body = b"[" + b"0," * 2_999_999 + b"0]"
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    url = (settings.http_host, settings.http_port)
    return Counter(str(_send(*url, "POST", "/v1/events", body, headers)[0]) for _ in range(3))


def forged_keys(settings: Settings, key: str) -> Counter[str]:
    """10,000 well-formed keys that do not exist (each once cost a database lookup)."""

    def one(_: int) -> str:
        headers = {"X-API-Key": generate_key().secret}
        return str(_send(settings.http_host, settings.http_port, "GET", "/v1/events", b"",
                         headers)[0])  # fmt: skip

    with ThreadPoolExecutor(32) as pool:
        return Counter(pool.map(one, range(10_000)))


def blank_csv(settings: Settings, key: str) -> Counter[str]:
    """65 KB of gzip holding 64 MB of blank lines as a DataHub CSV upload (16.5 s of CPU)."""
    data = gzip.compress(b"usage_date,fixed.zone,metric.cost\n" + b"\n" * (64 << 20), 9)
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="provider"\r\n\r\np\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.csv.gz"'
            "\r\nContent-Type: application/gzip\r\n\r\n").encode() + data + (
        f"\r\n--{boundary}--\r\n".encode())  # fmt: skip
    headers = {"X-API-Key": key, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, seconds, answer = _exchange(settings.http_host, settings.http_port, "POST",
                                        "/datahub/v1/csv/upload", body, headers)  # fmt: skip
    said = answer.decode(errors="replace")[:90]
    return Counter({f"{status} in {seconds:.1f} s ({len(data) // 1024} KB sent): {said}": 1})


ATTACKS: dict[str, Attack] = {
    "slow bodies": slow_bodies,
    "half-sent headers": half_headers,
    "three-million-item array": huge_array,
    "forged keys": forged_keys,
    "blank-line CSV": blank_csv,
}


def run_attacks(settings: Settings, logs: Path) -> list[dict[str, Any]]:
    """Every attack against one API process of `settings`, with the figures."""
    attacker = create_key(settings, "attacker", ["events:write", "events:read"])
    victim = create_key(settings, "victim", ["events:write"])
    stack = ProcessStack(settings, logs)
    stack.start(("api",))
    results = []
    try:
        stack.wait_ready(timeout=90)
        for name, attack in ATTACKS.items():
            log.info("attack: %s", name)
            began = time.monotonic()
            with _peak_rss(stack.procs["api"].pid) as rss, _victim(settings, victim) as seen:
                got = attack(settings, attacker)
            results.append(_figures(name, got, seen, rss, time.monotonic() - began))
    finally:
        stack.stop()
    return results


def _figures(name: str, got: Counter[str], seen: list[tuple[int, float]],
             rss: dict[str, int], seconds: float) -> dict[str, Any]:  # fmt: skip
    latencies = sorted(s for _, s in seen) or [0.0]
    return {
        "attack": name,
        "seconds": round(seconds, 1),
        "attacker got": dict(got.most_common(4)),
        "victim answers": dict(Counter(str(status) for status, _ in seen)),
        "victim p50 ms": round(statistics.median(latencies) * 1000, 1),
        "victim p99 ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 1),
        "victim max ms": round(latencies[-1] * 1000, 1),
        "api RSS MB before / peak": f"{rss['before'] / 2**20:.0f} / {rss['peak'] / 2**20:.0f}",
    }


def markdown(results: list[dict[str, Any]]) -> str:
    columns = list(results[0]) if results else []
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in results:
        cells = (json.dumps(v) if isinstance(v, dict) else str(v) for v in row.values())
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    state = Path(".sluice") / "attacks"
    with kafka_service(state / "kafka") as kafka, postgres_service(state / "postgres") as db:
        settings = replace(
            load_settings(), kafka_bootstrap_servers=kafka, database_url=db,
            topic_prefix=f"attacks-{uuid.uuid4().hex[:6]}.", http_port=free_port(),
        )  # fmt: skip
        migrate(settings.database_url)
        ensure_topics(settings)
        results = run_attacks(settings, state / "logs")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"attacks-{stamp}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (out / f"attacks-{stamp}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
