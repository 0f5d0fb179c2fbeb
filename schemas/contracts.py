"""Data contracts: a tenant's JSON Schema for the events of one subject, and its enforcement.

Pure: a `Contracts` map is built from rows the registry holds (`ingest.contracts` loads
them) and is read per event from memory. Both the door (`ingest.plan.plan_events`) and
the stream (`streams.process.process_envelope`) call `enforce` on the outcomes of the
family's validator, so they agree by construction; the stream stays the authority
(it applies the latest version at the moment it processes an envelope). The stream's
compiled path (`streams.compiled`, `fastpath/src/contracts.rs`) applies the same
contracts to plainly valid native envelopes with the same jsonschema crate and options,
and leaves every envelope with a failing event to `enforce`.

Subjects, and the document each one's schema validates (docs/api.md#data-contracts):

* `native.<type>`: the `data` of a native event (or CloudEvent) of that `type`; a
  CloudEvent whose data is not JSON (`data_base64`) is validated as `null`;
* `baselime.<dataset>`: the whole Baselime event object sent to that dataset;
* `dakkio.<dataSourceId>` (id lower-cased): the object `{"values": …, "metadata": …}` of a
  data point of that data source, `metadata` present only when the point has one;
* `dynatrace.<event.type>` (`generic` when the event has none): the whole generic event.

Schemas are compiled with jsonschema-rs (Rust). `pattern` and `patternProperties` use the
Rust `regex` crate (`RegexOptions`), a finite-automaton engine whose matching time is
linear in the input: no pattern can backtrack catastrophically, and patterns that need
backtracking (backreferences, look-around) are refused when the schema is registered.
No `$ref` is fetched from anywhere: only references inside the schema resolve.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import jsonschema_rs
import msgspec

from schemas.outcome import Outcome, Rejected, ValidEvent, Violation, capped

FAMILIES: Mapping[str, str] = {
    "native": "native",
    "baselime": "baselime",
    "dakkio": "dakkio",
    "dynatrace": "dynatrace",
}
"""Family → the first segment of its subjects. Only these families have contracts."""

DRAFTS: Mapping[str, Any] = {
    "https://json-schema.org/draft/2020-12/schema": jsonschema_rs.Draft202012,
    "https://json-schema.org/draft/2019-09/schema": jsonschema_rs.Draft201909,
    "http://json-schema.org/draft-07/schema": jsonschema_rs.Draft7,
    "http://json-schema.org/draft-06/schema": jsonschema_rs.Draft6,
    "http://json-schema.org/draft-04/schema": jsonschema_rs.Draft4,
}
"""The `$schema` values a contract may name (a trailing `#` is allowed); none: 2020-12."""

MAX_MESSAGE_CHARS = 300
MAX_POINTER_CHARS = 200
"""A violation's message and JSON pointer are cut past these (a message quotes the value)."""

REGEX_SIZE_LIMIT = 1 << 20
"""Bytes a compiled `pattern` may take (the regex crate refuses a larger one)."""

CODE = "schema_violation"


class InvalidContract(ValueError):
    """A schema that cannot be a data contract (the registry's 42201)."""


def is_contract_subject(subject: str) -> bool:
    """Whether `subject` names a data contract (`native.…`, `baselime.…`, …)."""
    head, dot, rest = subject.partition(".")
    return bool(dot and rest) and head in FAMILIES.values()


def subject_of(family: str, event: ValidEvent) -> str | None:
    """The subject whose schema `event` of `family` must satisfy; None: no contract applies."""
    if family == "native" or family == "dynatrace":
        return f"{family}.{event.type}"
    if family == "baselime":
        return f"baselime.{event.source}"
    if family == "dakkio" and event.subject is not None:
        return f"dakkio.{event.subject}"
    return None


def document_of(family: str, event: ValidEvent) -> Any:
    """What the subject's schema validates (see the module's doc)."""
    return _document(family, msgspec.json.decode(event.data_json) if event.data_json else None)


def _document(family: str, data: Any) -> Any:
    """What a subject's schema validates, from the event's decoded `data`."""
    if family == "dakkio" and isinstance(data, dict):
        found = {"values": data.get("values")}
        if data.get("metadata") is not None:
            found["metadata"] = data["metadata"]
        return found
    return data


def _no_retrieval(uri: str) -> Any:
    raise ValueError(f"remote $ref {uri[:100]!r} is not fetched: a contract must be self-contained")


