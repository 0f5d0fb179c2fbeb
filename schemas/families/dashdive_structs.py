"""The msgspec fast path of Dashdive validation, built from the same field tables.

Each (service, action) becomes a tagged msgspec Struct (tag field `action`), so
one C-level decode checks a valid event completely and drops unknown fields.
Explicit `null` in an optional field is omitted like an absent one, exactly as
the slow path (`dashdive_fields.known_fields`) does, so both produce the same
canonical bytes; any event this path refuses goes to the slow path for reasons.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import msgspec

from schemas.families.dashdive_fields import (
    ENUMS,
    MAX_DELETED_OBJECTS,
    MAX_PART_NUMBER,
    MAX_TEXT,
    Field,
)

_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
_Count = Annotated[int, msgspec.Meta(ge=0)]
_Quantity = Annotated[int, msgspec.Meta(ge=0)] | Annotated[float, msgspec.Meta(ge=0)]


class DeletedObject(msgspec.Struct, frozen=True, omit_defaults=True):
    """One object of a `DeleteObjects` event (field names are Dashdive's)."""

    objectKey: _Text
    versionId: _Text | None = None
    isDeleteMarker: bool | None = None


_KINDS: dict[str, Any] = {
    "text": _Text,
    "timestamp": str,
    "bytes": _Count,
    "part": Annotated[int, msgspec.Meta(ge=1, le=MAX_PART_NUMBER)],
    "quantity": _Quantity,
    "boolean": bool,
    "deleted_objects": Annotated[
        list[DeletedObject], msgspec.Meta(min_length=1, max_length=MAX_DELETED_OBJECTS)
    ],
    **{kind: Literal[choices] for kind, choices in ENUMS.items()},
}


def build_decoder(
    service: str, common: tuple[Field, ...], actions: dict[str, tuple[Field, ...]]
) -> msgspec.json.Decoder[Any]:
    """A decoder of the tagged union of `service`'s event types."""
    types = [_struct(service, action, common[1:] + fields) for action, fields in actions.items()]
    return msgspec.json.Decoder(Union[tuple(types)])  # noqa: UP007 - a runtime union of many


def _struct(service: str, action: str, fields: tuple[Field, ...]) -> type[msgspec.Struct]:
    spec: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        (f.name, _KINDS[f.kind]) if f.required else (f.name, _KINDS[f.kind] | None, None)
        for f in fields
    ]
    return msgspec.defstruct(
        f"{service}_{action}", spec, tag_field="action", tag=action, omit_defaults=True,
        frozen=True, kw_only=True,
    )  # fmt: skip
