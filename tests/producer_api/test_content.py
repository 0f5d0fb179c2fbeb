from __future__ import annotations

import gzip
import zlib

import pytest
from aiohttp import web

from producer_api.content import UndecodableBody, decode_body

BODY = b'[{"type": "t", "n": 1}]' * 20


@pytest.mark.parametrize("coding", ["", "identity", "IDENTITY"])
def test_identity_is_untouched(coding: str) -> None:
    assert decode_body(BODY, coding, 10_000) is BODY


def test_gzip_deflate_and_concatenated_members() -> None:
    assert decode_body(gzip.compress(BODY), "gzip", 10_000) == BODY
    assert decode_body(gzip.compress(BODY) * 3, "x-gzip", 10_000) == BODY * 3
    assert decode_body(zlib.compress(BODY), "deflate", 10_000) == BODY


def test_a_truncated_body_keeps_the_bytes_received() -> None:
    sent = gzip.compress(BODY)[:-12]
    with pytest.raises(UndecodableBody) as caught:
        decode_body(sent, "gzip", 10_000)
    assert caught.value.raw == sent


def test_unknown_codings_and_garbage_are_undecodable() -> None:
    with pytest.raises(UndecodableBody):
        decode_body(BODY, "br", 10_000)
    with pytest.raises(UndecodableBody):
        decode_body(b"not gzip at all", "gzip", 10_000)


def test_the_bound_holds_while_decompressing_a_bomb() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(web.HTTPRequestEntityTooLarge):
        decode_body(bomb, "gzip", 1_000_000)
    with pytest.raises(web.HTTPRequestEntityTooLarge):
        decode_body(gzip.compress(b"x" * 600_000) * 2, "gzip", 1_000_000)
