"""Request bodies as received, decoded from their `Content-Encoding` within a size bound.

The app turns off aiohttp's own decompression (`auto_decompress=False`), so a
body that fails to decompress is still available exactly as it arrived and
can be kept as a dead letter byte for byte (docs/design.md, invariant 2). `client_max_size`
bounds the bytes received; `decode_body` bounds the bytes decompressed, while
decompressing, whatever the gzip header claims.
"""

from __future__ import annotations

import asyncio
import zlib

from aiohttp import web

from producer_api.ratelimit import body_hold
from producer_api.resources import SETTINGS

MAX_GZIP_MEMBERS = 1_000
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class UndecodableBody(ValueError):
    """A body whose `Content-Encoding` does not decode (truncated, corrupt, unknown coding)."""

    def __init__(self, raw: bytes, reason: str) -> None:
        super().__init__(reason)
        self.raw = raw


class SlowBody(Exception):
    """The body arrived slower than `SLUICE_MIN_BODY_BYTES_PER_SECOND` past its grace
    period (answered 408: the client may retry on a better connection)."""


def decode_body(raw: bytes, encoding: str, limit: int) -> bytes:
    """`raw` decoded per `encoding` (identity, gzip incl. concatenated members, deflate).

    Raises `web.HTTPRequestEntityTooLarge` past `limit` decoded bytes and
    `UndecodableBody` when the bytes do not decode.
    """
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return raw
    wbits = _WBITS.get(coding)
    if wbits is None:
        raise UndecodableBody(raw, f"unsupported Content-Encoding {encoding!r}")
    out = bytearray()
    rest = memoryview(raw)
    for _member in range(MAX_GZIP_MEMBERS):
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise UndecodableBody(raw, f"body does not decode as {coding}: {exc}") from exc
        if len(out) > limit or inflater.unconsumed_tail:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(out))
        if not inflater.eof:
            raise UndecodableBody(raw, f"{coding} body is truncated")
        rest = rest[len(rest) - len(inflater.unused_data) :]
        if not rest or coding == "deflate":
            return bytes(out)
    raise UndecodableBody(raw, f"more than {MAX_GZIP_MEMBERS} gzip members")


async def receive(request: web.Request) -> bytes:
    """The request's body as received, at most `client_max_size` bytes (413 past it).

    Each chunk is charged to the request's hold on the body budget as it arrives (503
    past it), and the body must keep up a minimum pace: after
    `SLUICE_BODY_GRACE_SECONDS`, at least `SLUICE_MIN_BODY_BYTES_PER_SECOND` on average
    since reading began, or `SlowBody` (408) the moment it falls behind, without waiting
    for the request's whole timeout. Every route reads its body through this."""
    settings = request.config_dict[SETTINGS]
    hold, limit = body_hold(request), request.client_max_size
    rate, grace = settings.min_body_bytes_per_second, settings.body_grace_seconds
    loop = asyncio.get_running_loop()
    start = loop.time() + grace
    out = bytearray()
    while True:
        deadline = asyncio.timeout_at(start + len(out) / rate if rate > 0 else None)
        try:
            async with deadline:
                chunk = await request.content.readany()
        except TimeoutError:
            if not deadline.expired():
                raise
            raise SlowBody(f"the body arrived slower than {rate:g} bytes/s after {grace:g}s "
                           f"({len(out)} bytes read)") from None  # fmt: skip
        if not chunk:
            return bytes(out)
        if len(out) + len(chunk) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(out) + len(chunk))
        hold.take(len(chunk))
        out += chunk


async def read_body(request: web.Request) -> bytes:
    """The request's body (`receive`), decoded per its `Content-Encoding` within
    `client_max_size`; a decoded body is charged to the body budget too."""
    raw = await receive(request)
    limit = request.config_dict[SETTINGS].max_body_bytes  # same bound, received and decoded
    decoded = decode_body(raw, request.headers.get("Content-Encoding", ""), limit)
    if decoded is not raw:
        body_hold(request).take(len(decoded))
    return decoded
