"""Request bodies as received, decoded from their `Content-Encoding` within a size bound.

The app turns off aiohttp's own decompression (`auto_decompress=False`), so a
body that fails to decompress is still available exactly as it arrived and
can be kept as a dead letter byte for byte (docs/design.md, invariant 2). `client_max_size`
bounds the bytes received; `decode_body` bounds the bytes decompressed, while
decompressing, whatever the gzip header claims.
"""

from __future__ import annotations

import zlib

from aiohttp import web

from producer_api.resources import SETTINGS

MAX_GZIP_MEMBERS = 1_000
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class UndecodableBody(ValueError):
    """A body whose `Content-Encoding` does not decode (truncated, corrupt, unknown coding)."""

    def __init__(self, raw: bytes, reason: str) -> None:
        super().__init__(reason)
        self.raw = raw


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


async def read_body(request: web.Request) -> bytes:
    """The request's body, decoded per its `Content-Encoding` within `client_max_size`."""
    raw = await request.read()
    limit = request.config_dict[SETTINGS].max_body_bytes  # same bound, received and decoded
    return decode_body(raw, request.headers.get("Content-Encoding", ""), limit)
