"""The validator for each API family, by name. Families register here as they arrive."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence

from schemas.cloudevents import CONTENT_TYPE, is_binary, is_json_type
from schemas.families.baselime import validate_baselime
from schemas.families.dakkio import validate_dakkio
from schemas.families.dashdive import validate_dashdive
from schemas.families.datahub import validate_datahub
from schemas.families.dynatrace import validate_dynatrace
from schemas.families.otlp import validate_otlp
from schemas.families.posthog import validate_posthog
from schemas.families.segment import validate_rudderstack, validate_segment
from schemas.native import validate_native
from schemas.nesting import TOO_DEEP, too_deep_indexes
from schemas.outcome import Outcome, Rejected, ValidEvent, Violation

log = logging.getLogger(__name__)

Validator = Callable[[bytes, Mapping[str, str]], Outcome]
"""A validator sees one event's raw bytes and the request's route parameters."""

VALIDATORS: dict[str, Validator] = {
    "native": validate_native,
    "dashdive": validate_dashdive,
    "datahub": validate_datahub,
    "baselime": validate_baselime,
    "dynatrace": validate_dynatrace,
    "dakkio": validate_dakkio,
    "posthog": validate_posthog,
    "otlp": validate_otlp,
    "segment": validate_segment,
    "rudderstack": validate_rudderstack,
}


def validator_for(family: str) -> Validator:
    """The validator of `family`; KeyError for a family Sluice does not know."""
    return VALIDATORS[family]


def validate_safely(validate: Validator, raw: bytes, route: Mapping[str, str]) -> Outcome:
    """Run `validate`; an exception rejects this one event instead of failing the request.

    Validators are pure, so an exception is about this event's bytes (a validator
    bug meeting unusual input), never an outage: the event becomes a dead letter
    with reason `processing_error`, as it would in the stream processor. An event
    holding what PostgreSQL cannot store (NUL, a huge number) is rejected here too.
    """
    if _too_deep((raw,), route):
        return _TOO_DEEP
    return _validate_storable(validate, raw, route)


def _validate_storable(validate: Validator, raw: bytes, route: Mapping[str, str]) -> Outcome:
    """`validate_safely` past the nesting check: the validator, then what PostgreSQL
    cannot store."""
    outcome = _validate(validate, raw, route)
    if not isinstance(outcome, ValidEvent):
        return outcome
    # Each full check runs only when the quick scan of the bytes says it could find something.
    if _may_hold_nul(raw, route) and _holds_nul(outcome):
        return Rejected((_NUL,), outcome.event_id)
    if _may_hold_long_number(raw) and (
        _long_number_in(outcome.data_json)
        or (outcome.attributes_json is not None and _long_number_in(outcome.attributes_json))
    ):
        return Rejected((_LONG_NUMBER,), outcome.event_id)
    return outcome


def validate_all(
    validate: Validator, raws: Sequence[bytes], route: Mapping[str, str]
) -> list[Outcome]:
    """`validate_safely` for each of `raws` (one request's or envelope's events), with the
    quick scans for what PostgreSQL cannot store run once over all of them: per event only
    when that scan finds something (~0.5 µs per event saved at the door and in the stream).

    Before any validator decodes an event, its nesting is checked (`schemas.nesting`): one
    that nests deeper than `MAX_DEPTH` is rejected `too_deep` wherever it is read."""
    deep = _too_deep(raws, route)
    if deep:  # checked once for the batch: not again per event
        return [_TOO_DEEP if i in deep else _validate_storable(validate, raw, route)
                for i, raw in enumerate(raws)]  # fmt: skip
    if may_be_unstorable(raws, route):
        return [_validate_storable(validate, raw, route) for raw in raws]
    return [_validate(validate, raw, route) for raw in raws]


_TOO_DEEP = Rejected((TOO_DEEP,))


def _too_deep(raws: Sequence[bytes], route: Mapping[str, str]) -> set[int]:
    """Indexes of `raws` nesting too deeply; none for CSV rows, which do not nest, nor for
    a binary-mode CloudEvent's data that is not JSON (opaque bytes)."""
    if route and (route.get("format") == "csv" or (
            is_binary(route) and not is_json_type(route.get(CONTENT_TYPE)))):  # fmt: skip
        return set()
    return set(too_deep_indexes(raws))


def _validate(validate: Validator, raw: bytes, route: Mapping[str, str]) -> Outcome:
    try:
        return validate(raw, route)
    except Exception as exc:  # pure code: see `validate_safely`
        log.exception("validator failed on one event")
        return Rejected((Violation("processing_error", "$", f"{type(exc).__name__}: {exc}"),))


