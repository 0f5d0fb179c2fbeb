"""Whether every document one JSON Schema accepts, another accepts too (issue 17, part 2).

`reader_cannot_read(reader, writer)` answers every reason a document valid under `writer`
may be refused by `reader` (empty: the reader accepts all of them). That is inclusion of
the sets of documents, decided keyword by keyword over both schemas at once. It is sound
and deliberately incomplete: an empty answer is a proof; where inclusion is not decided
(`not`, `if`, a reader's `oneOf`, a changed `pattern`, …) the reason says so and the change
counts as breaking. The rules, and where they differ from Confluent's, are in docs/api.md
("JSON Schema compatibility"). Each reason starts with a JSON pointer into the schemas.
"""

from __future__ import annotations

import math
import re
from typing import Any

import jsonschema.validators
import referencing.exceptions

from schemas import json_keywords as kw
from schemas.json_keywords import MAX_DEPTH, MAX_STEPS


def reader_cannot_read(
    reader: Any,
    writer: Any,
    reader_name: str = "reader schema",
    writer_name: str = "writer schema",
) -> list[str]:
    """Why a document valid under `writer` may be invalid under `reader` (empty: never)."""
    if reader == writer:  # one document accepts what it accepts, whatever its $refs
        return []
    return _Inclusion(reader, writer, reader_name, writer_name).covers(reader, writer, "#", 0)


