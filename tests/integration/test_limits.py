"""Invariant 6, bounded under bursts: per-key rate limits, gzip bombs, slow clients.

One API process of its own with tiny budgets (3 requests and 30 events per key per
60 s window, 1 MiB of request bodies held at once, half of it by one key), a 4 s
request/header timeout and a 1 s grace before the minimum body rate.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.topic_admin import ensure_topics
from sluice.stack import ProcessStack
from tests.conftest import eventually, make_settings
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

TIMEOUT_S = 4.0
BODY_BUDGET = 1024 * 1024
CONNECTIONS = 24


@pytest.fixture(scope="module")
def api(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProcessStack]:
    settings = make_settings(
        kafka_bootstrap, database_url,
        rate_requests_per_second=0.05, rate_events_per_second=0.5, rate_burst_seconds=60,
        http_request_timeout_seconds=TIMEOUT_S, max_receiving_bytes=BODY_BUDGET,
        max_receiving_bytes_per_key=BODY_BUDGET // 2, body_grace_seconds=1.0,
        max_connections_per_address=CONNECTIONS,
    )  # fmt: skip
    ensure_topics(settings)
    stack = ProcessStack(settings, tmp_path_factory.mktemp("limits-logs"))
    stack.start(("api",))
    try:
        stack.wait_ready(timeout=60)
        yield stack
    finally:
        stack.stop()


def events(n: int) -> list[dict[str, object]]:
    return [{"type": "t", "source": "s", "time": "2024-01-01T00:00:00Z", "data": {"i": i}}
            for i in range(n)]  # fmt: skip


def get(api: ProcessStack, key: str) -> Answer:
    return call("GET", f"{api.base_url}/v1/events", headers={"X-API-Key": key})


def test_a_key_over_its_request_budget_gets_429_while_another_key_does_not(
    api: ProcessStack, new_key: Callable[..., str]
) -> None:
    busy, calm = new_key("limits-busy"), new_key("limits-calm")
    assert [get(api, busy).status for _ in range(3)] == [200, 200, 200]
    refused = get(api, busy)
    assert refused.status == 429, refused.body
    assert 1 <= int(refused.headers["Retry-After"]) <= 120
    assert refused.json()["error"]["code"] == "rate_limited"
    assert get(api, calm).status == 200


def test_family_routes_answer_429_in_their_own_format(
    api: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("limits-family")
    url = f"{api.base_url}/dynatrace/platform/ingest/v1/events"
    answers = [call("POST", url, json_body={"event.type": "x"},
                    headers={"Authorization": f"Api-Token {key}"}) for _ in range(4)]  # fmt: skip
    assert answers[-1].status == 429 and "Retry-After" in answers[-1].headers
    assert answers[-1].json()["error"]["code"] == 429  # Dynatrace's envelope, not the native one


def test_posthog_and_otlp_answer_429_in_their_own_formats(
    api: ProcessStack, new_key: Callable[..., str]
) -> None:
    """The key in PostHog's body is counted like any header key; OTLP's 429 is a Status."""
    key = new_key("limits-posthog")
    url = f"{api.base_url}/posthog/batch/"
    body = {"api_key": key, "batch": [{"event": "e", "distinct_id": "d"}]}
    answers = [call("POST", url, json_body=body) for _ in range(4)]
    assert answers[-1].status == 429 and "Retry-After" in answers[-1].headers
    assert answers[-1].json()["code"] == "rate_limited"  # PostHog's shape
    other = new_key("limits-otlp")
    headers = {"Authorization": f"Bearer {other}", "Content-Type": "application/json"}
    logs = [call("POST", f"{api.base_url}/otlp/v1/logs", body=b"{}", headers=headers)
            for _ in range(4)]  # fmt: skip
    assert logs[-1].status == 429 and "Retry-After" in logs[-1].headers
    assert logs[-1].json()["code"] == 8  # google.rpc.Code RESOURCE_EXHAUSTED


def test_segment_and_rudderstack_answer_429_in_their_own_formats(
    api: ProcessStack, new_key: Callable[..., str]
) -> None:
    """A Basic write key is counted like any header key; a body's `writeKey` too."""
    key = new_key("limits-segment")
    body = {"writeKey": key, "userId": "u", "event": "e"}
    answers = [call("POST", f"{api.base_url}/segment/v1/track", json_body=body)
               for _ in range(4)]  # fmt: skip
    assert answers[-1].status == 429 and "Retry-After" in answers[-1].headers
    assert answers[-1].json() == {"success": False, "code": "rate_limited",
                                  "message": answers[-1].json()["message"]}  # fmt: skip
    other = new_key("limits-rudder")
    basic = "Basic " + base64.b64encode(f"{other}:".encode()).decode()
    headers = {"Authorization": basic, "Content-Type": "application/json"}
    batch = b'{"batch": [{"type": "identify", "userId": "u"}]}'
    sent = [call("POST", f"{api.base_url}/rudderstack/v1/batch", body=batch, headers=headers)
            for _ in range(4)]  # fmt: skip
    assert sent[-1].status == 429 and "Retry-After" in sent[-1].headers
    assert sent[-1].headers["Content-Type"].startswith("text/plain")


