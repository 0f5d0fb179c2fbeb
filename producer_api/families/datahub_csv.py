"""DataHub's CSV upload: `POST /datahub/v1/csv/upload`, multipart `provider` and `file`.

The file (CSV, or zip/gz holding one CSV; at most 30 MB as uploaded) is read
twice: once off the event loop to check the archive and the rows' framing
before anything is ingested, then to publish rows in bounded slices. Each row
is one raw event, its exact bytes, with the header and provider in the route
(`format=csv`). Bad rows are dead-lettered one by one and listed by line,
column and reason; the good ones are ingested. 201 `{"batch": "<file>_<epoch
ms>", "ingestedRows": N}` (plus, when some were rejected, the first 1,000 `rejectedRows`
entries, `rejectedRowCount` and `rejectedEntryCount`; a row lists at most 20 reasons); 400
when nothing could be ingested. Request-level errors are raised as HTTP exceptions,
which the sub-app's middleware answers in DataHub's `{"error"}` format.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from ingest.entry import Body, IngestOptions, IngestRequest, ingest
from ingest.plan import IngestPlan
from ingest.split import given
from producer_api.accept import core_of, request_context
from producer_api.auth import Principal, authorize
from producer_api.resources import DOOR
from producer_api.uploads import (
    MAX_UPLOAD_BYTES,
    CsvRecord,
    UploadRejected,
    UploadTooLarge,
    UploadTooSlow,
    csv_bytes,
    csv_records,
    read_upload,
)
from schemas.families.datahub import FAMILY
from schemas.families.datahub_csv import header_violations, parse_record
from schemas.families.datahub_fields import check_provider

SLICE_ROWS = 5000
SLICE_BYTES = 4 * 1024 * 1024
MAX_LISTED = 1000
"""At most this many rejected-row entries in an answer (all are dead-lettered and counted)."""

UNLIMITED = IngestOptions(rate_limited=False, in_thread=True)
"""An upload is bounded by its size, not the event budget: it must not stop half-ingested."""
NO_BODY = Body(b"")
"""The rows of a slice are given split: no body of their own."""

routes = web.RouteTableDef()


MAX_UPLOADS_PER_KEY = 2
"""Uploads one key may have in progress in one API process; a third is 429."""
_uploading: Counter[str] = Counter()


@routes.post("/v1/csv/upload")
async def upload_csv(request: web.Request) -> web.Response:
    principal = await authorize(request, "events:write")
    if _uploading[principal.prefix] >= MAX_UPLOADS_PER_KEY:
        raise web.HTTPTooManyRequests(
            text=f"this key has {MAX_UPLOADS_PER_KEY} uploads in progress; retry when one ends",
            headers={"Retry-After": "5"},
        )
    _uploading[principal.prefix] += 1
    try:
        return await _upload(request, principal)
    finally:
        _uploading[principal.prefix] -= 1
        if not _uploading[principal.prefix]:
            del _uploading[principal.prefix]


async def _upload(request: web.Request, principal: Principal) -> web.Response:
    deadline = time.monotonic() + request.config_dict[DOOR].settings.http_request_timeout_seconds
    try:
        upload = await read_upload(request)
        provider = upload.fields.get("provider", "")
        problems = check_provider(provider or None, "provider")
        if problems:
            raise UploadRejected(f"provider: {problems[0].message}")
        header, row_count = await asyncio.to_thread(_scan, upload.data, deadline)
    except UploadTooSlow as exc:
        raise web.HTTPRequestTimeout(text=str(exc)) from exc
    except UploadTooLarge as exc:
        raise web.HTTPRequestEntityTooLarge(MAX_UPLOAD_BYTES, text=str(exc)) from exc
    except UploadRejected as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    # Charged like any request's events, all at once before a row is sent: an upload is
    # never cut off half-ingested (an idle key may spend a window's budget in one go).
    await core_of(request).admit(principal.prefix, row_count, tenant=principal.tenant)
    ctx = request_context(request, principal, FAMILY)
    ctx = replace(ctx, route={"format": "csv", "provider": provider, "header": header})
    batch = f"{upload.filename}_{int(ctx.received_at.timestamp() * 1000)}"
    ingested, rejected = 0, _Rejections()
    slices = _slices(upload.data, deadline)  # decompressing, splitting, validating: off the loop
    try:
        while (records := await asyncio.to_thread(next, slices, None)) is not None:
            rows = IngestRequest(ctx, NO_BODY, given([r.raw for r in records]), UNLIMITED)
            plan = (await ingest(core_of(request), rows)).plan
            ingested += plan.accepted
            rejected.add(plan, records)
    except UploadTooSlow as exc:  # the rows before it are ingested: the 408 says unknown
        raise web.HTTPRequestTimeout(text=str(exc)) from exc
    answer: dict[str, Any] = {"batch": batch, "ingestedRows": ingested}
    if rejected.rows:
        answer["rejectedRows"] = rejected.listed
        answer["rejectedRowCount"] = rejected.rows
        answer["rejectedEntryCount"] = rejected.entries
    if ingested == 0:
        return web.json_response({"error": "no row of the file was ingested", **answer}, status=400)
    return web.json_response(answer, status=201)


def _scan(data: bytes, deadline: float) -> tuple[str, int]:
    """The header, checked, and how many rows follow it, after reading the whole file once
    to check its framing."""
    records = csv_records(csv_bytes(data, deadline=deadline))
    first = next(records, None)
    if first is None:
        raise UploadRejected("the CSV is empty")
    try:
        header = first.raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UploadRejected("the CSV header is not UTF-8") from exc
    problems = header_violations(parse_record(header))
    if problems:
        raise UploadRejected("; ".join(f"header {v.path}: {v.message}" for v in problems))
    rows = sum(1 for _ in records)
    if rows == 0:
        raise UploadRejected("the CSV has a header but no rows")
    return header, rows


def _slices(data: bytes, deadline: float) -> Iterator[list[CsvRecord]]:
    """The rows after the header, in slices small enough for one Kafka message each."""
    records = csv_records(csv_bytes(data, deadline=deadline))
    next(records)
    batch: list[CsvRecord] = []
    size = 0
    for record in records:
        batch.append(record)
        size += len(record.raw)
        if len(batch) >= SLICE_ROWS or size >= SLICE_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


@dataclass
class _Rejections:
    """An upload's rejected rows: all counted, the first `MAX_LISTED` entries kept.

    A row lists at most `MAX_VIOLATIONS` reasons and one counting the rest (the
    validator caps them), so what the answer holds is bounded whatever the file.
    """

    rows: int = 0
    entries: int = 0
    listed: list[dict[str, Any]] = field(default_factory=list)

    def add(self, plan: IngestPlan, records: list[CsvRecord]) -> None:
        for result in plan.results:
            if result.accepted:
                continue
            self.rows += 1
            self.entries += len(result.reasons)
            room = MAX_LISTED - len(self.listed)
            self.listed += [
                {"line": records[result.index].line, "column": v.path, "reason": v.message,
                 "deadLetterId": result.dead_letter_id}
                for v in result.reasons[: max(room, 0)]
            ]  # fmt: skip