class _Inclusion:
    """One comparison of two schema documents (their roots resolve each side's `$ref`s)."""

    def __init__(self, reader: Any, writer: Any, reader_name: str, writer_name: str) -> None:
        self.reader_root, self.writer_root = reader, writer
        self.r, self.w = reader_name, writer_name
        draft: Any = jsonschema.validators.validator_for(
            reader, default=jsonschema.validators.Draft202012Validator
        )
        self.validator = draft(reader, format_checker=draft.FORMAT_CHECKER)
        self.on_path: set[tuple[int, int]] = set()
        self.steps = 0
        defs = [
            (root.get("$defs"), root.get("definitions")) if isinstance(root, dict) else None
            for root in (reader, writer)
        ]
        self.defs_agree = defs[0] == defs[1] and all(kw.in_defs(r) for r in kw.refs(defs[0]))

    def same(self, reader: Any, writer: Any) -> bool:
        """Equal subschemas whose `$ref`s, if any, point to equal definitions."""
        if reader != writer:
            return False
        refs = kw.refs(reader)
        return not refs or (self.defs_agree and all(kw.in_defs(r) for r in refs))

    def covers(self, reader: Any, writer: Any, ptr: str, depth: int) -> list[str]:
        if writer is False or kw.only_annotations(reader):
            return []
        if reader is False:
            return [f"{ptr}: the {self.r} accepts nothing here, the {self.w} accepts documents"]
        self.steps += 1
        if depth > MAX_DEPTH or self.steps > MAX_STEPS:
            return [f"{ptr}: too deep or too many combinations to compare; treated as breaking"]
        writer = {} if writer is True else writer
        key = (id(reader), id(writer))
        if key in self.on_path or self.same(reader, writer):
            return []  # a cycle through `$ref`: documents are finite, so assuming it holds is sound
        self.on_path.add(key)
        try:
            return self._combinators(reader, writer, ptr, depth + 1)
        finally:
            self.on_path.discard(key)

    def _combinators(self, r: dict[str, Any], w: dict[str, Any], ptr: str, d: int) -> list[str]:
        if isinstance(r.get("anyOf"), list) and any(self.same(b, w) for b in r["anyOf"]):
            return self.covers(kw.without(r, "anyOf"), w, ptr, d)  # a union widened by a branch
        if isinstance(w.get("$ref"), str):
            target, rest = kw.resolve(self.writer_root, w["$ref"]), self._writer_rest(w, "$ref")
            if target is None:  # dropping a writer's constraint only widens what it accepts
                return self.covers(r, rest, ptr, d)
            return self.covers(
                r, target if kw.only_annotations(rest) else {"allOf": [target, rest]}, ptr, d
            )
        if isinstance(r.get("$ref"), str):
            target = kw.resolve(self.reader_root, r["$ref"])
            if target is None:
                return [
                    f"{ptr}/$ref: the {self.r}'s $ref {r['$ref']!r} is not a local '#/…' "
                    "pointer; treated as breaking"
                ]
            return self.covers(target, w, ptr, d) + self.covers(kw.without(r, "$ref"), w, ptr, d)
        if isinstance(r.get("allOf"), list):
            reasons = self.covers(kw.without(r, "allOf"), w, ptr, d)
            for i, branch in enumerate(r["allOf"]):
                reasons += self.covers(branch, w, f"{ptr}/allOf/{i}", d)
            return reasons
        for union in ("anyOf", "oneOf"):  # a writer's union: every branch must be covered
            if isinstance(w.get(union), list):
                rest = self._writer_rest(w, union)
                return [
                    reason
                    for i, branch in enumerate(w[union])
                    for reason in self.covers(r, {"allOf": [rest, branch]}, f"{ptr}/{union}/{i}", d)
                ]
        if isinstance(w.get("allOf"), list):
            return self._writer_all_of(r, w, ptr, d)
        if isinstance(r.get("anyOf"), list):
            reasons = self.covers(kw.without(r, "anyOf"), w, ptr, d)
            if all(self.covers(branch, w, ptr, d) for branch in r["anyOf"]):
                reasons.append(
                    f"{ptr}/anyOf: no single branch of the {self.r}'s anyOf accepts "
                    f"every document of the {self.w}; treated as breaking"
                )
            return reasons
        return self._keywords(r, w, ptr, d)

    def _writer_rest(self, w: dict[str, Any], key: str) -> dict[str, Any]:
        """`w` without `key`; without `unevaluated*` too, which would read fewer evaluated
        properties once `key` is gone (so dropping them keeps the writer's set a superset)."""
        return kw.without(w, key, "unevaluatedProperties", "unevaluatedItems")

    def _writer_all_of(self, r: dict[str, Any], w: dict[str, Any], ptr: str, d: int) -> list[str]:
        parts = [self._writer_rest(w, "allOf"), *w["allOf"]]
        merged = kw.merged(parts)
        if merged is not None:
            return self.covers(r, merged, ptr, d)
        first: list[str] = []
        for part in parts:  # an intersection is inside each of its parts
            found = self.covers(r, part, ptr, d)
            if not found:
                return []
            first = first or found
        return [
            *first,
            f"{ptr}/allOf: the {self.w}'s allOf is compared one branch at a time; "
            "treated as breaking",
        ]

    def _keywords(self, r: dict[str, Any], w: dict[str, Any], ptr: str, d: int) -> list[str]:
        r, w = self._unevaluated(r, reader=True), self._unevaluated(w, reader=False)
        reasons = [
            f"{ptr}/{group[0]}: '{'/'.join(group)}' differs in the {self.r}; inclusion is not "
            "decided for it, treated as breaking"
            for group in kw.UNDECIDED
            if any(k in r for k in group)
            and not self.same([r.get(k) for k in group], [w.get(k) for k in group])
        ]
        values = self._values(w)
        if values is not None:
            return reasons + self._enumerated(r, values, ptr)
        if "enum" in r or "const" in r:
            reasons.append(
                f"{ptr}: the {self.r} allows only listed values (enum/const), the "
                f"{self.w} allows others"
            )
        r_types, w_types, missing = kw.types(r), kw.types(w), []
        for kind in sorted(w_types):
            if kind in r_types or (kind == "integer" and "number" in r_types):
                reasons += self._typed(kind, r, w, ptr, d)
            elif kind == "number" and "integer" in r_types:
                missing.append("non-integer numbers")
                reasons += self._typed("integer", r, w, ptr, d)
            else:
                missing.append(kind)
        if missing:
            reasons.insert(
                0,
                f"{ptr}/type: narrowed: the {self.w} allows {', '.join(missing)}, "
                f"the {self.r} does not",
            )
        return reasons

    def _unevaluated(self, s: dict[str, Any], reader: bool) -> dict[str, Any]:
        """Without in-place applicators left, `unevaluated*` is `additionalProperties` /
        `items`; otherwise a writer's is dropped (sound) and a reader's stays undecided."""
        if any(k in s for k in kw.APPLICATORS):
            return s if reader else kw.without(s, "unevaluatedProperties", "unevaluatedItems")
        s = dict(s)
        if "unevaluatedProperties" in s:
            s.setdefault("additionalProperties", s["unevaluatedProperties"])
            del s["unevaluatedProperties"]
        if "unevaluatedItems" in s:
            if "items" not in s or isinstance(s["items"], list):
                s["additionalItems" if isinstance(s.get("items"), list) else "items"] = s[
                    "unevaluatedItems"
                ]
            del s["unevaluatedItems"]
        return s

    def _values(self, w: dict[str, Any]) -> list[Any] | None:
        """Every value the writer allows, when it lists them (or they are few by type)."""
        if "const" in w:
            return [w["const"]]
        if isinstance(w.get("enum"), list):
            return list(w["enum"])
        kinds = kw.types(w)
        if kinds <= {"null", "boolean"}:
            return ([None] if "null" in kinds else []) + (
                [False, True] if "boolean" in kinds else []
            )
        return None

    def _enumerated(self, r: dict[str, Any], values: list[Any], ptr: str) -> list[str]:
        check = self.validator.evolve(schema=r)
        try:
            refused = [v for v in values if not check.is_valid(v)]
        except referencing.exceptions.Unresolvable:
            return [f"{ptr}: the {self.r} has a $ref that does not resolve; treated as breaking"]
        return [
            f"{ptr}: the {self.w} allows the value {v!r:.80}, the {self.r} does not"
            for v in refused[:10]
        ]

    def _typed(
        self, kind: str, r: dict[str, Any], w: dict[str, Any], ptr: str, d: int
    ) -> list[str]:
        if kind in ("number", "integer"):
            return self._numbers(r, w, ptr, kind == "integer")
        if kind == "string":
            return self._strings(r, w, ptr)
        if kind == "array":
            return self._arrays(r, w, ptr, d)
        if kind == "object":
            return self._objects(r, w, ptr, d)
        return []

    def _numbers(self, r: dict[str, Any], w: dict[str, Any], ptr: str, integer: bool) -> list[str]:
        reasons = []
        if not kw.lower_holds(kw.lower(r, integer), kw.lower(w, integer)):
            reasons.append(
                f"{ptr}/minimum: the {self.r}'s lower bound is higher than the "
                f"{self.w}'s (numbers the {self.w} allows are refused)"
            )
        if not kw.upper_holds(kw.upper(r, integer), kw.upper(w, integer)):
            reasons.append(
                f"{ptr}/maximum: the {self.r}'s upper bound is lower than the {self.w}'s"
            )
        if kw.number(r.get("multipleOf")):
            step = (
                w.get("multipleOf") if kw.number(w.get("multipleOf")) else (1 if integer else None)
            )
            ratio = None if step is None else kw.fraction(step) / kw.fraction(r["multipleOf"])
            if ratio is None or ratio.denominator != 1:
                reasons.append(
                    f"{ptr}/multipleOf: the {self.r} requires multiples of "
                    f"{r['multipleOf']}, the {self.w} allows other numbers"
                )
        return reasons

    def _strings(self, r: dict[str, Any], w: dict[str, Any], ptr: str) -> list[str]:
        reasons = []
        if r.get("minLength", 0) > w.get("minLength", 0):
            reasons.append(
                f"{ptr}/minLength: raised from {w.get('minLength', 0)} to {r['minLength']}"
            )
        if "maxLength" in r and not r["maxLength"] >= w.get("maxLength", math.inf):
            reasons.append(
                f"{ptr}/maxLength: lowered from {w.get('maxLength', 'none')} to {r['maxLength']}"
            )
        for keyword in ("pattern", "format"):
            if keyword in r and r[keyword] != w.get(keyword):
                change = "added" if keyword not in w else f"changed from {w[keyword]!r}"
                reasons.append(
                    f"{ptr}/{keyword}: {change} to {r[keyword]!r} in the {self.r} "
                    "(inclusion of patterns and formats is not decided)"
                )
        return reasons

    def _arrays(self, r: dict[str, Any], w: dict[str, Any], ptr: str, d: int) -> list[str]:
        (r_first, r_rest), (w_first, w_rest) = kw.items(r), kw.items(w)
        w_max = w.get("maxItems", math.inf)
        if w_rest is False:
            w_max = min(w_max, len(w_first))
        reasons, shown = [], bool(r_first) and "prefixItems" in r
        for i in range(max(len(r_first), len(w_first))):
            if i >= w_max:
                break
            rs = r_first[i] if i < len(r_first) else r_rest
            ws = w_first[i] if i < len(w_first) else w_rest
            where = f"{ptr}/prefixItems/{i}" if shown else f"{ptr}/items/{i}"
            reasons += self.covers(rs, ws, where, d)
        if w_max > max(len(r_first), len(w_first)):
            reasons += self.covers(r_rest, w_rest, f"{ptr}/items", d)
        if r.get("minItems", 0) > w.get("minItems", 0):
            reasons.append(f"{ptr}/minItems: raised from {w.get('minItems', 0)} to {r['minItems']}")
        if "maxItems" in r and r["maxItems"] < w_max:
            reasons.append(
                f"{ptr}/maxItems: lowered from {w.get('maxItems', 'none')} to {r['maxItems']}"
            )
        if r.get("uniqueItems") is True and w.get("uniqueItems") is not True and w_max > 1:
            reasons.append(
                f"{ptr}/uniqueItems: the {self.r} requires unique items, the {self.w} did not"
            )
        return reasons

    def _objects(self, r: dict[str, Any], w: dict[str, Any], ptr: str, d: int) -> list[str]:
        reasons, w_required = [], set(w.get("required", []))
        for name in r.get("required", []):
            if name not in w_required:
                reasons.append(f"{ptr}/required: property {name!r} became required")
        names = sorted(set(r.get("properties", {})) | set(w.get("properties", {})))
        for name in names:
            reasons += self._property(r, w, name, f"{ptr}/properties/{kw.esc(name)}", d)
        reasons += self._other_names(r, w, ptr, d)
        reasons += self._counts(r, w, ptr)
        return reasons + self._dependencies(r, w, ptr)

    def _schema_for(self, s: dict[str, Any], name: str) -> Any:
        """What `s` asks of property `name`: its `properties` entry and every matching
        `patternProperties`, else `additionalProperties` (an allOf when several)."""
        found = [s["properties"][name]] if name in s.get("properties", {}) else []
        for pattern, schema in s.get("patternProperties", {}).items():
            try:
                if re.search(pattern, name):
                    found.append(schema)
            except re.error:
                return None
        if not found:
            return s.get("additionalProperties", True)
        return found[0] if len(found) == 1 else {"allOf": found}

    def _property(
        self, r: dict[str, Any], w: dict[str, Any], name: str, ptr: str, d: int
    ) -> list[str]:
        rs, ws = self._schema_for(r, name), self._schema_for(w, name)
        if rs is None or ws is None:
            return [f"{ptr}: a patternProperties regex is not understood; treated as breaking"]
        if rs is False and ws is not False:
            return [f"{ptr}: property {name!r} is no longer allowed (closed content model)"]
        found = self.covers(rs, ws, ptr, d)
        if found and name not in w.get("properties", {}) and kw.only_annotations(ws):
            found.insert(
                0,
                f"{ptr}: property {name!r} is new, and the {self.w}'s open content "
                "model allowed any value under that name",
            )
        return found

    def _other_names(self, r: dict[str, Any], w: dict[str, Any], ptr: str, d: int) -> list[str]:
        """Names neither lists: each region of the reader (a pattern, or the rest) against
        every writer schema that may apply to a name of that region."""
        r_pats, w_pats = r.get("patternProperties", {}), w.get("patternProperties", {})
        w_add, reasons = w.get("additionalProperties", True), []
        for pattern, schema in r_pats.items():
            maybe = [w_pats[pattern]] if pattern in w_pats else [w_add, *w_pats.values()]
            for candidate in maybe:
                reasons += self.covers(
                    schema, candidate, f"{ptr}/patternProperties/{kw.esc(pattern)}", d
                )
        r_add = r.get("additionalProperties", True)
        for candidate in [w_add, *(s for p, s in w_pats.items() if p not in r_pats)]:
            if r_add is False and candidate is not False:
                reasons.append(
                    f"{ptr}/additionalProperties: the {self.r} closes the "
                    f"content model; the {self.w} allowed names it does not list"
                )
                break
            reasons += self.covers(r_add, candidate, f"{ptr}/additionalProperties", d)
        return reasons

    def _counts(self, r: dict[str, Any], w: dict[str, Any], ptr: str) -> list[str]:
        reasons = []
        w_min = max(w.get("minProperties", 0), len(set(w.get("required", []))))
        if r.get("minProperties", 0) > w_min:
            reasons.append(
                f"{ptr}/minProperties: the {self.r} requires {r['minProperties']}, "
                f"the {self.w} at least {w_min}"
            )
        w_max = w.get("maxProperties", math.inf)
        if w.get("additionalProperties", True) is False and not w.get("patternProperties"):
            w_max = min(w_max, sum(s is not False for s in w.get("properties", {}).values()))
        if "maxProperties" in r and r["maxProperties"] < w_max:
            reasons.append(f"{ptr}/maxProperties: lowered to {r['maxProperties']}")
        if "propertyNames" in r and not self.same(r["propertyNames"], w.get("propertyNames")):
            closed = w.get("additionalProperties", True) is False and not w.get("patternProperties")
            check = self.validator.evolve(schema=r["propertyNames"])
            if not closed or not all(check.is_valid(n) for n in w.get("properties", {})):
                reasons.append(
                    f"{ptr}/propertyNames: the {self.r} restricts names the {self.w} allows"
                )
        return reasons

    def _dependencies(self, r: dict[str, Any], w: dict[str, Any], ptr: str) -> list[str]:
        def required_by(s: dict[str, Any]) -> dict[str, set[str]]:
            both = {**s.get("dependencies", {}), **s.get("dependentRequired", {})}
            return {k: set(v) for k, v in both.items() if isinstance(v, list)}

        reasons, w_deps, w_required = [], required_by(w), set(w.get("required", []))
        for name, needed in sorted(required_by(r).items()):
            known = w_deps.get(name, set()) | w_required
            if not needed <= known and self._schema_for(w, name) is not False:
                reasons.append(
                    f"{ptr}/dependentRequired/{kw.esc(name)}: {sorted(needed - known)} "
                    f"became required when {name!r} is present"
                )

        def schemas_of(s: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in s.get("dependencies", {}).items() if not isinstance(v, list)}

        if schemas_of(r) and not self.same(schemas_of(r), schemas_of(w)):
            reasons.append(
                f"{ptr}/dependencies: schema dependencies differ in the {self.r}; "
                "inclusion is not decided for them, treated as breaking"
            )
        return reasons
