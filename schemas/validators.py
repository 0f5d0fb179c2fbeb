"""The validator for each API family, by name. Families register here as they arrive."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping

from schemas.families.baselime import validate_baselime
from schemas.families.dakkio import validate_dakkio
from schemas.families.dashdive import validate_dashdive
from schemas.families.datahub import validate_datahub
from schemas.families.dynatrace import validate_dynatrace
from schemas.native import validate_native
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
}


def validator_for(family: str) -> Validator:
    """The validator of `family`; KeyError for a family Sluice does not know."""
    return VALIDATORS[family]


def validate_safely(validate: Validator, raw: bytes, route: Mapping[str, str]) -> Outcome:
    """Run `validate`; an exception rejects this one event instead of failing the request.

    Validators are pure, so an exception is about this event's bytes (a validator
    bug meeting unusual input), never an outage: the event becomes a dead letter
    with reason `processing_error`, as it would in the stream processor.
    """
    try:
        outcome = validate(raw, route)
    except Exception as exc:  # pure code: see the docstring
        log.exception("validator failed on one event")
        return Rejected((Violation("processing_error", "$", f"{type(exc).__name__}: {exc}"),))
    if isinstance(outcome, ValidEvent) and _may_hold_nul(raw, route):
        return _refuse_unstorable(outcome)
    return outcome


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


_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
"""`\u0000` in JSON text that is an escape, not an escaped backslash followed by `u0000`."""


def _refuse_unstorable(event: ValidEvent) -> Outcome:
    """PostgreSQL's text and jsonb refuse NUL; an event holding one is rejected here, for every
    family, rather than accepted and then refused by the sink's insert (which would stall it)."""
    texts = f"{event.type}{event.source}{event.event_id or ''}{event.subject or ''}"
    nul_in_data = "\\u0000" in event.data_json and _ESCAPED_NUL.search(event.data_json)
    if not nul_in_data and "\x00" not in texts:
        return event
    reason = Violation("unsupported_character", "$", "the NUL character (\\u0000) cannot be stored")
    return Rejected((reason,), event.event_id)