def test_a_key_over_its_event_budget_gets_429(
    api: ProcessStack, new_key: Callable[..., str]
) -> None:
    key, other = new_key("limits-events"), new_key("limits-events")
    url = f"{api.base_url}/v1/events"
    first = call("POST", url, json_body=events(20), headers={"X-API-Key": key})
    assert first.status == 202 and first.json()["accepted"] == 20
    second = call("POST", url, json_body=events(20), headers={"X-API-Key": key})
    assert second.status == 429 and "events" in second.json()["error"]["message"]
    assert call("POST", url, json_body=events(20), headers={"X-API-Key": other}).status == 202


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def test_a_gzip_bomb_body_is_refused_without_inflating(
    api: ProcessStack, new_key: Callable[..., str]
) -> None:
    """1 GiB of zeros in ~1 MB of gzip: 413 once the decompressed size passes the limit.

    Measured: the API's peak RSS grows by 15-51 MiB (aiohttp inflates what one socket read
    delivers before the size check sees it): bounded, but above the 6 MiB body limit.
    """
    key = new_key("limits-bomb")
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"0" * (1024 * 1024)
    bomb = b"".join(squeeze.compress(block) for _ in range(1024)) + squeeze.flush()
    pid = api.procs["api"].pid
    gzip_headers = {"X-API-Key": key, "Content-Encoding": "gzip",
                    "Content-Type": "application/json"}  # fmt: skip
    small = gzip.compress(json.dumps(events(1)).encode())
    warm_up = call("POST", f"{api.base_url}/v1/events", body=small, headers=gzip_headers)
    assert warm_up.status == 202, warm_up.body
    before = peak_rss_kib(pid)
    answer = call("POST", f"{api.base_url}/v1/events", body=bomb, headers=gzip_headers)
    assert answer.status == 413, answer.body
    assert peak_rss_kib(pid) - before < 160 * 1024, "the API's peak memory grew by 160 MiB+"
    assert call("GET", f"{api.base_url}/healthz").status == 200


def test_slow_headers_are_cut_off(api: ProcessStack) -> None:
    """A client that never finishes its headers loses the connection after the timeout."""
    with socket.create_connection((api.settings.http_host, api.settings.http_port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sock.settimeout(TIMEOUT_S * 5)
        try:
            closed = sock.recv(1024) == b""
        except ConnectionResetError:
            closed = True
        assert closed


def test_a_slow_body_is_answered_408(api: ProcessStack, new_key: Callable[..., str]) -> None:
    key = new_key("limits-slow")
    body = json.dumps(events(1)).encode()
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body) + 100}\r\n\r\n"
    )
    with socket.create_connection((api.settings.http_host, api.settings.http_port)) as sock:
        sock.sendall(head.encode() + body)  # 100 bytes short, never sent
        sock.settimeout(TIMEOUT_S * 5)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert key.encode() not in answer


def post_until(api: ProcessStack, new_key: Callable[..., str], body: bytes, status: int,
               timeout: float = 60.0) -> Answer:  # fmt: skip
    """POST `body` with a fresh key of its own each time until the answer has `status`."""

    def attempt() -> Answer | None:
        headers = {"X-API-Key": new_key("limits-held"), "Content-Type": "application/json"}
        answer = call("POST", f"{api.base_url}/v1/events", body=body, headers=headers)
        return answer if answer.status == status else None

    return eventually(attempt, timeout=timeout)


def _receiving(api: ProcessStack) -> int:
    """The API's `sluice_door_receiving_bytes`: what its body budget holds now."""
    text = call("GET", f"{api.base_url}/metrics").body.decode()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("sluice_door_receiving_bytes ")]
    return int(float(line.split()[1]))


def _stalled(api: ProcessStack, key: str, declared: int, sent: int) -> socket.socket:
    """A connection that declared a `declared`-byte body, sent `sent` bytes of it, and
    stalls (well ahead of the minimum body rate, so only the request timeout ends it);
    returned once the API holds what was sent."""
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
    before = _receiving(api)
    sock = socket.create_connection((api.settings.http_host, api.settings.http_port))
    sock.sendall(head.encode() + b"[" + b" " * (sent - 1))
    eventually(lambda: _receiving(api) >= before + sent or None, timeout=TIMEOUT_S / 2)
    return sock


def test_bodies_held_at_once_are_bounded_per_process(
    api: ProcessStack, new_key: Callable[..., str]
) -> None:
    """A stalled upload that sent 900 KB holds them; a 200 KB request meanwhile gets 503
    (in its family's format); once the first is gone, it passes."""
    padded = json.dumps([{**events(1)[0], "data": {"pad": "x" * 200_000}}]).encode()
    dynatrace = f"{api.base_url}/dynatrace/platform/ingest/v1/events"
    with _stalled(api, new_key("limits-held"), 950_000, 900_000):
        refused = post_until(api, new_key, padded, 503, timeout=TIMEOUT_S * 2)
        assert refused.json()["error"]["code"] == "overloaded"
        assert int(refused.headers["Retry-After"]) > 0
        headers = {"Authorization": f"Api-Token {new_key('limits-held')}",
                   "Content-Type": "application/json"}  # fmt: skip
        family = call("POST", dynatrace, body=padded, headers=headers)
        assert family.status == 503 and family.json()["error"]["code"] == 503
    assert post_until(api, new_key, padded, 202).json()["accepted"] == 1


