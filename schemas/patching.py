"""Applying a JSON Patch (RFC 6902) to a stored event, within bounds set before it runs.

A replay may correct a dead letter's body with a JSON Patch. Unbounded, a patch is a
program: each `copy` of the root doubles the document, so 1.1 KB of operations blocked
the API for 16 s and took ~1 GB (issue 15). Here a patch has at most `MAX_OPERATIONS`
operations, nests no deeper than an event may (`schemas.nesting`), and is applied one
operation at a time: after each, the document's encoded size is checked against the
request body limit and its depth against the nesting cap, and a `copy` whose result
would be too large is refused before anything is copied. The whole patch must finish
within `PATCH_SECONDS` (checked between operations, so the caller may run it in a
thread and know it ends). Pure: no I/O, plain values in and out.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jsonpatch
import jsonpointer

from schemas.nesting import MAX_DEPTH, too_deep_indexes

MAX_OPERATIONS = 100
"""Operations in one patch: a correction changes a few fields, not thousands."""
PATCH_DEPTH = MAX_DEPTH + 2
"""Nesting of the patch itself: a value sits in an operation object inside the array."""
PATCH_SECONDS = 2.0
"""How long applying one patch may take, operations checked between each."""


class PatchRefused(ValueError):
    """A patch that is not applied; `status` and `code` say why (400, 413 or 422)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def apply_patch(raw: bytes, patch: Any, *, max_bytes: int, seconds: float = PATCH_SECONDS) -> bytes:
    """`raw` (a JSON document) with `patch` applied, as compact UTF-8 JSON of at most
    `max_bytes`; PatchRefused if the patch is malformed, does not apply, or passes a bound."""
    deadline = time.monotonic() + seconds
    operations = _operations(patch)
    document = _document(raw)
    if not operations:
        return _encode(document)
    encoded = raw  # its size stands for the document's until the first operation
    for index, operation in enumerate(operations):
        if time.monotonic() > deadline:
            message = f"the patch took more than {seconds:g} s (stopped at operation {index})"
            raise PatchRefused(422, "patch_too_slow", message)
        _check_copy(document, operation, len(encoded), max_bytes, index)
        try:
            document = jsonpatch.JsonPatch([operation]).apply(document, in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError) as exc:
            message = f"operation {index} does not apply: {exc}"
            raise PatchRefused(400, "bad_patch", message) from exc
        encoded = _encode(document)
        _check_result(encoded, max_bytes, index)
    return encoded


def _operations(patch: Any) -> list[Any]:
    if not isinstance(patch, list):
        raise PatchRefused(400, "bad_patch", "not a JSON Patch: it must be an array of operations")
    if len(patch) > MAX_OPERATIONS:
        message = f"a patch may hold at most {MAX_OPERATIONS} operations, not {len(patch)}"
        raise PatchRefused(422, "too_many_operations", message)
    try:
        deep = _too_deep(json.dumps(patch).encode(), PATCH_DEPTH)
    except RecursionError:
        deep = True
    except (TypeError, ValueError) as exc:
        raise PatchRefused(400, "bad_patch", f"not a JSON Patch: {exc}") from exc
    if deep:
        message = f"the patch's values nest deeper than {MAX_DEPTH} levels"
        raise PatchRefused(422, "too_deep", message)
    return patch


def _document(raw: bytes) -> Any:
    if _too_deep(raw):
        message = f"the body nests deeper than {MAX_DEPTH} levels: replace it instead"
        raise PatchRefused(422, "too_deep", message)
    try:
        return json.loads(raw)
    except ValueError as exc:
        message = f"the body is not JSON, so no patch applies: {exc}"
        raise PatchRefused(400, "bad_patch", message) from exc


def _check_copy(document: Any, operation: Any, size: int, max_bytes: int, index: int) -> None:
    """Refuse a `copy` that would take the document past `max_bytes`, before it copies."""
    if not isinstance(operation, dict) or operation.get("op") != "copy":
        return
    source = operation.get("from")
    if not isinstance(source, str):
        return  # the operation itself reports it
    try:
        value = jsonpointer.resolve_pointer(document, source)
    except (jsonpointer.JsonPointerException, TypeError, AttributeError):
        return  # the operation itself reports the bad pointer
    if size + len(_encode(value)) > max_bytes:
        raise PatchRefused(413, "patched_body_too_large", _too_large(max_bytes, index))


def _check_result(encoded: bytes, max_bytes: int, index: int) -> None:
    if len(encoded) > max_bytes:
        raise PatchRefused(413, "patched_body_too_large", _too_large(max_bytes, index))
    if _too_deep(encoded):
        message = f"operation {index} makes the body nest deeper than {MAX_DEPTH} levels"
        raise PatchRefused(422, "too_deep", message)


def _too_large(max_bytes: int, index: int) -> str:
    return f"operation {index} makes the body larger than the {max_bytes}-byte limit"


def _too_deep(raw: bytes, cap: int = MAX_DEPTH) -> bool:
    """`schemas.nesting`'s rule, compiled when built: a few ms for 6 MB of brackets."""
    return bool(too_deep_indexes([raw], cap))


def _encode(document: Any) -> bytes:
    """Compact UTF-8 JSON; a lone surrogate (which `json.loads` lets through) stays the
    `\\u` escape it was, for the validators to judge, instead of failing to encode."""
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(document, separators=(",", ":")).encode()