def compile_schema(text: str) -> Any:
    """A jsonschema-rs validator for the schema `text`; raises `InvalidContract`."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidContract(f"the schema is not JSON: {exc}") from exc
    draft: Any = jsonschema_rs.Draft202012
    if isinstance(document, dict) and "$schema" in document:
        named = document["$schema"]
        draft = DRAFTS.get(named.removesuffix("#")) if isinstance(named, str) else None
        if draft is None:
            raise InvalidContract(
                f"unknown or unsupported JSON Schema draft {str(named)[:100]!r}: a contract "
                "takes draft 2020-12 (the default), 2019-09, 7, 6 or 4"
            )
    elif not isinstance(document, dict | bool):
        raise InvalidContract("a JSON Schema is an object or a boolean")
    try:
        return ContractValidator(document, draft)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        raise InvalidContract(
            f"invalid data contract: {_cut(str(exc), MAX_MESSAGE_CHARS)}"
        ) from exc


_VALIDATORS: Mapping[Any, Any] = {
    jsonschema_rs.Draft202012: jsonschema_rs.Draft202012Validator,
    jsonschema_rs.Draft201909: jsonschema_rs.Draft201909Validator,
    jsonschema_rs.Draft7: jsonschema_rs.Draft7Validator,
    jsonschema_rs.Draft6: jsonschema_rs.Draft6Validator,
    jsonschema_rs.Draft4: jsonschema_rs.Draft4Validator,
}


def _validator(document: Any, draft: Any, registry: Any = None) -> Any:
    extra = {} if registry is None else {"registry": registry}
    return _VALIDATORS[draft](
        document, retriever=_no_retrieval,
        pattern_options=jsonschema_rs.RegexOptions(size_limit=REGEX_SIZE_LIMIT), **extra,
    )  # fmt: skip


_CONTRACT_URI = "urn:sluice:contract"
_NAMING_KEYWORDS = ('"$id"', '"$anchor"', '"$dynamicAnchor"', '"$recursiveAnchor"')
"""A contract naming resources of its own is never checked as a batch (see `all_valid`);
draft 4 names them with `id`."""


class ContractValidator:
    """A compiled contract: one document at a time, or a whole envelope's at once.

    `all_valid` checks many documents in one call of a validator of "an array whose items
    all satisfy the contract" (the contract a resource of its own, referenced, so its
    `$ref`s resolve in it; the same draft, so formats are asserted alike). That skips a
    call and a conversion per document (~0.8 µs of the ~2.5 an event costs): the common
    case, an envelope whose events all pass, is then decided at once. A batch with any
    failure is checked again one by one, for the reasons. Contracts naming resources of
    their own (`$id`, anchors) are not batched: a second root could resolve them apart.
    """

    def __init__(self, document: Any, draft: Any) -> None:
        self._one = _validator(document, draft)
        self._document, self._draft = document, draft
        self._many: Any = None
        naming = (*_NAMING_KEYWORDS, '"id"') if draft is jsonschema_rs.Draft4 else _NAMING_KEYWORDS
        text = json.dumps(document)
        self._batched = isinstance(document, dict) and not any(w in text for w in naming)

    def is_valid(self, document: Any) -> bool:
        return bool(self._one.is_valid(document))

    def iter_errors(self, document: Any) -> Iterable[Any]:
        return self._one.iter_errors(document)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        """The rest of jsonschema-rs's validator (`validate`, `evaluate`), as it is."""
        if name.startswith("_"):  # never while half-built (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._one, name)

    def all_valid(self, documents: list[Any]) -> bool:
        """Whether every one of `documents` satisfies the contract (False: some may not)."""
        if not self._batched:
            return False
        if self._many is None:
            registry = jsonschema_rs.Registry([(_CONTRACT_URI, self._document)])
            wrapper = {"type": "array", "items": {"$ref": _CONTRACT_URI}}
            self._many = _validator(wrapper, self._draft, registry)
        return bool(self._many.is_valid(documents))


@dataclass(frozen=True)
class Contract:
    """The latest version of one tenant's subject, compiled."""

    subject: str
    version: int
    schema_id: int
    validator: Any = field(repr=False, compare=False)


