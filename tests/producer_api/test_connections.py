"""The connection gate's counting: caps per process and per address, released on close."""

from __future__ import annotations

import asyncio

from producer_api.connections import REFUSED, ConnectionGate


class _Transport(asyncio.Transport):
    def __init__(self, address: str) -> None:
        super().__init__()
        self.address, self.written, self.closed = address, b"", False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return (self.address, 40000) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True


class _Handler(asyncio.Protocol):
    def __init__(self) -> None:
        self.events: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.events.append(data.decode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")


def test_connections_past_either_cap_are_answered_503_and_closed() -> None:
    handlers: list[_Handler] = []

    def factory() -> asyncio.Protocol:
        handlers.append(_Handler())
        return handlers[-1]

    gate = ConnectionGate(factory, total=3, per_address=2)
    protocols = [gate() for _ in range(5)]
    transports = [
        _Transport(a) for a in ("10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3")
    ]
    for protocol, transport in zip(protocols, transports, strict=True):
        protocol.connection_made(transport)
    # the third from 10.0.0.1 passes its address's cap; the one from .3 the process's
    assert [t.closed for t in transports] == [False, False, True, False, True]
    assert transports[2].written == REFUSED and transports[4].written == REFUSED
    assert gate.open == 3 and gate.refused == 2 and len(handlers) == 3
    protocols[0].data_received(b"GET / HTTP/1.1\r\n")
    protocols[2].data_received(b"ignored")  # a refused connection reaches no handler
    protocols[0].connection_lost(None)
    protocols[2].connection_lost(None)
    assert handlers[0].events == ["made", "GET / HTTP/1.1\r\n", "lost"]
    assert gate.open == 2 and gate.by_address == {"10.0.0.1": 1, "10.0.0.2": 1}
    again = gate()
    again.connection_made(_Transport("10.0.0.1"))
    assert gate.open == 3 and len(handlers) == 4
