"""A cap on open connections, per API process and per client address (invariant 6).

aiohttp accepts every connection the kernel hands it, and a connection that sends half a
request line holds a socket, a file descriptor and a request handler until the header
timeout: 3,000 of them from one client were once all accepted. `ConnectionGate` is the
protocol factory the API's listening socket uses instead of aiohttp's own server: a
connection past either cap is answered `503` with `Retry-After` and closed before aiohttp
sees a byte of it; the others are handed to aiohttp's request handler unchanged.

Behind a proxy every connection comes from the proxy's address: raise
`SLUICE_MAX_CONNECTIONS_PER_ADDRESS` there (the proxy should cap its clients itself).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

_REFUSAL = b'{"error": {"code": "too_many_connections", "message": "too many open connections"}}'
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_REFUSAL), _REFUSAL)
)
"""What a connection over a cap reads before it is closed: the native error shape."""


class ConnectionGate:
    """Builds a protocol per accepted connection: aiohttp's handler, or a refusal."""

    def __init__(
        self, handler_factory: Callable[[], asyncio.Protocol], total: int, per_address: int
    ) -> None:
        self._factory = handler_factory
        self.total = total
        self.per_address = per_address
        self.open = 0
        self.by_address: Counter[str] = Counter()
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        return _Gated(self)

    def admit(self, address: str) -> asyncio.Protocol | None:
        """The handler for a new connection from `address`; None when over a cap."""
        if self.open >= self.total or self.by_address[address] >= self.per_address:
            self.refused += 1
            return None
        self.open += 1
        self.by_address[address] += 1
        return self._factory()

    def release(self, address: str) -> None:
        self.open -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


class _Gated(asyncio.Protocol):
    """One connection: refused at once, or every call passed to aiohttp's handler."""

    def __init__(self, gate: ConnectionGate) -> None:
        self._gate = gate
        self._inner: asyncio.Protocol | None = None
        self._address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer: Any = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self._inner = self._gate.admit(self._address)
        if self._inner is None:
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(REFUSED)
            transport.close()
            return
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._gate.release(self._address)
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()