def violations(contract: Contract, document: Any) -> list[Violation]:
    """Every way `document` breaks `contract` (empty: it satisfies it), bounded: at most
    `MAX_VIOLATIONS` and a count of the rest, each message and pointer cut to a length.

    Each is code `schema_violation`, path the RFC 6901 JSON pointer of the offending value
    inside the validated document ('' is the document itself), and a message that names
    the subject, version and schema id. The heal (issue 17 part 3) calls this too.
    """
    if contract.validator.is_valid(document):
        return []
    where = f" ({contract.subject} version {contract.version}, schema {contract.schema_id})"
    found = [
        Violation(CODE, _cut(_pointer(error.instance_path), MAX_POINTER_CHARS),
                  _cut(error.message, MAX_MESSAGE_CHARS - len(where)) + where)
        for error in _first(contract.validator.iter_errors(document))
    ]  # fmt: skip
    return list(capped(found))


def _first(errors: Iterable[Any], limit: int = 200) -> Iterable[Any]:
    for count, error in enumerate(errors):
        if count == limit:
            return
        yield error


def _pointer(path: Sequence[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


@dataclass(frozen=True)
class Contracts:
    """Every tenant's latest contracts by (tenant, subject), read per event from memory."""

    by_subject: Mapping[tuple[str, str], Contract] = field(default_factory=dict)
    generation: int = -1
    """The registry's change counter these were loaded at (`ingest.contracts`)."""

    def covers(self, tenant: str, family: str) -> bool:
        """Whether `tenant` has any contract for events of `family` (the compiled door path
        declines then: it cannot apply one)."""
        head = FAMILIES.get(family)
        return head is not None and (tenant, head) in self._families

    @property
    def _families(self) -> frozenset[tuple[str, str]]:
        found = self.__dict__.get("_families_cache")
        if found is None:
            found = frozenset((t, s.partition(".")[0]) for t, s in self.by_subject)
            object.__setattr__(self, "_families_cache", found)
        return found

    def contract_for(self, tenant: str, family: str, event: ValidEvent) -> Contract | None:
        subject = subject_of(family, event)
        return None if subject is None else self.by_subject.get((tenant, subject))


NO_CONTRACTS = Contracts()


def enforce(
    contracts: Contracts, tenant: str, family: str, outcomes: Sequence[Outcome]
) -> Sequence[Outcome]:
    """`outcomes` with each valid event checked against its subject's contract: a failure
    becomes `Rejected` with its `schema_violation`s, a pass carries the schema's id. Events
    whose subject has no contract, and every event of a tenant without contracts for
    `family`, are returned as they were (the same objects: nothing is decoded)."""
    if not contracts.covers(tenant, family):
        return outcomes
    checked = list(outcomes)
    groups: dict[str, tuple[Contract, list[int]]] = {}
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, Rejected):
            continue
        contract = contracts.contract_for(tenant, family, outcome)
        if contract is not None:
            groups.setdefault(contract.subject, (contract, []))[1].append(index)
    for contract, indexes in groups.values():
        events = [cast(ValidEvent, outcomes[i]) for i in indexes]
        if len(events) > 1 and _all_valid(contract, family, events):
            for i, event in zip(indexes, events, strict=True):
                checked[i] = msgspec.structs.replace(event, schema_id=contract.schema_id)
            continue
        for i, event in zip(indexes, events, strict=True):
            checked[i] = _checked(contract, family, event)
    return checked


def _all_valid(contract: Contract, family: str, events: list[ValidEvent]) -> bool:
    """Whether every event satisfies `contract`, decided in one call when it can be (their
    documents decoded as one array); False when some may not."""
    check = getattr(contract.validator, "all_valid", None)
    if check is None:
        return False
    try:
        data = msgspec.json.decode("[" + ",".join(e.data_json or "null" for e in events) + "]")
    except msgspec.DecodeError:
        return False
    return bool(check([_document(family, d) for d in data]))


def _checked(contract: Contract, family: str, outcome: ValidEvent) -> Outcome:
    found = violations(contract, document_of(family, outcome))
    if found:
        return Rejected(tuple(found), outcome.event_id)
    return msgspec.structs.replace(outcome, schema_id=contract.schema_id)


def is_schema_violation(outcome: Outcome) -> bool:
    """Whether `outcome` was rejected by a contract (not by the family's own rules)."""
    return isinstance(outcome, Rejected) and any(v.code == CODE for v in outcome.violations)