def may_be_unstorable(raws: Sequence[bytes], route: Mapping[str, str]) -> bool:
    """False when no event of `raws` can hold what PostgreSQL cannot store: the quick scans
    of `validate_safely`, run once over the whole batch (`validate_all`).

    The events are joined with a newline, which neither scan can read as part of a NUL
    escape or a number, so no pattern can span two events.
    """
    joined = b"\n".join(raws)
    return _may_hold_nul(joined, route) or _may_hold_long_number(joined)


_BACKSLASH = ord("\\")


def _may_hold_nul(raw: bytes, route: Mapping[str, str]) -> bool:
    """False when no text a validator derives from `raw` and `route` can hold NUL.

    Validators are pure functions of the two, and JSON text carries NUL only as the
    escape `\\u0000` (CSV only as the byte itself), so the common event skips the
    field-by-field check below with two scans of its bytes.
    """
    # Integer membership is a plain byte scan (~15 ns); `b"\\x00" in raw` costs ten times it.
    if 0 in raw or (_BACKSLASH in raw and raw.find(b"\\u0000") >= 0):
        return True
    return any("\x00" in value for value in route.values()) if route else False


MAX_NUMBER_DIGITS = 3000
MAX_NUMBER_EXPONENT = 1000
"""PostgreSQL keeps a JSON number as an exact decimal: `1e1000000` overflows its numeric type
(the sink's insert would fail on it), and one of more than ~4,300 digits cannot be read back
into Python. Numbers in `data` are refused past these bounds (at most 4,000 digits stored)."""

_NUMBER_SHAPES = bytes(
    ord("0") if chr(b) in "0123456789." else ord("e") if chr(b) in "eE" else ord(" ")
    for b in range(256)
)  # fmt: skip
_SIGNS = b"+-"
"""Signs are deleted, digits and decimal points become `0`, exponent marks `e`: after
`translate`, a long mantissa is a long run of `0`, and a long exponent reads `0e0000` (in
JSON an exponent always follows a digit, so ids like `device-12345` do not look like one).
Deleting signs can only join runs, so nothing is missed, and it leaves one pattern to search
for instead of two (with and without a sign: ~30 µs less per 255-event request)."""
_LONG_RUN = b"0" * (MAX_NUMBER_DIGITS + 1)


def _may_hold_long_number(raw: bytes) -> bool:
    """False when no number in `raw` can exceed the bounds: one translation and a search
    (~0.25 µs for a typical event; `in` with a bytes needle would cost twice that)."""
    shapes = raw.translate(_NUMBER_SHAPES, _SIGNS)
    if shapes.find(b"0e0000") >= 0:
        return True
    return len(raw) > MAX_NUMBER_DIGITS and shapes.find(_LONG_RUN) >= 0


def _number_too_long(text: str) -> bool:
    """Whether a JSON number's text is past `MAX_NUMBER_DIGITS` or `MAX_NUMBER_EXPONENT`."""
    mantissa, _, exponent = text.lower().partition("e")
    digits = sum(c.isdigit() for c in mantissa)
    exponent = exponent.lstrip("+-").lstrip("0")
    return (
        digits > MAX_NUMBER_DIGITS
        or len(exponent) > 4
        or int(exponent or "0") > (MAX_NUMBER_EXPONENT)
    )


def _long_number_in(data_json: str) -> bool:
    found = False

    def check(text: str) -> int:
        nonlocal found
        found = found or _number_too_long(text)
        return 0

    try:
        json.loads(data_json, parse_int=check, parse_float=check)
    except ValueError:
        return True
    return found


_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
"""`\u0000` in JSON text that is an escape, not an escaped backslash followed by `u0000`."""


_NUL = Violation("unsupported_character", "$", "the NUL character (\\u0000) cannot be stored")
_LONG_NUMBER = Violation(
    "unsupported_number", "$.data",
    f"a number with more than {MAX_NUMBER_DIGITS} digits or an exponent beyond "
    f"±{MAX_NUMBER_EXPONENT} cannot be stored",
)  # fmt: skip


def _holds_nul(event: ValidEvent) -> bool:
    texts = f"{event.type}{event.source}{event.event_id or ''}{event.subject or ''}"
    if "\x00" in texts:
        return True
    return any(
        "\\u0000" in text and _ESCAPED_NUL.search(text) is not None
        for text in (event.data_json, event.attributes_json or "")
    )