def test_a_body_declared_large_but_not_sent_holds_nothing(
    api: ProcessStack, new_key: Callable[..., str]
) -> None:
    """The budget counts bytes as they arrive, not the `Content-Length` a client declares:
    two stalled requests declaring 900 KB each (of a 1 MiB budget) leave room for others."""
    padded = json.dumps([{**events(1)[0], "data": {"pad": "x" * 200_000}}]).encode()
    with (
        _stalled(api, new_key("limits-declared"), 900_000, 10),
        _stalled(api, new_key("limits-declared"), 900_000, 10),
    ):
        answer = call("POST", f"{api.base_url}/v1/events", body=padded,
                      headers={"X-API-Key": new_key("limits-declared-other"),
                               "Content-Type": "application/json"})  # fmt: skip
        assert answer.status == 202, answer.body


def test_one_keys_slow_bodies_hold_only_its_share(
    api: ProcessStack, new_key: Callable[..., str]
) -> None:
    """A key's stalled upload holds 400 KB; its next 200 KB request passes its half of the
    budget and gets 503, while another key's 200 KB request, within the process's, passes."""
    slow_key = new_key("limits-share")
    padded = json.dumps([{**events(1)[0], "data": {"pad": "x" * 200_000}}]).encode()
    with _stalled(api, slow_key, 450_000, 400_000):

        def refused_for_the_key() -> Answer | None:
            answer = call(
                "POST",
                f"{api.base_url}/v1/events",
                body=padded,
                headers={"X-API-Key": slow_key, "Content-Type": "application/json"},
            )
            return answer if answer.status == 503 else None  # fmt: skip

        refused = eventually(refused_for_the_key, timeout=TIMEOUT_S * 2)
        assert "this key already holds" in refused.json()["error"]["message"]
        other = call("POST", f"{api.base_url}/v1/events", body=padded,
                     headers={"X-API-Key": new_key("limits-share-other"),
                              "Content-Type": "application/json"})  # fmt: skip
        assert other.status == 202, other.body


def test_a_body_slower_than_the_minimum_rate_is_cut_before_the_timeout(
    api: ProcessStack, new_key: Callable[..., str]
) -> None:
    """After the grace period (1 s here), a body trickling in at 100 bytes per 0.3 s is
    answered 408 the moment it falls behind, well before the 4 s request timeout."""
    key = new_key("limits-trickle")
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n["
    )
    with socket.create_connection((api.settings.http_host, api.settings.http_port)) as sock:
        sock.sendall(head.encode())
        began = time.monotonic()
        sock.settimeout(0.3)
        answer = b""
        while not answer and time.monotonic() - began < TIMEOUT_S * 2:
            try:
                sock.sendall(b" " * 100)
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"slower than" in answer  # the rate, not the request timeout (which says "within")


def test_connections_past_the_per_address_cap_are_refused_before_aiohttp_reads_them(
    api: ProcessStack,
) -> None:
    """24 half-sent request lines from one address hold every slot that address has: the
    25th connection reads a 503 with Retry-After and is closed; once they go, it passes."""
    address = (api.settings.http_host, api.settings.http_port)
    held = [socket.create_connection(address) for _ in range(CONNECTIONS)]
    try:
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        with socket.create_connection(address) as extra:
            extra.settimeout(TIMEOUT_S)
            answer = extra.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"Retry-After: 5" in answer and b"too_many_connections" in answer
    finally:
        for sock in held:
            sock.close()
    assert eventually(lambda: call("GET", f"{api.base_url}/healthz").status == 200 or None,
                      timeout=TIMEOUT_S)  # fmt: skip


def test_a_csv_upload_spends_the_event_budget_like_any_request(
    api: ProcessStack, new_key: Callable[..., str]
) -> None:
    """40 rows from an idle key (a window holds 30 events): admitted whole, never cut off
    half-ingested; the key's next upload is 429 before a row is sent (it once skipped the
    event budget entirely)."""
    from tests.integration.test_datahub import _multipart

    key = new_key("limits-csv")
    rows = "".join(f"2024-01-0{1 + i % 9}T00:00:00Z,row-{i},z,{i}\n" for i in range(40))
    csv = ("usage_date,id,fixed.zone,metric.cost\n" + rows).encode()
    body, content_type = _multipart("aws", "u.csv", csv)
    headers = {"X-API-Key": key, "Content-Type": content_type}
    url = f"{api.base_url}/datahub/v1/csv/upload"
    first = call("POST", url, body=body, headers=headers)
    assert first.status == 201 and first.json()["ingestedRows"] == 40, first.body
    second = call("POST", url, body=body, headers=headers)
    assert second.status == 429 and int(second.headers["Retry-After"]) > 0, second.body
