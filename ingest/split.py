"""Reading request bodies within limits and splitting JSON bodies into raw events.

aiohttp decompresses `Content-Encoding: gzip` while reading, and its
`client_max_size` bounds the decompressed size, so a gzip bomb stops at the
limit instead of filling memory.
"""

from __future__ import annotations

import msgspec

_list_of_raw = msgspec.json.Decoder(list[msgspec.Raw])


class Unsplittable(ValueError):
    """A body that cannot be split into events (not JSON, or not an object/array)."""


def split_json_events(body: bytes) -> list[bytes]:
    """The events of a JSON body, each as its exact original bytes.

    A body is one object or an array of values. Array elements are sliced out
    of the body unchanged, so a rejected one can be stored byte for byte.
    """
    stripped = body.lstrip()
    if stripped.startswith(b"["):
        try:
            return [bytes(item) for item in _list_of_raw.decode(body)]
        except msgspec.DecodeError as exc:
            raise Unsplittable(f"body is not a valid JSON array: {exc}") from exc
        except RecursionError as exc:  # msgspec's limit, far past `schemas.nesting.MAX_DEPTH`
            raise Unsplittable("body nests too deeply to be split into events") from exc
    if stripped.startswith(b"{"):
        return [body]
    raise Unsplittable("body must be a JSON object or an array of objects")
