"""Reading CSV uploads: multipart form, plain CSV or a zip/gz holding exactly one CSV,
split into rows that keep their exact bytes.

Nothing in an archive is trusted: sizes are counted while decompressing (a
bomb stops at `max_csv_bytes` whatever its headers claim), a zip must hold one
regular `.csv` member with a plain relative name, archives inside archives are
refused, and rows, row length and row count are bounded. Files are never
written to disk.
"""

from __future__ import annotations

import io
import posixpath
import time
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from producer_api.ratelimit import BodyHold, body_hold

MAX_UPLOAD_BYTES = 30 * 1024 * 1024
"""Largest file as uploaded (DataHub's limit)."""
MAX_CSV_BYTES = 128 * 1024 * 1024
"""Largest CSV after decompression."""
MAX_ROWS = 1_000_000
MAX_LINES = 2 * MAX_ROWS
"""Physical lines, blank ones and those inside quoted cells included: 65 KB of gzipped
blank lines once cost 16.5 s of CPU, as blank lines escaped the row count."""
MAX_ROW_BYTES = 64 * 1024
MAX_RATIO = 100
"""How much an archive may expand past its first `RATIO_FREE_BYTES` (CSV gzips 5-20:1)."""
RATIO_FREE_BYTES = 8 * 1024 * 1024
MAX_FIELD_BYTES = 1024
"""Largest non-file form field (e.g. `provider`)."""
FORM_FIELDS = frozenset({"provider"})
"""The text fields an upload's form may carry besides `file`; others are read past,
counted, and not kept."""
MAX_PARTS = 16
"""Parts of one form, the file included: more is a 400 (450,000 tiny fields were once
read, 549 MiB, in a request that had reserved 6 MiB)."""
CHUNK = 64 * 1024

_ARCHIVE_MAGIC = {
    b"PK\x03\x04": "zip", b"PK\x05\x06": "zip", b"\x1f\x8b": "gzip", b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz", b"7z\xbc\xaf\x27\x1c": "7z", b"Rar!": "rar",
}  # fmt: skip


class UploadRejected(ValueError):
    """An upload that is not a usable CSV (answered 400)."""


class UploadTooLarge(UploadRejected):
    """An upload or its CSV above the limits (answered 413)."""


@dataclass(frozen=True)
class Upload:
    """The form of a CSV upload: its text fields and the file as uploaded."""

    fields: dict[str, str]
    filename: str
    data: bytes


@dataclass(frozen=True)
class CsvRecord:
    """One CSV record: the line it starts on (1-based) and its exact bytes, no terminator."""

    line: int
    raw: bytes


async def read_upload(request: web.Request, max_bytes: int = MAX_UPLOAD_BYTES) -> Upload:
    """The multipart form of `request`, with the `file` part read up to `max_bytes`."""
    if request.content_length is not None and request.content_length > max_bytes + CHUNK:
        raise UploadTooLarge(f"the upload is larger than {max_bytes} bytes")
    if not request.content_type.startswith("multipart/form-data"):
        raise UploadRejected("send the file as multipart/form-data")
    fields: dict[str, str] = {}
    file: tuple[str, bytes] | None = None
    budget = _FormBudget(max_bytes + MAX_PARTS * MAX_FIELD_BYTES, body_hold(request))
    async for part in _parts(request):
        if not isinstance(part, BodyPartReader):
            raise UploadRejected("nested multipart bodies are not accepted")
        budget.part()
        if part.name == "file":
            if file is not None:
                raise UploadRejected("the form has more than one `file` part")
            file = (part.filename or "upload.csv", await _read_part(part, max_bytes, budget))
        else:
            raw = await _read_part(part, MAX_FIELD_BYTES, budget)
            if part.name in FORM_FIELDS:
                fields[part.name] = raw.decode("utf-8", errors="replace").strip()
    if file is None:
        raise UploadRejected("the form has no `file` part")
    return Upload(fields, _base_name(file[0]), file[1])


