"""A bounded HTTP load generator for fault tests: N requests of batches with known ids.

Each request carries `batch` events with ids `<run>-<request>-<index>`; every
`invalid_every`-th event lacks `data`, so the door rejects it and dead-letters it
(poison mixed into valid traffic). The generator records which ids were acknowledged
with a 2xx, the dead-letter ids the door gave for rejected events, and every status
seen (0 for a connection error), so a test can check each acknowledged id against
PostgreSQL afterwards. With `retry`, a request that was not acknowledged is sent
again with the same ids (as a well-behaved client does after a 503), until it is or
the deadline passes. Bounded in count and time; it always stops by itself.
"""

from __future__ import annotations

import http.client
import queue
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.httpclient import Answer, call


@dataclass
class LoadResult:
    """What the clients saw."""

    acked: set[str] = field(default_factory=set)
    """Valid event ids answered with a 2xx (Kafka acknowledged them)."""
    sent_valid: set[str] = field(default_factory=set)
    """Valid event ids sent at least once (acknowledged or not)."""
    dead_letter_ids: set[str] = field(default_factory=set)
    """Dead-letter ids the door answered for rejected events of acknowledged requests."""
    statuses: Counter[int] = field(default_factory=Counter)
    unavailable_without_retry_after: int = 0
    requests_unacknowledged: int = 0
    events: list[tuple[float, float, int]] = field(default_factory=list)
    """(monotonic start, end, status) of every attempt, for timing figures."""

    def first_ack_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first 2xx answered after it, or None."""
        later = [end for _, end, s in self.events if end >= moment and 200 <= s < 300]
        return min(later) - moment if later else None

    def started_between(self, start: float, end: float) -> Counter[int]:
        """Statuses of the attempts sent between `start` and `end`."""
        return Counter(s for began, _, s in self.events if start <= began <= end)

    def summary(self) -> str:
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return f"{len(self.acked)} acknowledged of {len(self.sent_valid)} sent; statuses {shown}"


class LoadGenerator:
    """Sends `requests` POSTs of `batch` events with `concurrency` threads."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        requests: int,
        batch: int = 20,
        concurrency: int = 4,
        invalid_every: int = 0,
        retry: bool = True,
        deadline_seconds: float = 120.0,
        pause_seconds: float = 0.0,
        timeout_seconds: float = 30.0,
        run_id: str | None = None,
    ) -> None:
        self.url = f"{base_url}/v1/events"
        self.key = key
        self.requests = requests
        self.batch = batch
        self.concurrency = concurrency
        self.invalid_every = invalid_every
        self.retry = retry
        self.deadline_seconds = deadline_seconds
        self.pause_seconds = pause_seconds
        self.timeout_seconds = timeout_seconds
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.result = LoadResult()
        self.done_requests = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def body(self, request: int) -> tuple[list[dict[str, Any]], list[str]]:
        """The events of request `request` and the ids of its valid ones."""
        events: list[dict[str, Any]] = []
        valid: list[str] = []
        for index in range(self.batch):
            event_id = f"{self.run_id}-{request}-{index}"
            event: dict[str, Any] = {
                "id": event_id, "type": "fault.load", "source": "/faults",
                "time": "2024-11-23T10:00:00Z", "data": {"request": request, "index": index},
            }  # fmt: skip
            if self.invalid_every and (request * self.batch + index) % self.invalid_every == 0:
                del event["data"]
            else:
                valid.append(event_id)
            events.append(event)
        return events, valid

    def start(self) -> LoadGenerator:
        work: queue.SimpleQueue[int] = queue.SimpleQueue()
        for request in range(self.requests):
            work.put(request)
        deadline = time.monotonic() + self.deadline_seconds
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._client, args=(work, deadline), name=f"load-{n}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)
        return self

    def join(self) -> LoadResult:
        for thread in self._threads:
            thread.join()
        return self.result

    def run(self) -> LoadResult:
        return self.start().join()

    def stop(self) -> None:
        """Send no new requests; those begun are still retried until acknowledged."""
        self._stop.set()

    def _client(self, work: queue.SimpleQueue[int], deadline: float) -> None:
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                request = work.get_nowait()
            except queue.Empty:
                return
            self._send(request, deadline)
            with self._lock:
                self.done_requests += 1
            if self.pause_seconds:
                time.sleep(self.pause_seconds)

    def _send(self, request: int, deadline: float) -> None:
        events, valid = self.body(request)
        with self._lock:
            self.result.sent_valid.update(valid)
        while True:
            answer = self._post(events)
            if 200 <= answer.status < 300 or (answer.status == 400 and not valid):
                self._record_ack(answer)
                return
            if not self.retry or time.monotonic() >= deadline:
                with self._lock:
                    self.result.requests_unacknowledged += 1
                return
            time.sleep(0.5 if answer.status in (0, 503) else 1.0)

    def _post(self, events: list[dict[str, Any]]) -> Answer:
        began = time.monotonic()
        try:
            answer = call("POST", self.url, json_body=events, headers={"X-API-Key": self.key},
                          timeout=self.timeout_seconds)  # fmt: skip
        except (OSError, http.client.HTTPException):  # the API is down or was killed
            answer = Answer(0, {}, b"")
        with self._lock:
            self.result.statuses[answer.status] += 1
            self.result.events.append((began, time.monotonic(), answer.status))
            if answer.status == 503 and "Retry-After" not in answer.headers:
                self.result.unavailable_without_retry_after += 1
        return answer

    def _record_ack(self, answer: Answer) -> None:
        body = answer.json()
        with self._lock:
            self.result.acked.update(body.get("ids", []))
            for rejected in body.get("rejected", []):
                if rejected.get("dead_letter_id"):
                    self.result.dead_letter_ids.add(rejected["dead_letter_id"])