async def _parts(request: web.Request) -> AsyncIterator[BodyPartReader | MultipartReader]:
    """The form's parts; a part whose headers do not parse (a NUL or a raw non-UTF-8 byte
    in a name, found by schemathesis) is the sender's fault: `UploadRejected` (400)."""
    try:
        async for part in await request.multipart():
            if part is not None:
                yield part
    except (HttpProcessingError, ValueError) as exc:
        reason = getattr(exc, "message", "") or str(exc)
        raise UploadRejected(f"the multipart form does not parse: {reason}") from exc


class _FormBudget:
    """What one form may hold in all: parts and bytes, counted while they stream in."""

    def __init__(self, max_bytes: int, hold: BodyHold) -> None:
        self.parts, self.left, self._hold = 0, max_bytes, hold

    def part(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise UploadRejected(f"the form has more than {MAX_PARTS} parts")

    def take(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise UploadTooLarge("the form is larger than the upload limit")
        self._hold.take(size)  # the process's body budget, as the bytes arrive


async def _read_part(part: BodyPartReader, limit: int, budget: _FormBudget) -> bytes:
    out = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        budget.take(len(chunk))
        out += chunk
        if len(out) > limit:
            raise UploadTooLarge(f"form field `{part.name}` is larger than {limit} bytes")
    return bytes(out)


def _base_name(filename: str) -> str:
    name = posixpath.basename(filename.replace("\\", "/"))
    return name or "upload.csv"


class UploadTooSlow(UploadRejected):
    """Reading the upload passed its deadline (the thread stops; the request timed out)."""


def csv_bytes(
    data: bytes, max_bytes: int = MAX_CSV_BYTES, deadline: float | None = None
) -> Iterator[bytes]:
    """The CSV inside an upload (plain, zip or gzip) in chunks, at most `max_bytes` in all,
    and at most `MAX_RATIO` times the archive past `RATIO_FREE_BYTES`. With `deadline` (a
    `time.monotonic()` value), reading stops there: a worker thread cannot outlive its
    request by more than a chunk."""
    kind = _archive_kind(data)
    if kind == "zip":
        chunks = _zip_member(data)
    elif kind == "gzip":
        chunks = _gunzip(data)
    elif kind is not None:
        raise UploadRejected(f"{kind} archives are not accepted; send a CSV, zip or gz")
    else:
        chunks = (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
    ratio_cap = max(RATIO_FREE_BYTES, MAX_RATIO * len(data)) if kind else max_bytes
    yield from _bounded(_not_archive(chunks) if kind else chunks, max_bytes, ratio_cap, deadline)


def _archive_kind(head: bytes) -> str | None:
    return next((kind for magic, kind in _ARCHIVE_MAGIC.items() if head.startswith(magic)), None)


MAX_ZIP_ENTRIES = 64
"""Entries a zip's directory may list (one CSV, and a few folders or `__MACOSX/` files):
checked from its end record before the directory is read, which costs ~600 bytes an entry
(300,000 empty entries in 25.7 MB cost +170 MB before they were counted)."""
_END_OF_DIRECTORY = b"PK\x05\x06"


def _zip_entries(data: bytes) -> int | None:
    """How many entries the zip's end-of-central-directory record says it lists (0xFFFF:
    65,535 or more, in a ZIP64 record); None when there is no record to read."""
    at = data.rfind(_END_OF_DIRECTORY, max(0, len(data) - 22 - 0xFFFF))
    if at < 0 or at + 22 > len(data):
        return None
    return int.from_bytes(data[at + 10 : at + 12], "little")


def _zip_member(data: bytes) -> Iterator[bytes]:
    entries = _zip_entries(data)
    if entries is None:
        raise UploadRejected("not a readable zip archive: it has no end-of-directory record")
    if entries > MAX_ZIP_ENTRIES:
        listed = "65,535 or more" if entries == 0xFFFF else str(entries)
        raise UploadRejected(f"a zip must hold exactly one CSV file; its directory lists {listed}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [
            info for info in archive.infolist()
            if not info.is_dir() and not info.filename.startswith("__MACOSX/")
        ]  # fmt: skip
        if len(members) != 1:
            raise UploadRejected(f"a zip must hold exactly one CSV file; it holds {len(members)}")
        info = members[0]
        _check_member_name(info.filename)
        if info.flag_bits & 0x1:
            raise UploadRejected("encrypted zip members are not accepted")
        with archive.open(info) as member:
            while chunk := member.read(CHUNK):
                yield chunk
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as exc:
        raise UploadRejected(f"not a readable zip archive: {exc}") from exc


def _check_member_name(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts or "\x00" in name:
        raise UploadRejected(f"unsafe file name in the zip: {name!r}")
    if not name.lower().endswith(".csv"):
        raise UploadRejected(f"the zip's file must be a .csv, not {name!r}")


def _gunzip(data: bytes) -> Iterator[bytes]:
    """Every member of a (possibly multi-member) gzip file, decompressed in chunks.

    Input is fed from a view in growing slices (256 bytes up to `CHUNK`), so what a
    member leaves unused, and zlib copies, is small: many tiny members cost time
    linear in their number, not in their number times the upload's size.
    """
    view = memoryview(data)
    position = 0
    try:
        while position < len(data):
            if data[position] == 0 and data.count(b"\x00", position) == len(data) - position:
                return  # zero padding after the last member
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            feed_size = 256
            while not inflater.eof:
                feed: bytes | memoryview = inflater.unconsumed_tail
                if not feed:
                    if position >= len(data):
                        raise UploadRejected("the gzip stream is truncated")
                    feed = view[position : position + feed_size]
                    position += len(feed)
                    feed_size = min(feed_size * 2, CHUNK)
                chunk = inflater.decompress(feed, CHUNK)
                if chunk:
                    yield chunk
            position -= len(inflater.unused_data)
    except zlib.error as exc:
        raise UploadRejected(f"not a readable gzip file: {exc}") from exc


def _not_archive(chunks: Iterator[bytes]) -> Iterator[bytes]:
    first = next(chunks, b"")
    if _archive_kind(first) is not None:
        raise UploadRejected("archives inside archives are not accepted")
    yield first
    yield from chunks


def _bounded(
    chunks: Iterable[bytes], limit: int, ratio_cap: int, deadline: float | None
) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise UploadTooLarge(f"the CSV is larger than {limit} bytes uncompressed")
        if total > ratio_cap:
            raise UploadTooLarge(f"the archive expands more than {MAX_RATIO}:1")
        if deadline is not None and time.monotonic() > deadline:
            raise UploadTooSlow("reading the upload took longer than the request may")
        yield chunk


def csv_records(chunks: Iterable[bytes], max_rows: int = MAX_ROWS) -> Iterator[CsvRecord]:
    """Records of a CSV byte stream (the header first), each with its exact bytes.

    A record ends at a newline outside quotes, so a quoted cell may span lines.
    A leading BOM, the line terminator and blank lines are not part of any record.
    """
    count = size = start = 0
    parts: list[bytes] = []
    quoted = False
    for number, line in enumerate(_lines(chunks), start=1):
        if number > MAX_LINES:
            raise UploadTooLarge(f"more than {MAX_LINES} lines")
        if number == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")
        if not parts:
            start = number
        parts.append(line)
        size += len(line) + 1
        quoted ^= line.count(b'"') % 2 == 1
        if quoted:
            if size > MAX_ROW_BYTES:
                raise UploadRejected(f"line {start}: a row longer than {MAX_ROW_BYTES} bytes")
            continue
        raw = b"\n".join(parts).removesuffix(b"\r")
        parts, size = [], 0
        if not raw.strip():
            continue
        count += 1
        if count > max_rows + 1:
            raise UploadTooLarge(f"more than {max_rows} rows")
        yield CsvRecord(start, raw)
    if parts:
        yield CsvRecord(start, b"\n".join(parts).removesuffix(b"\r"))


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pieces = (pending + chunk).split(b"\n")
        pending = pieces.pop()
        if len(pending) > MAX_ROW_BYTES or any(len(p) > MAX_ROW_BYTES for p in pieces):
            raise UploadRejected(f"a line longer than {MAX_ROW_BYTES} bytes")
        yield from pieces
    if pending:
        yield pending
